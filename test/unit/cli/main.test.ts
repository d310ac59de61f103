import { execFile } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { AppModule, CliContext, DeploymentHandle as ServerHandle } from '../../../src/cli/main.ts';
import type { LoadedConfig } from '../../../src/config/index.ts';
import { runCli } from '../../support/cli.ts';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const pkg = (await import('../../../package.json', { with: { type: 'json' } })).default as {
  version: string;
};

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pw-cli-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Run main in-process with captured output. */
const run = (argv: string[], overrides: Partial<CliContext> = {}) => runCli(argv, dir, overrides);

const VALID = 'upstreams:\n  ghcr.io: {}\n  quay.io: {}\ndefaultUpstream: ghcr.io\n';

describe('pullwarden config validate (spawned)', () => {
  const cli = (...args: string[]) =>
    promisify(execFile)(process.execPath, [join(root, 'src/cli/run.ts'), ...args], {
      cwd: dir,
      env: {},
    }).then(
      ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
      (error: unknown) => {
        const e = error as { code: number; stdout: string; stderr: string };
        return { code: e.code, stdout: e.stdout, stderr: e.stderr };
      },
    );

  it('prints "FILE: ok (N upstreams)" and exits 0 for a valid file', async () => {
    await writeFile(join(dir, 'pw.yaml'), VALID);
    const result = await cli('config', 'validate', 'pw.yaml');
    expect(result).toEqual({ code: 0, stdout: 'pw.yaml: ok (2 upstreams)\n', stderr: '' });
  });

  it('lists the problems on stderr and exits 1 for an invalid file', async () => {
    await writeFile(
      join(dir, 'pw.yaml'),
      'upstreams:\n  ghcr.io: { tagTTL: later }\nstorage: { maxbytes: 1 }\n',
    );
    const result = await cli('config', 'validate', 'pw.yaml');
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr).toContain('upstreams.ghcr.io.tagTTL: expected a duration such as "30s"');
    expect(result.stderr).toContain('storage.maxbytes: unknown key (did you mean "maxBytes"?)');
  });

  it('reports a bad CEL gate expression with the file line and the position in the expression', async () => {
    await writeFile(
      join(dir, 'pw.yaml'),
      [
        'upstreams: { ghcr.io: {} }',
        'trust: { keys: { scanner: { pem: "-----BEGIN PUBLIC KEY-----\\nMFkw\\n-----END PUBLIC KEY-----" } } }',
        'policies:',
        '  - name: p',
        "    match: ['**']",
        '    action: verify',
        '    gates:',
        '      - name: g',
        '        attestors: [{ key: scanner }]',
        '        predicateTypes: [https://slsa.dev/provenance/v1]',
        '        cel:',
        '          expression: "predicate.buildDefinition.buildType == "',
        '',
      ].join('\n'),
    );
    const result = await cli('config', 'validate', 'pw.yaml');
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(
      /pw\.yaml:\d+:\d+: policies\.0\.gates\.0\.cel\.expression: CEL syntax error at 1:37: found = but expecting end of input/,
    );
  });
});

