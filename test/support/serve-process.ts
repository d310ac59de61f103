import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';

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
