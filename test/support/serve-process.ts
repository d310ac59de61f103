import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { freePort } from './ports.ts';

const CLI = join(import.meta.dirname, '../../src/cli/run.ts');

/**
 * `pullwarden serve --config FILE` as a real process (SIGKILL tests need one), resolved once
 * `/healthz` answers on `port`; killed and rejected if it does not within 10 s.
 */
export async function startServeProcess(config: string, port: number): Promise<ChildProcess> {
  const proc = spawn(process.execPath, [CLI, 'serve', '--config', config], { stdio: 'ignore' });
  for (let i = 0; i < 200; i++) {
    const up = await fetch(`http://127.0.0.1:${port}/healthz`).then(
      (r) => r.ok,
      () => false,
    );
    if (up) return proc;
    await new Promise((r) => setTimeout(r, 50));
  }
  proc.kill('SIGKILL');
  throw new Error('pullwarden serve did not start');
}

/**
 * A config file in `dir` for one upstream, every repository allowed, on a free port, with storage in
 * `dir/data`: what the process-level tests (SIGKILL, restart) run on.
 */
export async function writeServeConfig(
  dir: string,
  upstream: { host: string; url: string },
): Promise<{ config: string; port: number }> {
  const port = await freePort();
  const config = join(dir, 'pullwarden.yaml');
  await writeFile(
    config,
    stringify({
      listen: `127.0.0.1:${port}`,
      storage: { dir: join(dir, 'data') },
      log: { level: 'silent' },
      upstreams: { [upstream.host]: { url: upstream.url } },
      defaultUpstream: upstream.host,
      trust: { refresh: '0s' },
      policies: [{ name: 'allow-all', match: ['**'], action: 'allow' }],
    }),
  );
  return { config, port };
}
