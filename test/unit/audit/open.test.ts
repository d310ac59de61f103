import { PassThrough } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { auditSchema, openAuditSink, verifyAuditDir } from '../../../src/audit/index.ts';
import type { AuditRecord } from '../../../src/audit/index.ts';
import { freePort } from '../../support/ports.ts';
import { event, tempDir } from './helpers.ts';

let dir: string;
let cleanup: () => Promise<void>;
beforeEach(async () => {
  ({ dir, cleanup } = await tempDir());
});
afterEach(async () => {
  await cleanup();
});

describe('openAuditSink', () => {
  it('builds the JSONL trail with the configured extras', async () => {
    const port = await freePort();
    const config = auditSchema.parse({
      stdout: true,
      webhook: { url: `http://127.0.0.1:${port}/`, flushInterval: '10ms' },
    });
    const out = new PassThrough();
    let text = '';
    out.on('data', (c: Buffer) => (text += c.toString()));
    const sink = await openAuditSink(config, { dir, stdout: out });
    await sink.append(event());
    expect(sink.status().map((s) => s.name)).toEqual(['jsonl', 'stdout', 'webhook']);
    await new Promise((r) => setTimeout(r, 10));
    expect((JSON.parse(text) as AuditRecord).seq).toBe(1);
    await sink.close();
    expect(await verifyAuditDir(dir)).toMatchObject({ ok: true, lines: 1 });
  });
});
