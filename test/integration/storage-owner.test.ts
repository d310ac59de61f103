import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { verifyAuditDir } from '../../src/audit/index.ts';
import { makeImage, startFakeUpstream } from '../support/fake-upstream.ts';
import type { FakeUpstream } from '../support/fake-upstream.ts';
import { freePort } from '../support/ports.ts';
import { startServeProcess } from '../support/serve-process.ts';

const CLI = join(import.meta.dirname, '../../src/cli/run.ts');

let fake: FakeUpstream | undefined;
let dir: string | undefined;
const children: ChildProcess[] = [];

afterEach(async () => {
  for (const c of children.splice(0)) c.kill('SIGKILL');
  await fake?.close();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

/** A config file for one serve process on `data` (shared or not), on a free port. */
async function configFor(
  name: string,
  data: string,
  storage: Record<string, unknown> = {},
): Promise<{ config: string; port: number }> {
  const port = await freePort();
  const config = join(dir!, `${name}.yaml`);
  await writeFile(
    config,
    stringify({
      listen: `127.0.0.1:${port}`,
      storage: { dir: data, ...storage },
      log: { level: 'silent' },
      upstreams: { [fake!.host]: { url: fake!.url } },
      defaultUpstream: fake!.host,
      trust: { refresh: '0s' },
      policies: [{ name: 'allow-all', match: ['**'], action: 'allow' }],
    }),
  );
  return { config, port };
}

/** Run `serve` expecting it to refuse: its exit code and stderr. */
async function serveRefused(config: string): Promise<{ code: number | null; stderr: string }> {
  const proc = spawn(process.execPath, [CLI, 'serve', '--config', config], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  children.push(proc);
  let stderr = '';
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (d: string) => (stderr += d));
  const code = await new Promise<number | null>((resolve) => proc.once('exit', resolve));
  return { code, stderr };
}

async function start(config: string, port: number): Promise<ChildProcess> {
  const proc = await startServeProcess(config, port);
  children.push(proc);
  return proc;
}

describe('one process owns a storage directory', () => {
  it('refuses a second serve on the same storage.dir, naming the owner, and takes over after the owner was killed', async () => {
    fake = await startFakeUpstream();
    dir = await mkdtemp(join(tmpdir(), 'pw-owner-'));
    const data = join(dir, 'data');
    const a = await configFor('a', data);
    const b = await configFor('b', data);
    const owner = await start(a.config, a.port);

    const refused = await serveRefused(b.config);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain(`storage directory is in use by pid ${owner.pid}`);
    expect(refused.stderr).toContain(join(data, 'owners', 'exclusive.lock'));
    // The owner keeps serving, untouched by the refused start.
    expect((await fetch(`http://127.0.0.1:${a.port}/readyz`)).status).toBe(200);

    owner.kill('SIGKILL');
    await new Promise((r) => owner.once('exit', r));
    // The lock of a dead process is stale: the next start takes it over at once.
    const next = await start(b.config, b.port);
    const lock = JSON.parse(await readFile(join(data, 'owners', 'exclusive.lock'), 'utf8')) as {
      pid: number;
    };
    expect(lock.pid).toBe(next.pid);

    // A graceful stop removes the lock.
    next.kill('SIGTERM');
    await new Promise((r) => next.once('exit', r));
    expect(await readdir(join(data, 'owners'))).toEqual([]);
  });

  it('lets replicas that all declare storage.shared run together, each with its own audit chain, and refuses one that does not', async () => {
    fake = await startFakeUpstream();
    makeImage(fake, 'acme/app', '1.0', { layerSize: 4096 });
    dir = await mkdtemp(join(tmpdir(), 'pw-owner-'));
    const data = join(dir, 'data');
    const a = await configFor('a', data, { shared: true, replica: 'a' });
    const b = await configFor('b', data, { shared: true, replica: 'b' });
    const sameId = await configFor('b2', data, { shared: true, replica: 'b' });
    const exclusive = await configFor('x', data);
    await start(a.config, a.port);
    await start(b.config, b.port);

    const dup = await serveRefused(sameId.config);
    expect(dup.code).toBe(2);
    expect(dup.stderr).toContain('replica b, shared mode');
    const excl = await serveRefused(exclusive.config);
    expect(excl.code).toBe(2);
    expect(excl.stderr).toContain('every process on a shared directory must set storage.shared: true');

    for (const port of [a.port, b.port, a.port, b.port]) {
      expect((await fetch(`http://127.0.0.1:${port}/v2/acme/app/manifests/1.0`)).status).toBe(200);
    }
    for (const replica of ['a', 'b']) {
      const result = await verifyAuditDir(join(data, 'audit', replica));
      expect(result.ok).toBe(true);
      expect(result.lines).toBeGreaterThanOrEqual(2);
    }
  });

  it('keeps a shared replica from starting beside an exclusive owner', async () => {
    fake = await startFakeUpstream();
    dir = await mkdtemp(join(tmpdir(), 'pw-owner-'));
    const data = join(dir, 'data');
    const exclusive = await configFor('x', data);
    const shared = await configFor('s', data, { shared: true, replica: 's' });
    await start(exclusive.config, exclusive.port);
    const refused = await serveRefused(shared.config);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('every process on a shared directory must set storage.shared: true');
    expect(await readdir(join(data, 'owners'))).toEqual(['exclusive.lock']);
  });
});
