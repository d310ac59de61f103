import { createServer } from 'node:http';
import type { Server } from 'node:http';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { JsonlAuditSink, auditSchema, openAuditSink, verifyAuditDir } from '../../../src/audit/index.ts';
import type { AuditRecord } from '../../../src/audit/index.ts';
import { freePort } from '../../support/ports.ts';
import { auditFiles, event, readRecords, tempDir } from './helpers.ts';

let dir: string;
let cleanup: () => Promise<void>;
beforeEach(async () => {
  ({ dir, cleanup } = await tempDir('pw-audit-retention-'));
});
afterEach(async () => {
  await cleanup();
});

/**
 * A collector that is down (nothing listens on its port: connection refused) until `start()`, then
 * records every event it acknowledged.
 */
async function collector(): Promise<{
  url: string;
  received: AuditRecord[];
  start(): Promise<void>;
  close(): Promise<void>;
}> {
  const received: AuditRecord[] = [];
  const port = await freePort();
  const server: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      received.push(...(JSON.parse(body) as AuditRecord[]));
      res.writeHead(204).end();
    });
  });
  return {
    url: `http://127.0.0.1:${port}/audit`,
    received,
    start: () => new Promise<void>((r) => server.listen(port, '127.0.0.1', r)),
    close: () => new Promise((r) => (server.listening ? server.close(() => r()) : r())),
  };
}

describe('audit retention', () => {
  it('deletes nothing a webhook that is down has not received, then the oldest files once it has', async () => {
    const hook = await collector();
    const config = auditSchema.parse({
      maxFileBytes: 4096,
      retention: { maxBytes: '8KiB' },
      webhook: { url: hook.url, flushInterval: '10ms', batchSize: 10 },
    });
    const sink = await openAuditSink(config, { dir });
    try {
      for (let i = 0; i < 60; i++) await sink.append(event({ requestId: `r${i}` }));
      const before = await auditFiles(dir);
      expect(before.length).toBeGreaterThan(4);

      // The collector is down: nothing is deleted, however far beyond the limit the trail is.
      const held = await sink.runRetention();
      expect(held).toMatchObject({ deleted: [], held: true });
      expect(await auditFiles(dir)).toEqual(before);
      expect(hook.received).toEqual([]);

      await hook.start();
      await waitFor(() => hook.received.filter((r) => r.requestId !== undefined).length >= 60);
      const done = await sink.runRetention();
      expect(done.deleted.length).toBeGreaterThan(0);
      expect(done.deleted).toEqual(before.slice(0, done.deleted.length));
      // Everything deleted had reached the collector.
      const kept = await readRecords(dir);
      const firstKept = kept[0]!.seq;
      const receivedSeqs = new Set(hook.received.map((r) => r.seq));
      for (let s = 1; s < firstKept; s++) expect(receivedSeqs.has(s)).toBe(true);

      // The chain still verifies across the deletion: a checkpoint recorded where it starts now.
      const v = await verifyAuditDir(dir);
      expect(v).toMatchObject({ ok: true, firstSeq: firstKept });
      const cp = kept.find((r) => (r.type as string) === 'checkpoint') as unknown as Record<string, unknown>;
      expect(cp).toMatchObject({ reason: 'retention', firstSeq: firstKept, firstPrev: kept[0]!.prev });
      // The checkpoint went to the collector as well (an anchor kept elsewhere).
      await waitFor(() => hook.received.some((r) => (r.type as string) === 'checkpoint'));
    } finally {
      await sink.close();
      await hook.close();
    }

    // A file removed by someone else (not retention) is a break.
    const files = await auditFiles(dir);
    await rm(join(dir, files[0]!));
    const v = await verifyAuditDir(dir);
    expect(v.ok).toBe(false);
    expect(v.firstBreak?.problem).toContain('removed outside retention');
  });

  it('deletes files whose newest line is older than maxAge, never the current file', async () => {
    let now = new Date('2026-01-01T00:00:00Z');
    const sink = await JsonlAuditSink.open({
      dir,
      maxFileAgeMs: 3_600_000,
      retention: { maxAgeMs: 24 * 3_600_000 },
      now: () => now,
    });
    try {
      for (let h = 0; h < 48; h++) {
        now = new Date(Date.parse('2026-01-01T00:00:00Z') + h * 3_600_000);
        await sink.append(event({ requestId: `h${h}`, time: now.toISOString() }));
      }
      // Retention runs after each rotation on its own; this call also sees the files rotated since.
      await sink.runRetention();
      // A file ends before the next starts: files 0..22 end by hour 23, 24 h before "now" (hour 47).
      let files = await auditFiles(dir);
      expect(files).toHaveLength(25);
      const events = (await readRecords(dir)).filter((r) => r.requestId !== undefined);
      expect(events[0]!.requestId).toBe('h23');
      expect((await verifyAuditDir(dir)).ok).toBe(true);
      // Nothing more is due, and the current file is never deleted even when it is old.
      expect((await sink.runRetention()).deleted).toEqual([]);
      now = new Date(now.getTime() + 30 * 24 * 3_600_000);
      const r = await sink.runRetention();
      files = await auditFiles(dir);
      expect(r.deleted).toHaveLength(24);
      // The current file (hour 47) stays; the retention checkpoint rotated into a new one (it was old).
      expect(files).toHaveLength(2);
      expect((await verifyAuditDir(dir)).ok).toBe(true);
    } finally {
      await sink.close();
    }
  });

  it('keeps a signed trail verifiable with the key across deletion, and catches files removed beyond it', async () => {
    const { generateKeyPairSync } = await import('node:crypto');
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    const sink = await JsonlAuditSink.open({
      dir,
      maxFileBytes: 4096,
      retention: { maxBytes: 10_000 },
      checkpoint: { key: privateKey, everyEvents: 7, intervalMs: 3_600_000 },
    });
    for (let i = 0; i < 60; i++) await sink.append(event({ requestId: `r${i}` }));
    const r = await sink.runRetention();
    await sink.close();
    expect(r.deleted.length).toBeGreaterThan(0);
    const v = await verifyAuditDir(dir, { key: publicKey });
    expect(v.ok).toBe(true);
    expect(v.firstSeq).toBeGreaterThan(1);
    const files = await auditFiles(dir);
    await rm(join(dir, files[0]!));
    const broken = await verifyAuditDir(dir, { key: publicKey });
    expect(broken.ok).toBe(false);
    expect(broken.firstBreak?.problem).toContain('removed outside retention');
  });

  it('is off by default', async () => {
    const sink = await JsonlAuditSink.open({ dir, maxFileBytes: 4096 });
    for (let i = 0; i < 40; i++) await sink.append(event({ requestId: `r${i}` }));
    const before = await auditFiles(dir);
    expect((await sink.runRetention()).deleted).toEqual([]);
    await sink.close();
    expect(await auditFiles(dir)).toEqual(before);
  });
});

async function waitFor(cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
}
