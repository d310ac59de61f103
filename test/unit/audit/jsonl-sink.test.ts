import { open, readFile, writeFile, appendFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuditError, GENESIS, JsonlAuditSink, verifyAuditDir } from '../../../src/audit/index.ts';
import type { AuditFileHandle } from '../../../src/audit/index.ts';
import { auditFiles, event, readRecords, tempDir } from './helpers.ts';

let dir: string;
let cleanup: () => Promise<void>;
let sink: JsonlAuditSink | undefined;
beforeEach(async () => {
  ({ dir, cleanup } = await tempDir());
});
afterEach(async () => {
  await sink?.close();
  sink = undefined;
  await cleanup();
});

function enospc(): NodeJS.ErrnoException {
  return Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', errno: -28 });
}

describe('JsonlAuditSink', () => {
  it('resolves an append only when its line can be read back through a fresh file descriptor', async () => {
    sink = await JsonlAuditSink.open({ dir });
    for (let i = 0; i < 5; i++) {
      await sink.append(event({ requestId: `r${i}` }));
      // A new fd sees what is in the page cache / on disk, not anything buffered in this process.
      const [name] = await auditFiles(dir);
      const fresh = await open(join(dir, name!), 'r');
      const text = await fresh.readFile('utf8');
      await fresh.close();
      expect(text.trimEnd().split('\n')).toHaveLength(i + 1);
      expect(text).toContain(`"requestId":"r${i}"`);
    }
  });

  it('fsyncs a batch before it resolves any of its appends', async () => {
    const ops: string[] = [];
    const openFile = async (path: string, flags: 'a' | 'ax'): Promise<AuditFileHandle> => {
      const h = await open(path, flags);
      return {
        write: async (b) => {
          ops.push('write');
          return h.write(b);
        },
        datasync: async () => {
          await h.datasync();
          ops.push('datasync');
        },
        truncate: (n) => h.truncate(n),
        close: () => h.close(),
      };
    };
    sink = await JsonlAuditSink.open({ dir, openFile });
    const seen: string[][] = [];
    await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        sink!.append(event({ requestId: `r${i}` })).then(() => seen.push([...ops])),
      ),
    );
    for (const snapshot of seen) expect(snapshot.at(-1)).toBe('datasync');
    // Group commit: far fewer fsyncs than events.
    expect(ops.filter((o) => o === 'datasync').length).toBeLessThan(50);
  });

  it('keeps every one of 1000 concurrent appends, in one valid chain, in few batches', async () => {
    sink = await JsonlAuditSink.open({ dir });
    const records = await Promise.all(
      Array.from({ length: 1000 }, (_, i) => sink!.appendRecord(event({ requestId: `r${i}` }))),
    );
    expect(records.map((r) => r.seq).sort((a, b) => a - b)).toEqual(
      Array.from({ length: 1000 }, (_, i) => i + 1),
    );
    // Appends are chained in the order they were made.
    expect(records.map((r) => r.requestId)).toEqual(Array.from({ length: 1000 }, (_, i) => `r${i}`));
    const stored = await readRecords(dir);
    expect(new Set(stored.map((r) => r.requestId)).size).toBe(1000);
    expect(sink.stats().batches).toBeLessThan(100);
    const v = await verifyAuditDir(dir);
    expect(v).toMatchObject({ ok: true, lines: 1000, head: { seq: 1000 } });
  });

  it('writes the line format of chain.ts: seq, prev and time first, hash last, genesis prev', async () => {
    sink = await JsonlAuditSink.open({ dir });
    const a = await sink.appendRecord(event());
    const b = await sink.appendRecord(event());
    const [name] = await auditFiles(dir);
    const [l1, l2] = (await readFile(join(dir, name!), 'utf8')).split('\n');
    expect(l1).toMatch(/^\{"seq":1,"prev":"0{64}","time":"2025-11-23T16:22:33.123Z","type":"manifest",/);
    expect(l1).toMatch(/,"hash":"[0-9a-f]{64}"\}$/);
    expect(a.prev).toBe(GENESIS);
    expect(b.prev).toBe(a.hash);
    expect(l2).toContain(`"prev":"${a.hash}"`);
    expect(name).toMatch(/^audit-\d{8}T\d{6}Z-000000000001\.jsonl$/);
  });

  it('continues the chain across rotation by size', async () => {
    sink = await JsonlAuditSink.open({ dir, maxFileBytes: 4096, groupCommitMs: 0 });
    for (let i = 0; i < 40; i++) await sink.append(event({ requestId: `r${i}` }));
    const files = await auditFiles(dir);
    expect(files.length).toBeGreaterThan(3);
    for (const f of files) expect((await stat(join(dir, f))).size).toBeLessThanOrEqual(4096);
    const records = await readRecords(dir);
    expect(records.map((r) => r.seq)).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
    // The first line of the second file links to the last line of the first.
    const firstOfSecond = JSON.parse((await readFile(join(dir, files[1]!), 'utf8')).split('\n')[0]!) as {
      seq: number;
      prev: string;
    };
    expect(firstOfSecond.prev).toBe(records[firstOfSecond.seq - 2]!.hash);
    expect(files[1]).toContain(`-${String(firstOfSecond.seq).padStart(12, '0')}.jsonl`);
    expect(await verifyAuditDir(dir)).toMatchObject({ ok: true, files: files.length, lines: 40 });
  });

  it('rotates by age', async () => {
    let now = new Date('2025-11-23T00:00:00Z');
    sink = await JsonlAuditSink.open({ dir, maxFileAgeMs: 3_600_000, now: () => now });
    await sink.append(event());
    now = new Date('2025-11-23T00:59:59Z');
    await sink.append(event());
    now = new Date('2025-11-23T01:00:00Z');
    await sink.append(event());
    expect(await auditFiles(dir)).toEqual([
      'audit-20251123T000000Z-000000000001.jsonl',
      'audit-20251123T010000Z-000000000003.jsonl',
    ]);
    expect((await verifyAuditDir(dir)).ok).toBe(true);
  });

  it('continues the chain of the newest file after a restart', async () => {
    sink = await JsonlAuditSink.open({ dir });
    await sink.append(event());
    await sink.append(event());
    await sink.close();
    sink = await JsonlAuditSink.open({ dir });
    expect(sink.head().seq).toBe(2);
    const r = await sink.appendRecord(event());
    expect(r.seq).toBe(3);
    expect(await auditFiles(dir)).toHaveLength(1);
    expect(await verifyAuditDir(dir)).toMatchObject({ ok: true, lines: 3 });
  });

  it('leaves a torn last line in place and starts a new file from the last complete line', async () => {
    sink = await JsonlAuditSink.open({ dir });
    await sink.append(event());
    const last = await sink.appendRecord(event());
    await sink.close();
    const [name] = await auditFiles(dir);
    await appendFile(join(dir, name!), '{"seq":3,"prev":"'); // a write cut short by a crash
    sink = await JsonlAuditSink.open({ dir });
    const next = await sink.appendRecord(event());
    expect(next).toMatchObject({ seq: 3, prev: last.hash });
    const files = await auditFiles(dir);
    expect(files).toHaveLength(2);
    const v = await verifyAuditDir(dir);
    expect(v).toMatchObject({ ok: true, lines: 3, incomplete: [{ file: name, line: 3, bytes: 17 }] });
  });

  it('refuses to open when the last complete line is not a valid record', async () => {
    sink = await JsonlAuditSink.open({ dir });
    await sink.append(event());
    await sink.close();
    sink = undefined;
    const [name] = await auditFiles(dir);
    await appendFile(join(dir, name!), 'garbage\n');
    const error = await JsonlAuditSink.open({ dir }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AuditError);
    expect(error).toMatchObject({ code: 'AUDIT_CHAIN_UNREADABLE' });
  });

  it('rejects appends and reports unhealthy on a full disk, and heals when space returns', async () => {
    let full = false;
    const openFile = async (path: string, flags: 'a' | 'ax'): Promise<AuditFileHandle> => {
      const h = await open(path, flags);
      return {
        write: (b) => (full ? Promise.reject(enospc()) : h.write(b)),
        datasync: () => h.datasync(),
        truncate: (n) => h.truncate(n),
        close: () => h.close(),
      };
    };
    sink = await JsonlAuditSink.open({ dir, openFile });
    await sink.append(event({ requestId: 'before' }));
    expect(sink.health()).toEqual({ ok: true });
    full = true;
    const error = await sink.append(event({ requestId: 'lost' })).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AuditError);
    expect(error).toMatchObject({ code: 'AUDIT_WRITE_FAILED' });
    expect((error as Error).message).toContain('ENOSPC');
    expect(sink.health().ok).toBe(false);
    expect(sink.health().reason).toContain('ENOSPC');
    expect(sink.stats().failed).toBe(1);
    full = false;
    await sink.append(event({ requestId: 'after' }));
    expect(sink.health()).toEqual({ ok: true });
    expect((await readRecords(dir)).map((r) => [r.seq, r.requestId])).toEqual([
      [1, 'before'],
      [2, 'after'],
    ]);
    expect((await verifyAuditDir(dir)).ok).toBe(true);
  });

  it('reports healthy again without traffic once the directory is writable', async () => {
    let full = false;
    const openFile = async (path: string, flags: 'a' | 'ax'): Promise<AuditFileHandle> => {
      const h = await open(path, flags);
      return {
        write: (b) => (full ? Promise.reject(enospc()) : h.write(b)),
        datasync: () => h.datasync(),
        truncate: (n) => h.truncate(n),
        close: () => h.close(),
      };
    };
    sink = await JsonlAuditSink.open({ dir, openFile, probeIntervalMs: 10 });
    full = true;
    await expect(sink.append(event())).rejects.toMatchObject({ code: 'AUDIT_WRITE_FAILED' });
    await new Promise((r) => setTimeout(r, 50));
    expect(sink.health().ok).toBe(false); // the probe writes through the same (failing) path
    full = false;
    const end = Date.now() + 5000;
    while (!sink.health().ok && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
    expect(sink.health()).toEqual({ ok: true });
    expect((await sink.appendRecord(event())).seq).toBe(1);
    expect((await verifyAuditDir(dir)).ok).toBe(true);
  });

  it('starts a new file after a half-written batch it could not truncate', async () => {
    let mode: 'ok' | 'torn' = 'ok';
    const openFile = async (path: string, flags: 'a' | 'ax'): Promise<AuditFileHandle> => {
      const h = await open(path, flags);
      return {
        write: async (b) => {
          if (mode === 'ok') return h.write(b);
          await h.write(b.subarray(0, Math.floor(b.length / 2)));
          throw Object.assign(new Error('EIO: i/o error, write'), { code: 'EIO' });
        },
        datasync: () => h.datasync(),
        truncate: () =>
          Promise.reject(Object.assign(new Error('EIO: i/o error, ftruncate'), { code: 'EIO' })),
        close: () => h.close(),
      };
    };
    sink = await JsonlAuditSink.open({ dir, openFile });
    await sink.append(event({ requestId: 'a' }));
    mode = 'torn';
    await expect(sink.append(event({ requestId: 'b' }))).rejects.toMatchObject({
      code: 'AUDIT_WRITE_FAILED',
    });
    expect(sink.health().reason).toContain('EIO');
    mode = 'ok';
    const c = await sink.appendRecord(event({ requestId: 'c' }));
    expect(c.seq).toBe(2);
    expect(await auditFiles(dir)).toHaveLength(2);
    const v = await verifyAuditDir(dir);
    expect(v.ok).toBe(true);
    expect(v.incomplete).toHaveLength(1);
  });

  it('rejects appends after close', async () => {
    sink = await JsonlAuditSink.open({ dir });
    await sink.close();
    await expect(sink.append(event())).rejects.toMatchObject({ code: 'AUDIT_CLOSED' });
    sink = undefined;
  });

  it('writes what was accepted before close', async () => {
    sink = await JsonlAuditSink.open({ dir, groupCommitMs: 50 });
    const pending = Array.from({ length: 10 }, () => sink!.append(event()));
    await sink.close();
    await Promise.all(pending);
    sink = undefined;
    expect(await readRecords(dir)).toHaveLength(10);
  });

  it('reuses an empty newest file named for the next seq', async () => {
    sink = await JsonlAuditSink.open({ dir });
    await sink.append(event());
    await sink.close();
    await writeFile(join(dir, 'audit-20991231T000000Z-000000000002.jsonl'), '');
    sink = await JsonlAuditSink.open({ dir });
    await sink.append(event());
    expect(await auditFiles(dir)).toHaveLength(2);
    expect(await verifyAuditDir(dir)).toMatchObject({ ok: true, lines: 2 });
  });
});
