import { createServer } from 'node:http';
import type { Server } from 'node:http';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  JsonlAuditSink,
  MultiAuditSink,
  StdoutAuditSink,
  WebhookAuditSink,
} from '../../../src/audit/index.ts';
import type { AuditEvent, AuditRecord, AuditSink } from '../../../src/audit/index.ts';
import { freePort } from '../../support/ports.ts';
import { event, tempDir } from './helpers.ts';

let dir: string;
let cleanup: () => Promise<void>;
const open: { close(): Promise<void> }[] = [];
beforeEach(async () => {
  ({ dir, cleanup } = await tempDir());
});
afterEach(async () => {
  for (const o of open.splice(0).reverse()) await o.close();
  await cleanup();
});

/** A collector on `port` that answers `status()` and records the batches it acknowledged. */
async function collector(port: number, status: () => number = () => 200) {
  const batches: AuditEvent[][] = [];
  let requests = 0;
  const server: Server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (body += c));
    req.on('end', () => {
      requests += 1;
      const code = status();
      if (code === 200) batches.push(JSON.parse(body) as AuditEvent[]);
      res.writeHead(code).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  const handle = {
    batches,
    events: () => batches.flat(),
    requests: () => requests,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
  open.push(handle);
  return handle;
}

async function until(cond: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function webhook(port: number, spoolDir = join(dir, 'spool')) {
  const sink = await WebhookAuditSink.open({
    url: `http://127.0.0.1:${port}/audit`,
    spoolDir,
    batchSize: 7,
    flushIntervalMs: 20,
    minBackoffMs: 10,
    maxBackoffMs: 50,
    timeoutMs: 2000,
  });
  open.push(sink);
  return sink;
}

describe('WebhookAuditSink', () => {
  it('delivers every event exactly once and in order once a collector that was down comes up', async () => {
    const port = await freePort();
    const sink = await webhook(port);
    const sent = Array.from({ length: 40 }, (_, i) => event({ requestId: `r${i}` }));
    for (const e of sent.slice(0, 20)) await sink.append(e);
    // Nothing listens: connection refused, retried, visible in health.
    await until(() => !sink.health().ok);
    expect(sink.health().reason).toMatch(/webhook http:\/\/127\.0\.0\.1:\d+ failing/);
    await Promise.all(sent.slice(20).map((e) => sink.append(e)));
    const c = await collector(port);
    await until(() => c.events().length >= 40);
    await new Promise((r) => setTimeout(r, 100)); // nothing more arrives
    expect(c.events().map((e) => e.requestId)).toEqual(sent.map((e) => e.requestId));
    expect(Math.max(...c.batches.map((b) => b.length))).toBeLessThanOrEqual(7);
    await until(() => sink.health().ok);
    expect(await readdir(join(dir, 'spool'))).toEqual([]);
  });

  it('retries a batch the collector refused, without duplicates', async () => {
    const port = await freePort();
    let calls = 0;
    const c = await collector(port, () => (++calls <= 3 ? 503 : 200));
    const sink = await webhook(port);
    for (let i = 0; i < 10; i++) await sink.append(event({ requestId: `r${i}` }));
    await until(() => c.events().length >= 10);
    await new Promise((r) => setTimeout(r, 100));
    expect(c.events().map((e) => e.requestId)).toEqual(Array.from({ length: 10 }, (_, i) => `r${i}`));
    expect(c.requests()).toBeGreaterThan(c.batches.length);
  });

  it('keeps what was not delivered in the spool and resends it after a restart', async () => {
    const port = await freePort();
    const first = await webhook(port);
    for (let i = 0; i < 10; i++) await first.append(event({ requestId: `r${i}` }));
    await first.close();
    const spooled = await readdir(join(dir, 'spool'));
    expect(spooled.length).toBeGreaterThanOrEqual(2); // 7 + 3
    const c = await collector(port);
    const second = await webhook(port);
    await second.append(event({ requestId: 'r10' }));
    await until(() => c.events().length >= 11);
    await new Promise((r) => setTimeout(r, 100));
    expect(c.events().map((e) => e.requestId)).toEqual(Array.from({ length: 11 }, (_, i) => `r${i}`));
    expect(await readdir(join(dir, 'spool'))).toEqual([]);
  });

  it('remembers across a restart the highest chain seq the collector acknowledged (for retention)', async () => {
    const port = await freePort();
    const c = await collector(port);
    const first = await webhook(port);
    expect(first.deliveredThrough()).toBe(0);
    for (let i = 1; i <= 5; i++) {
      await first.append({
        seq: i,
        prev: '0'.repeat(64),
        ...event({ requestId: `r${i}` }),
        hash: 'f'.repeat(64),
      } as AuditRecord);
    }
    await until(() => c.events().length >= 5);
    await until(() => first.deliveredThrough() === 5);
    await first.close();
    const second = await webhook(port);
    expect(second.deliveredThrough()).toBe(5);
    await second.close();
  });

  it('rejects an append and reports unhealthy when the spool cannot be written', async () => {
    const port = await freePort();
    let broken = false;
    const sink = await WebhookAuditSink.open({
      url: `http://127.0.0.1:${port}/`,
      spoolDir: join(dir, 'spool'),
      openFile: async (path, flags) => {
        const { open: openFs } = await import('node:fs/promises');
        const h = await openFs(path, flags);
        return {
          write: (b) =>
            broken
              ? Promise.reject(
                  Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' }),
                )
              : h.write(b),
          datasync: () => h.datasync(),
          truncate: (n) => h.truncate(n),
          close: () => h.close(),
        };
      },
    });
    open.push(sink);
    broken = true;
    await expect(sink.append(event())).rejects.toMatchObject({ code: 'AUDIT_WRITE_FAILED' });
    expect(sink.health()).toMatchObject({ ok: false });
    expect(sink.health().reason).toContain('ENOSPC');
  });
});

describe('MultiAuditSink', () => {
  class Failing implements AuditSink {
    fail = true;
    got: AuditEvent[] = [];
    append(e: AuditEvent) {
      if (this.fail) return Promise.reject(new Error('collector unreachable'));
      this.got.push(e);
      return Promise.resolve();
    }
    health() {
      return { ok: true };
    }
    close() {
      return Promise.resolve();
    }
  }

  it('hands the extras the stored record, with seq and hash, in chain order', async () => {
    const primary = await JsonlAuditSink.open({ dir });
    const out = new PassThrough();
    let text = '';
    out.on('data', (c: Buffer) => (text += c.toString()));
    const multi = new MultiAuditSink(primary, [{ name: 'stdout', sink: new StdoutAuditSink(out) }]);
    open.push(multi);
    await Promise.all(Array.from({ length: 20 }, (_, i) => multi.append(event({ requestId: `r${i}` }))));
    await new Promise((r) => setTimeout(r, 10));
    const lines = text
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l) as AuditRecord);
    expect(lines.map((l) => l.seq)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    expect(lines.at(-1)!.hash).toBe(primary.head().hash);
  });

  it('serves the pull when an optional extra fails, and shows the failure in health', async () => {
    const primary = await JsonlAuditSink.open({ dir });
    const extra = new Failing();
    const multi = new MultiAuditSink(primary, [{ name: 'webhook', sink: extra }]);
    open.push(multi);
    await multi.append(event());
    await new Promise((r) => setTimeout(r, 10));
    expect(multi.health()).toEqual({ ok: false, reason: 'webhook: collector unreachable' });
    expect(multi.writable()).toBe(true);
    expect(multi.status()).toEqual([
      { name: 'jsonl', ok: true, required: true },
      { name: 'webhook', ok: false, required: false, reason: 'collector unreachable' },
    ]);
    extra.fail = false;
    await multi.append(event());
    await new Promise((r) => setTimeout(r, 10));
    expect(multi.health()).toEqual({ ok: true });
  });

  it('fails the append when a required extra fails', async () => {
    const primary = await JsonlAuditSink.open({ dir });
    const multi = new MultiAuditSink(primary, [{ name: 'webhook', sink: new Failing(), required: true }]);
    open.push(multi);
    await expect(multi.append(event())).rejects.toThrow('collector unreachable');
    expect(multi.writable()).toBe(false);
  });
});
