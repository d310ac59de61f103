import { execFileSync, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { verifyAuditDir } from '../../src/audit/index.ts';
import { makeImage, sha256, startFakeUpstream } from '../support/fake-upstream.ts';
import type { FakeUpstream } from '../support/fake-upstream.ts';
import { freePort } from '../support/ports.ts';

const CLI = join(import.meta.dirname, '../../src/cli/run.ts');

let fake: FakeUpstream | undefined;
let dir: string | undefined;
const children: ChildProcess[] = [];

afterEach(async () => {
  for (const c of children.splice(0)) {
    for (const pid of workerPids(c)) process.kill(pid, 'SIGKILL');
    c.kill('SIGKILL');
  }
  await fake?.close();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

function workerPids(primary: ChildProcess): number[] {
  try {
    return execFileSync('pgrep', ['-P', String(primary.pid)], { encoding: 'utf8' })
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map(Number);
  } catch {
    return [];
  }
}

type Balance = 'round-robin' | 'reuseport';

function configText(
  port: number,
  data: string,
  policy: 'allow' | 'deny',
  workers: number,
  balance?: Balance, // undefined: the shipped default
  level = 'silent',
): string {
  return stringify({
    listen: `127.0.0.1:${port}`,
    storage: { dir: data },
    log: { level },
    server: { workers, ...(balance === undefined ? {} : { balance }) },
    upstreams: { [fake!.host]: { url: fake!.url } },
    defaultUpstream: fake!.host,
    trust: { refresh: '0s' },
    policies: [{ name: `${policy}-all`, match: ['**'], action: policy }],
  });
}

async function until(check: () => Promise<boolean>, what: string, ms = 60_000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    // A failed fetch is "not yet"; a check that throws otherwise (the process exited) fails at once.
    const done = await check().catch((e: unknown) => {
      if (e instanceof TypeError) return false;
      throw e;
    });
    if (done) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/**
 * `serve` with `server.workers: 2` on port 0 (a port picked beforehand may be taken by a parallel test
 * before the primary binds it), resolved with the address the primary logs once /readyz says every
 * worker is ready. A serve that exits first fails at once with its stderr.
 */
async function startWorkers(balance?: Balance): Promise<{
  proc: ChildProcess;
  base: string;
  port: number;
  config: string;
  data: string;
  /** SIGTERM the primary; resolves once it exited 0, fails with the tail of its output otherwise. */
  terminate: () => Promise<void>;
}> {
  dir = await mkdtemp(join(tmpdir(), 'pw-workers-'));
  const data = join(dir, 'data');
  const config = join(dir, 'pullwarden.yaml');
  await writeFile(config, configText(0, data, 'allow', 2, balance, 'info'));
  const proc = spawn(process.execPath, [CLI, 'serve', '--config', config], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(proc);
  let out = '';
  let err = '';
  let address: string | undefined;
  proc.stdout.on('data', (d: Buffer) => {
    // PW_DEBUG_WORKERS=1 shows the serve's own output as it comes.
    if (process.env['PW_DEBUG_WORKERS']) process.stderr.write(d);
    out = (out + d.toString()).slice(-64 * 1024); // the tail, for a failed exit's message
    if (address !== undefined) return;
    for (const line of out.split('\n')) {
      if (!line.includes('primary started its workers')) continue;
      address = (JSON.parse(line) as { address: string }).address;
    }
  });
  proc.stderr.on('data', (d: Buffer) => {
    if (process.env['PW_DEBUG_WORKERS']) process.stderr.write(d);
    err = (err + d.toString()).slice(-64 * 1024);
  });
  let exited: number | null | undefined;
  const exit = new Promise<number | null>((r) => proc.once('exit', (code) => r((exited = code))));
  const terminate = async () => {
    proc.kill('SIGTERM');
    const code = await exit;
    // A non-zero exit shows why: the primary logs every path that ends with 1 (second signal, shutdown
    // too slow or failed, an error nobody caught on stderr).
    if (code !== 0)
      expect.fail(`serve exited ${String(code)}:\n${err}\n${out.split('\n').slice(-40).join('\n')}`);
  };
  await until(() => {
    if (exited !== undefined) throw new Error(`serve exited ${String(exited)} before it was ready: ${err}`);
    return Promise.resolve(address !== undefined);
  }, 'the primary to start its workers');
  const port = Number(new URL(address!).port);
  await until(async () => (await fetch(`http://127.0.0.1:${port}/readyz`)).status === 200, 'readyz');
  expect(workerPids(proc)).toHaveLength(2);
  return { proc, base: `http://127.0.0.1:${port}/v2/acme/app`, port, config, data, terminate };
}

function auditedIds(lines: string[]): Set<string> {
  return new Set(lines.map((l) => (JSON.parse(l) as { requestId: string }).requestId));
}

async function auditLines(auditDir: string): Promise<string[]> {
  const lines: string[] = [];
  for (const name of await readdir(auditDir)) {
    if (!name.endsWith('.jsonl')) continue;
    lines.push(...(await readFile(join(auditDir, name), 'utf8')).split('\n').filter((l) => l !== ''));
  }
  return lines;
}

describe('server.workers: several processes serve as one deployment', () => {
  it(
    'shares one fill, one audit chain, one lock, aggregated metrics, reload and shutdown',
    { timeout: 180_000 },
    async () => {
      fake = await startFakeUpstream();
      const img = makeImage(fake, 'acme/app', '1.0', { layerSize: 8 * 1024 * 1024 });
      const layer = img.layerDigests[0]!;
      const { proc, base, port, config, data, terminate } = await startWorkers();

      // The primary holds the storage lock for every worker: another serve on the directory refuses.
      const other = join(dir!, 'other.yaml');
      await writeFile(other, configText(await freePort(), data, 'allow', 1));
      const second = spawn(process.execPath, [CLI, 'serve', '--config', other], {
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      children.push(second);
      let stderr = '';
      second.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      expect(await new Promise((r) => second.once('exit', r))).toBe(2);
      expect(stderr).toContain(`in use by pid ${proc.pid}`);

      expect((await fetch(`${base}/manifests/1.0`)).status).toBe(200);
      fake.resetCounts();
      fake.fault({ kind: 'blob', method: 'GET' }, { delayBodyMs: 10, chunkBytes: 256 * 1024 });
      const bodies = await Promise.all(
        Array.from({ length: 16 }, async () => {
          const res = await fetch(`${base}/blobs/${layer}`);
          return { status: res.status, digest: sha256(Buffer.from(await res.arrayBuffer())) };
        }),
      );
      for (const b of bodies) expect(b).toEqual({ status: 200, digest: layer });
      expect(fake.count({ kind: 'blob', method: 'GET' })).toBe(1);
      fake.clearFaults();

      // /metrics counts the whole deployment, whichever worker answers.
      const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      const served = /pullwarden_http_requests_total\{route="blob",method="GET",status="200"\} (\d+)/.exec(
        metrics,
      );
      expect(Number(served?.[1])).toBe(16);

      // A broken file keeps every worker on the last good policy; a good one reaches every worker.
      await writeFile(config, 'policies: [');
      proc.kill('SIGHUP');
      await new Promise((r) => setTimeout(r, 1_000));
      for (let i = 0; i < 8; i++) expect((await fetch(`${base}/manifests/1.0`)).status).toBe(200);
      await writeFile(config, configText(0, data, 'deny', 2, undefined, 'info'));
      proc.kill('SIGHUP');
      await until(async () => {
        const statuses = await Promise.all(
          Array.from({ length: 8 }, async () => (await fetch(`${base}/manifests/1.0`)).status),
        );
        return statuses.every((s) => s === 403);
      }, 'the deny policy on every worker');

      await terminate();
      expect(await readdir(join(data, 'owners'))).toEqual([]);
      const verified = await verifyAuditDir(join(data, 'audit'));
      expect(verified.ok).toBe(true);
      const blobEvents = (await auditLines(join(data, 'audit'))).filter((l) => l.includes('"type":"blob"'));
      expect(blobEvents.length).toBeGreaterThanOrEqual(16);
    },
  );

  it.each(['round-robin', 'reuseport'] as const)(
    'keeps the audit event of every acknowledged response when a worker is SIGKILLed (balance: %s)',
    { timeout: 180_000 },
    async (balance) => {
      fake = await startFakeUpstream();
      const img = makeImage(fake, 'acme/app', '1.0', { layerSize: 64 * 1024 });
      const { proc, base, port, data, terminate } = await startWorkers(balance);
      expect((await fetch(`${base}/manifests/1.0`)).status).toBe(200);

      const acknowledged: string[] = [];
      let stop = false;
      let n = 0;
      let unanswered = 0;
      const loop = async () => {
        while (!stop) {
          const id = `load-${n++}`;
          try {
            // Bounded as every real client is: with round-robin, a connection the primary had accepted
            // and was handing to the worker when it was killed is never answered (node:cluster's
            // hand-off keeps it), and counts, like a cut one, as not acknowledged.
            const res = await fetch(`${base}/blobs/${img.layerDigests[0]!}`, {
              headers: { 'x-request-id': id },
              signal: AbortSignal.timeout(10_000),
            });
            const body = Buffer.from(await res.arrayBuffer());
            if (res.status === 200 && body.length === 64 * 1024) acknowledged.push(id);
          } catch (err) {
            if (err instanceof Error && err.name === 'TimeoutError') unanswered++;
            // Cut by the kill: not acknowledged. A refused connection fails at once; pause so that
            // the loop does not starve this process's timers.
            await new Promise((r) => setTimeout(r, 10));
          }
        }
      };
      const loops = Array.from({ length: 8 }, () => loop());
      await new Promise((r) => setTimeout(r, 200 + Math.random() * 600));
      const victim = workerPids(proc)[0]!;
      process.kill(victim, 'SIGKILL');
      await new Promise((r) => setTimeout(r, 500));
      stop = true;
      await Promise.all(loops);
      // The primary replaces the worker; the deployment is ready again.
      await until(
        async () => (await fetch(`http://127.0.0.1:${port}/readyz`)).status === 200,
        'readyz again',
      );
      expect(workerPids(proc)).not.toContain(victim);

      await terminate();
      expect(acknowledged.length).toBeGreaterThan(20);
      // reuseport has no hand-off: the killed worker's queued connections are reset, none waits.
      if (balance === 'reuseport') expect(unanswered).toBe(0);
      const ids = auditedIds(await auditLines(join(data, 'audit')));
      const missing = acknowledged.filter((id) => !ids.has(id));
      expect(missing).toEqual([]);
      expect((await verifyAuditDir(join(data, 'audit'))).ok).toBe(true);
    },
  );

  it(
    'balance: reuseport — every worker listens itself on the one port, port 0 included',
    { timeout: 120_000 },
    async () => {
      fake = await startFakeUpstream();
      makeImage(fake, 'acme/app', '1.0', { layerSize: 1024 });
      const { proc, port, terminate } = await startWorkers('reuseport');
      // Two listening sockets on that one port, one per worker (not the primary's).
      const listening = execFileSync('ss', ['-Hltnp', `sport = :${port}`], { encoding: 'utf8' });
      const owners = [...listening.matchAll(/pid=(\d+)/g)].map((m) => Number(m[1])).sort();
      expect(owners).toEqual(workerPids(proc).sort());
      expect(owners).toHaveLength(2);
      for (let i = 0; i < 20; i++) {
        expect((await fetch(`http://127.0.0.1:${port}/v2/acme/app/manifests/1.0`)).status).toBe(200);
      }
      await terminate();
    },
  );
});