describe('main', () => {
  it('validates the example config', async () => {
    const example = join(root, 'config/pullwarden.example.yaml');
    const result = await run(['config', 'validate', example]);
    expect(result).toMatchObject({ code: 0, stdout: `${example}: ok (6 upstreams)\n` });
  });

  it('checks a file without its secrets when asked to', async () => {
    await writeFile(join(dir, 'pw.yaml'), 'upstreams:\n  ghcr.io: { username: bot, passwordFile: nope }\n');
    expect((await run(['config', 'validate', 'pw.yaml'])).code).toBe(1);
    expect((await run(['config', 'validate', '--skip-secrets', 'pw.yaml'])).code).toBe(0);
  });

  it('prints the JSON Schema', async () => {
    const result = await run(['config', 'schema']);
    expect(result.code).toBe(0);
    const schema = JSON.parse(result.stdout) as { properties: Record<string, unknown> };
    expect(schema.properties).toHaveProperty('upstreams');
  });

  it('shows the effective config with secrets where they come from, inline ones redacted', async () => {
    await writeFile(
      join(dir, 'pw.yaml'),
      'upstreams:\n  ghcr.io: { username: bot, passwordEnv: T }\n  quay.io: { username: bot, password: s3cret }\n',
    );
    const result = await run(['config', 'show', '--config', 'pw.yaml'], { env: { T: 'hunter2' } });
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('passwordEnv: T');
    expect(result.stdout).toContain('password: "[redacted]"');
    expect(result.stdout).not.toMatch(/hunter2|s3cret/);
  });

  it('prints help and the version', async () => {
    expect((await run(['--help'])).stdout).toContain('config validate [FILE | --config FILE]');
    expect((await run(['help', 'serve'])).stdout).toContain('Usage: pullwarden serve [--config FILE]');
    expect((await run(['config', 'validate', '--help'])).code).toBe(0);
    expect(await run(['--version'])).toMatchObject({ code: 0, stdout: `${pkg.version}\n` });
  });

  it('answers usage mistakes with the usage and exit code 2', async () => {
    const unknown = await run(['frobnicate']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toBe('pullwarden: unknown command "frobnicate"; see "pullwarden --help"\n');
    expect((await run([])).code).toBe(2);
    expect((await run(['config'])).code).toBe(2);
    expect((await run(['config', 'validate'])).stderr).toContain('missing FILE');
    expect((await run(['config', 'validate', 'a', 'b'])).code).toBe(2);
    expect((await run(['serve', '--port', '1'])).stderr).toBe(
      'pullwarden serve: unknown option "--port" (known: --config, -c, --help); see "pullwarden serve --help"\n',
    );
  });
});

describe('serve', () => {
  /** A fake app whose server records close() calls; signals and exit are captured. */
  function fakeProcess(closeImpl: () => Promise<void> = () => Promise.resolve()) {
    const signals = new EventEmitter();
    const exits: number[] = [];
    const started: LoadedConfig[] = [];
    let closes = 0;
    const app: AppModule = {
      checkImage: () => Promise.reject(new Error('not used')),
      startServer(config) {
        started.push(config);
        const handle: ServerHandle = {
          address: 'http://127.0.0.1:5050',
          close: () => {
            closes++;
            return closeImpl();
          },
        };
        return Promise.resolve(handle);
      },
    };
    const overrides: Partial<CliContext> = {
      signals,
      exit: (code) => exits.push(code),
      loadApp: () => Promise.resolve(app),
      env: { PULLWARDEN_LOG_LEVEL: 'silent' },
    };
    return { signals, exits, started, overrides, closes: () => closes };
  }

  it('starts on embedded defaults and shuts down gracefully on SIGTERM with exit code 0', async () => {
    const fake = fakeProcess();
    const running = run(['serve'], fake.overrides);
    await expect.poll(() => fake.started.length).toBe(1);
    expect(fake.started[0]?.source).toBe('embedded defaults');
    fake.signals.emit('SIGTERM', 'SIGTERM');
    expect((await running).code).toBe(0);
    expect(fake.closes()).toBe(1);
    expect(fake.exits).toEqual([0]);
    expect(fake.signals.listenerCount('SIGTERM')).toBe(0);
  });

  it('exits at once with code 1 on a second signal', async () => {
    const fake = fakeProcess(() => new Promise(() => undefined));
    const running = run(['serve'], fake.overrides);
    await expect.poll(() => fake.started.length).toBe(1);
    fake.signals.emit('SIGINT', 'SIGINT');
    fake.signals.emit('SIGINT', 'SIGINT');
    expect((await running).code).toBe(1);
    expect(fake.exits).toEqual([1]);
  });

  it('prints a clean message and returns 2 when the config is invalid or startup fails', async () => {
    await writeFile(join(dir, 'pw.yaml'), 'upstreams: {}\n');
    const fake = fakeProcess();
    const invalid = await run(['serve', '--config', 'pw.yaml'], fake.overrides);
    expect(invalid.code).toBe(2);
    expect(invalid.stderr).toContain('upstreams: expected at least one upstream');

    const failing = await run(['serve'], {
      ...fake.overrides,
      loadApp: () =>
        Promise.resolve({
          startServer: () => Promise.reject(new Error('listen EADDRINUSE')),
          checkImage: () => Promise.reject(new Error('not used')),
        }),
    });
    expect(failing).toMatchObject({
      code: 2,
      stderr: 'pullwarden: cannot start: listen EADDRINUSE (run with --debug for details)\n',
    });
  });

  it('takes the config file from PULLWARDEN_CONFIG', async () => {
    await writeFile(join(dir, 'pw.yaml'), VALID);
    const fake = fakeProcess();
    const running = run(['serve'], {
      ...fake.overrides,
      env: { PULLWARDEN_CONFIG: 'pw.yaml', PULLWARDEN_LOG_LEVEL: 'silent' },
    });
    await expect.poll(() => fake.started.length).toBe(1);
    expect(fake.started[0]?.source).toBe(join(dir, 'pw.yaml'));
    fake.signals.emit('SIGTERM', 'SIGTERM');
    expect((await running).code).toBe(0);
  });
});
