import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import type { Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../../../', import.meta.url));

let dir: string;
let holder: Server | undefined;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pw-cli-errors-'));
});
afterEach(async () => {
  await new Promise<void>((r) => (holder === undefined ? r() : holder.close(() => r())));
  holder = undefined;
  await rm(dir, { recursive: true, force: true });
});

/** Run the real CLI (node src/cli/run.ts) and collect its output. */
function cli(args: string[], env: NodeJS.ProcessEnv = {}) {
  return new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile(
      process.execPath,
      [join(root, 'src/cli/run.ts'), ...args],
      { cwd: dir, env, timeout: 60_000 },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === 'number' ? error.code : -1;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/** A port some other process already listens on (this test's server). */
async function busyPort(): Promise<number> {
  const server = createServer();
  holder = server;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as { port: number }).port;
}

async function configOn(port: number, extra = ''): Promise<string> {
  const file = join(dir, 'pw.yaml');
  await writeFile(
    file,
    [
      `listen: 127.0.0.1:${port}`,
      'storage: { dir: data }',
      'upstreams: { 127.0.0.1:9: {} }',
      "policies: [{ name: all, match: ['**'], action: allow }]",
      'trust: { refresh: 0 }',
      extra,
      '',
    ].join('\n'),
  );
  return file;
}

describe('errors a person reads', () => {
  it('are one line with the fix, no stack trace, and log lines carry ISO-8601 times', async () => {
    const port = await busyPort();
    const result = await cli(['serve', '--config', await configOn(port)]);
    expect(result.code).toBe(2);
    expect(result.stderr).toBe(
      `pullwarden: cannot start: another process listens on 127.0.0.1:${port}: stop it, or set another address (listen, PULLWARDEN_LISTEN)\n`,
    );
    const logs = result.stdout
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as { time?: unknown });
    expect(logs.length).toBeGreaterThan(0);
    for (const line of logs) expect(line.time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  });

  it('carry the stack trace with --debug or LOG_LEVEL=debug', async () => {
    const port = await busyPort();
    const file = await configOn(port);
    for (const run of [
      () => cli(['serve', '--debug', '--config', file]),
      () => cli(['serve', '--config', file], { LOG_LEVEL: 'debug' }),
    ]) {
      const { code, stderr } = await run();
      expect(code).toBe(2);
      const [first, ...rest] = stderr.split('\n');
      expect(first).toContain('another process listens on');
      expect(rest.join('\n')).toMatch(/EADDRINUSE[\s\S]*\n\s+at /);
    }
  });

  it('suggest the nearest option or command, in one line', async () => {
    expect(await cli(['serve', '--confg', 'x.yaml'])).toEqual({
      code: 2,
      stdout: '',
      stderr:
        'pullwarden serve: unknown option "--confg" (did you mean "--config"?); see "pullwarden serve --help"\n',
    });
    expect((await cli(['config', 'valdate', 'x.yaml'])).stderr).toBe(
      'pullwarden: unknown command "config valdate" (did you mean "config validate"?); see "pullwarden help config"\n',
    );
    expect((await cli(['chek', 'nginx'])).stderr).toBe(
      'pullwarden: unknown command "chek" (did you mean "check"?); see "pullwarden --help"\n',
    );
  });

  it('log.timestamp: epoch writes milliseconds, none leaves the time out', async () => {
    const port = await busyPort();
    const epoch = await cli(['serve', '--config', await configOn(port, 'log: { timestamp: epoch }')]);
    const first = JSON.parse(epoch.stdout.split('\n')[0] ?? '{}') as { time?: unknown };
    expect(typeof first.time).toBe('number');
    const none = await cli(['serve', '--config', await configOn(port, 'log: { timestamp: none }')]);
    expect(JSON.parse(none.stdout.split('\n')[0] ?? '{}')).not.toHaveProperty('time');
  });
});
