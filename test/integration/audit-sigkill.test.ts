import { spawn } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { sortAuditFiles, verifyAuditDir } from '../../src/audit/index.ts';
import type { AuditRecord } from '../../src/audit/index.ts';

const AUDIT = pathToFileURL(join(import.meta.dirname, '../../src/audit/index.ts')).href;

/**
 * The child appends events as fast as it can, 64 in flight, and prints "<seq> <requestId>" for each
 * append that resolved — the moment the HTTP layer would complete the response.
 */
const CHILD = `
const { JsonlAuditSink } = await import(${JSON.stringify(AUDIT)});
const [dir, run] = process.argv.slice(1);
const sink = await JsonlAuditSink.open({ dir, maxFileBytes: 256 * 1024 });
let n = 0;
async function worker() {
  for (;;) {
    const id = run + '-' + n++;
    const r = await sink.appendRecord({
      type: 'blob', time: new Date().toISOString(), requestId: id, client: '127.0.0.1',
      upstream: 'docker.io', repository: 'library/nginx', reference: 'sha256:' + 'b'.repeat(64),
      digest: 'sha256:' + 'b'.repeat(64), cache: 'hit', bytes: 1024, durationMs: 0.1, status: 200,
      reasons: ['x'.repeat(n % 300)],
    });
    process.stdout.write(r.seq + ' ' + id + '\\n');
  }
}
for (let i = 0; i < 64; i++) void worker();
`;

let dir: string | undefined;
afterEach(async () => {
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

/** Run the child until it acknowledged `acks` events, then SIGKILL it; the acknowledgements it printed. */
async function appendUntilKilled(auditDir: string, run: string, acks: number): Promise<Map<number, string>> {
  const child = spawn(process.execPath, ['--input-type=module', '-e', CHILD, auditDir, run], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const acked = new Map<number, string>();
  let buffered = '';
  await new Promise<void>((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', () => resolve());
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      buffered += chunk;
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      for (const line of lines) {
        const [seq, id] = line.split(' ');
        acked.set(Number(seq), id ?? '');
      }
      if (acked.size >= acks) child.kill('SIGKILL');
    });
  });
  expect(child.signalCode).toBe('SIGKILL');
  return acked;
}

async function records(auditDir: string): Promise<Map<number, AuditRecord>> {
  const out = new Map<number, AuditRecord>();
  for (const f of sortAuditFiles(await readdir(auditDir))) {
    const lines = (await readFile(join(auditDir, f.name), 'utf8')).split('\n');
    lines.pop(); // a torn last line, if any
    for (const l of lines) {
      const r = JSON.parse(l) as AuditRecord;
      out.set(r.seq, r);
    }
  }
  return out;
}

describe('the JSONL audit trail under SIGKILL', () => {
  it('has every acknowledged event on disk and a chain that verifies, across several crashes', async () => {
    dir = await mkdtemp(join(tmpdir(), 'pw-audit-kill-'));
    const auditDir = join(dir, 'audit');
    let total = 0;
    for (let run = 0; run < 4; run++) {
      // A random point: somewhere between a few hundred and a few thousand acknowledgements.
      const acked = await appendUntilKilled(auditDir, `run${run}`, 300 + Math.floor(Math.random() * 3000));
      total += acked.size;
      const stored = await records(auditDir);
      for (const [seq, id] of acked) expect(stored.get(seq)?.requestId, `seq ${seq}`).toBe(id);
      const v = await verifyAuditDir(auditDir);
      expect(v.firstBreak).toBeUndefined();
      expect(v.ok).toBe(true);
      expect(v.head!.seq).toBeGreaterThanOrEqual(Math.max(...acked.keys()));
      expect(v.lines).toBe(stored.size);
    }
    expect(total).toBeGreaterThan(1000);
  });
});
