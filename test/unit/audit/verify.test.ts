import { appendFile, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { JsonlAuditSink, encodeRecord, verifyAuditDir } from '../../../src/audit/index.ts';
import type { AuditRecord } from '../../../src/audit/index.ts';
import { auditFiles, event, tempDir } from './helpers.ts';

let dir: string;
let cleanup: () => Promise<void>;
let files: string[];
beforeEach(async () => {
  ({ dir, cleanup } = await tempDir());
  // Three files or more, of several lines each.
  const sink = await JsonlAuditSink.open({ dir, maxFileBytes: 4096, groupCommitMs: 0 });
  for (let i = 0; i < 24; i++)
    await sink.append(event({ requestId: `r${i}`, decision: i % 3 ? 'allow' : 'deny' }));
  await sink.close();
  files = await auditFiles(dir);
});
afterEach(async () => {
  await cleanup();
});

async function lines(file: string): Promise<string[]> {
  const text = await readFile(join(dir, file), 'utf8');
  return text.slice(0, -1).split('\n');
}
async function rewrite(file: string, edit: (lines: string[]) => string[]): Promise<void> {
  await writeFile(join(dir, file), `${edit(await lines(file)).join('\n')}\n`);
}
/** The line re-encoded with `change` applied and its own hash recomputed (a careful forger). */
function forge(line: string, change: (r: AuditRecord) => void): string {
  const r = JSON.parse(line) as Partial<AuditRecord>;
  delete r.hash;
  change(r as AuditRecord);
  const { seq: s, prev: p, ...rest } = r as AuditRecord;
  return encodeRecord(rest, s, p).line;
}

describe('verifyAuditDir', () => {
  it('accepts an untouched trail and reports its head', async () => {
    expect(files.length).toBeGreaterThanOrEqual(3);
    const v = await verifyAuditDir(dir);
    const last = (await lines(files.at(-1)!)).length;
    expect(v).toMatchObject({ ok: true, files: files.length, lines: 24, incomplete: [], firstSeq: 1 });
    expect(v.head).toMatchObject({ file: files.at(-1), line: last, seq: 24 });
    expect(v.firstBreak).toBeUndefined();
  });

  it('finds an edited line at that line', async () => {
    await rewrite(files[1]!, (l) =>
      l.map((x, i) => (i === 2 ? x.replace('"status":200', '"status":201') : x)),
    );
    const v = await verifyAuditDir(dir);
    expect(v.ok).toBe(false);
    expect(v.firstBreak).toMatchObject({ file: files[1], line: 3 });
    expect(v.firstBreak!.problem).toContain('does not match its hash');
  });

  it('finds a line rewritten with a recomputed hash at the next line', async () => {
    await rewrite(files[0]!, (l) => l.map((x, i) => (i === 1 ? forge(x, (r) => (r.status = 500)) : x)));
    const v = await verifyAuditDir(dir);
    expect(v.firstBreak).toMatchObject({ file: files[0], line: 3 });
    expect(v.firstBreak!.problem).toContain('prev does not match the hash of line 2');
  });

  it('finds a deleted line where it is missing', async () => {
    await rewrite(files[1]!, (l) => l.filter((_, i) => i !== 3));
    const v = await verifyAuditDir(dir);
    expect(v.firstBreak).toMatchObject({ file: files[1], line: 4 });
    expect(v.firstBreak!.problem).toMatch(/1 line deleted before this one/);
  });

  it('finds reordered lines', async () => {
    await rewrite(files[1]!, (l) => {
      const out = [...l];
      [out[1], out[2]] = [out[2]!, out[1]!];
      return out;
    });
    const v = await verifyAuditDir(dir);
    expect(v.firstBreak).toMatchObject({ file: files[1], line: 2 });
    expect(v.firstBreak!.problem).toMatch(/reordered/);
  });

  it('finds the last line of a file rewritten with its hash, at the first line of the next file', async () => {
    await rewrite(files[0]!, (l) =>
      l.map((x, i) => (i === l.length - 1 ? forge(x, (r) => (r.status = 500)) : x)),
    );
    const v = await verifyAuditDir(dir);
    expect(v.firstBreak).toMatchObject({ file: files[1], line: 1 });
    expect(v.firstBreak!.problem).toContain('the chain across rotation is broken');
  });

  it('finds a removed middle file', async () => {
    await rm(join(dir, files[1]!));
    const v = await verifyAuditDir(dir);
    expect(v.firstBreak).toMatchObject({ file: files[2], line: 1 });
    expect(v.firstBreak!.problem).toMatch(/deleted before this one/);
  });

  it('finds lines removed from the start of a file by its name', async () => {
    await rewrite(files[2]!, (l) => l.slice(1));
    const v = await verifyAuditDir(dir);
    expect(v.firstBreak).toMatchObject({ file: files[2], line: 1 });
    expect(v.firstBreak!.problem).toContain('file name says');
  });

  it('finds a forged first line of the trail', async () => {
    await rewrite(files[0]!, (l) =>
      l.map((x, i) => (i === 0 ? forge(x, (r) => (r.prev = 'f'.repeat(64))) : x)),
    );
    const v = await verifyAuditDir(dir);
    expect(v.firstBreak).toMatchObject({ file: files[0], line: 1 });
  });

  it('accepts a trail whose oldest files were removed (retention) and says where it starts', async () => {
    await rm(join(dir, files[0]!));
    const v = await verifyAuditDir(dir);
    expect(v.ok).toBe(true);
    expect(v.firstSeq).toBeGreaterThan(1);
  });

  it('reports a torn last line as incomplete, not as a break', async () => {
    await appendFile(join(dir, files.at(-1)!), '{"seq":25,"prev":"ab');
    const v = await verifyAuditDir(dir);
    expect(v.ok).toBe(true);
    expect(v.incomplete).toEqual([
      { file: files.at(-1), line: (await lines(files.at(-1)!)).length, bytes: 20 },
    ]);
    expect(v.head?.seq).toBe(24);
  });

  it('reports a line that is not a record', async () => {
    await rewrite(files[0]!, (l) => [...l.slice(0, 2), 'hello', ...l.slice(2)]);
    const v = await verifyAuditDir(dir);
    expect(v.firstBreak).toMatchObject({ file: files[0], line: 3 });
    expect(v.firstBreak!.problem).toContain('not an audit record');
  });

  it('ignores files that are not audit files, and an empty directory is ok', async () => {
    await writeFile(join(dir, 'README'), 'x');
    expect((await verifyAuditDir(dir)).ok).toBe(true);
    for (const f of files) await rename(join(dir, f), join(dir, `${f}.bak`));
    expect(await verifyAuditDir(dir)).toMatchObject({ ok: true, files: 0, lines: 0 });
  });
});
