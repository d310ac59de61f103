import { generateKeyPairSync } from 'node:crypto';
import { readFile, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  JsonlAuditSink,
  encodeRecord,
  readChainTail,
  sortAuditFiles,
  verifyAuditDir,
} from '../../../src/audit/index.ts';
import type { AuditRecord } from '../../../src/audit/index.ts';
import { auditFiles, event, readRecords, tempDir } from './helpers.ts';

const { privateKey, publicKey } = generateKeyPairSync('ed25519');
const other = generateKeyPairSync('ed25519');

let dir: string;
let cleanup: () => Promise<void>;
let now: Date;
beforeEach(async () => {
  ({ dir, cleanup } = await tempDir('pw-audit-checkpoint-'));
  now = new Date('2026-03-01T12:00:00Z');
  const sink = await JsonlAuditSink.open({
    dir,
    checkpoint: { key: privateKey, everyEvents: 5, intervalMs: 3_600_000 },
    now: () => now,
  });
  for (let i = 0; i < 23; i++) {
    now = new Date(now.getTime() + 1000);
    await sink.append(event({ requestId: `r${i}`, time: now.toISOString() }));
  }
  await sink.close();
});
afterEach(async () => {
  await cleanup();
});

async function trail(): Promise<{ path: string; lines: string[] }> {
  const [name] = await auditFiles(dir);
  const path = join(dir, name!);
  return { path, lines: (await readFile(path, 'utf8')).slice(0, -1).split('\n') };
}

/** Recompute the chain from line index `from` on, as a forger with write access (but no key) would. */
function rechain(lines: string[], from: number): string[] {
  const out = lines.slice(0, from);
  let prev = (JSON.parse(out.at(-1)!) as AuditRecord).hash;
  for (const line of lines.slice(from)) {
    const r = JSON.parse(line) as Partial<AuditRecord>;
    const seq = r.seq ?? 0;
    delete r.seq;
    delete r.prev;
    delete r.hash;
    const rest = r as AuditRecord;
    const enc = encodeRecord(rest, seq, prev);
    out.push(enc.line);
    prev = enc.hash;
  }
  return out;
}

describe('signed checkpoints', () => {
  it('are written every N events and on close, signed, and verify with the public key', async () => {
    const records = await readRecords(dir);
    const checkpoints = records.filter((r) => (r.type as string) === 'checkpoint') as unknown as {
      seq: number;
      reason: string;
      count: number;
      sig: string;
    }[];
    expect(checkpoints.map((c) => c.reason)).toEqual(['events', 'events', 'events', 'events', 'close']);
    for (const c of checkpoints) expect(c.count).toBe(c.seq - 1);
    const v = await verifyAuditDir(dir, { key: publicKey });
    expect(v).toMatchObject({ ok: true, checkpoints: 5, unanchored: 0 });
    expect(v.lastCheckpoint).toMatchObject({ signed: true, seq: records.at(-1)!.seq });
  });

  it('catch an edited middle line even when every hash after it was recomputed', async () => {
    const { path, lines } = await trail();
    const edited = [...lines];
    edited[7] = edited[7]!.replace('"decision":"allow"', '"decision":"deny"');
    await writeFile(path, `${rechain(edited, 7).join('\n')}\n`);
    // The bare chain cannot tell: whoever can write the files can recompute it.
    expect((await verifyAuditDir(dir)).ok).toBe(true);
    const v = await verifyAuditDir(dir, { key: publicKey });
    expect(v.ok).toBe(false);
    // The first checkpoint after the edit (line 12: events at 1-5, checkpoint 6, events 7-11, checkpoint 12).
    expect(v.firstBreak).toMatchObject({ line: 12 });
    expect(v.firstBreak?.problem).toContain('signature does not verify');
  });

  it('catch deleted lines before a checkpoint when the chain was recomputed', async () => {
    const { path, lines } = await trail();
    const cut = [...lines.slice(0, 2), ...lines.slice(3)].map((l, i) => {
      const r = JSON.parse(l) as AuditRecord;
      return i >= 2 ? JSON.stringify({ ...r, seq: r.seq - 1 }) : l;
    });
    await writeFile(path, `${rechain(cut, 2).join('\n')}\n`);
    expect((await verifyAuditDir(dir)).ok).toBe(true);
    const v = await verifyAuditDir(dir, { key: publicKey });
    expect(v.ok).toBe(false);
    expect(v.firstBreak?.problem).toMatch(/count|signature/);
  });

  it('show a truncated tail against a head kept elsewhere, and by the age of the newest checkpoint', async () => {
    const head = await readChainTail(dir);
    const { path, lines } = await trail();
    // Cut the last 8 lines: the close checkpoint and the one before it go with them.
    const kept = lines.slice(0, -8);
    await truncate(path, Buffer.byteLength(`${kept.join('\n')}\n`));
    // A prefix that ends after a valid checkpoint verifies: the lines after it are reported as unanchored.
    const plain = await verifyAuditDir(dir, { key: publicKey });
    expect(plain).toMatchObject({ ok: true, unanchored: 2, lines: 20 });

    const expected = await verifyAuditDir(dir, { key: publicKey, expectHead: head });
    expect(expected.ok).toBe(false);
    expect(expected.firstBreak?.problem).toContain('is not in the trail');

    const stale = await verifyAuditDir(dir, {
      key: publicKey,
      maxAgeMs: 60_000,
      now: new Date(now.getTime() + 120_000),
    });
    expect(stale.ok).toBe(false);
    expect(stale.firstBreak?.problem).toContain('older than allowed');
    // The untruncated head is fine against itself.
    expect((await verifyAuditDir(dir, { expectHead: await readChainTail(dir) })).ok).toBe(true);
  });

  it('do not verify with another key, and a trail without checkpoints is not anchored', async () => {
    const v = await verifyAuditDir(dir, { key: other.publicKey });
    expect(v.ok).toBe(false);
    expect(v.firstBreak?.problem).toContain('not by the given key');

    const { dir: plainDir, cleanup: done } = await tempDir();
    try {
      const sink = await JsonlAuditSink.open({ dir: plainDir });
      await sink.append(event());
      await sink.close();
      const u = await verifyAuditDir(plainDir, { key: publicKey });
      expect(u.ok).toBe(false);
      expect(u.firstBreak?.problem).toContain('no checkpoint signed');
      expect(sortAuditFiles([]).length).toBe(0);
    } finally {
      await done();
    }
  });

  it('are left out of audit query', async () => {
    const { queryAuditDir } = await import('../../../src/audit/index.ts');
    const found: AuditRecord[] = [];
    for await (const r of queryAuditDir(dir, {})) found.push(r);
    expect(found).toHaveLength(23);
  });
});
