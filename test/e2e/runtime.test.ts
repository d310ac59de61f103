import { execFileSync } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import semver from 'semver';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../support/ports.ts';
import { clientEnv, run, startDaemon, waitFor } from '../support/proc.ts';

const root = join(import.meta.dirname, '../..');
const engines = (
  JSON.parse(await readFile(join(root, 'package.json'), 'utf8')) as { engines: { node: string } }
).engines.node;
/** The machine's own Node (Debian's, older than the one npm ci installs): what `./bin/pullwarden.js` meets. */
const SYSTEM_NODE = '/usr/bin/node';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pullwarden-runtime-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/**
 * A copy of the package layout (bin/, package.json, node_modules) with `dist/` optional: the bin
 * script is the one under test, the CLI behind it the real one (a dist/cli/main.js that re-exports
 * src/cli/main.ts, which Node 24 runs without a build).
 */
async function packageCopy(name: string, withDist: boolean): Promise<string> {
  const pkg = join(dir, name);
  await mkdir(join(pkg, 'bin'), { recursive: true });
  await copyFile(join(root, 'bin/pullwarden.js'), join(pkg, 'bin/pullwarden.js'));
  await copyFile(join(root, 'package.json'), join(pkg, 'package.json'));
  await symlink(join(root, 'node_modules'), join(pkg, 'node_modules'));
  if (withDist) {
    await mkdir(join(pkg, 'dist/cli'), { recursive: true });
    const main = pathToFileURL(join(root, 'src/cli/main.ts')).href;
    await writeFile(join(pkg, 'dist/cli/main.js'), `export { main, runCli } from ${JSON.stringify(main)};\n`);
  }
  return pkg;
}

describe('bin/pullwarden.js: the runtime it needs, in one line', () => {
  it('on the system Node (too old) prints which Node it needs and how to get it, exit 2, no stack trace', async () => {
    const version = execFileSync(SYSTEM_NODE, ['--version'], { encoding: 'utf8' }).trim();
    // The point of the test: a Node that cannot run pullwarden. Fails loudly if the machine's is new enough.
    expect(semver.satisfies(version, engines), `${SYSTEM_NODE} is ${version}`).toBe(false);
    const pkg = await packageCopy('old-node', true);
    const r = await run(SYSTEM_NODE, [join(pkg, 'bin/pullwarden.js'), 'serve'], { allowFailure: true });
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    const lines = r.stderr.trimEnd().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(`needs Node.js ${engines}, this is ${version}`);
    expect(lines[0]).toContain('npm ci');
    expect(lines[0]).toMatch(/npm start.*npx pullwarden/);
    expect(r.stderr).not.toMatch(/ERR_UNKNOWN_BUILTIN_MODULE|node:sqlite|\n\s+at /);
  });

  it('on a supported Node without a build says to build, exit 2', async () => {
    const pkg = await packageCopy('no-dist', false);
    const r = await run(process.execPath, [join(pkg, 'bin/pullwarden.js'), '--version'], {
      allowFailure: true,
    });
    expect(r.code).toBe(2);
    expect(r.stderr.trimEnd().split('\n')).toEqual([
      'pullwarden: dist/ is not built: run `npm run build` (or `npm start`) in the pullwarden checkout',
    ]);
  });

  it('on a supported Node runs the CLI', async () => {
    const pkg = await packageCopy('ok', true);
    const r = await run(process.execPath, [join(pkg, 'bin/pullwarden.js'), '--version']);
    const { version } = JSON.parse(await readFile(join(root, 'package.json'), 'utf8')) as { version: string };
    expect(r.stdout.trim()).toBe(version);
  });
});

describe('offline start-up (no route to the Sigstore TUF mirror)', () => {
  it('logs one warning line without a stack trace, naming the root in use and where it came from', async () => {
    const port = await freePort();
    const config = join(dir, 'offline.yaml');
    await writeFile(
      config,
      stringify({
        listen: `127.0.0.1:${port}`,
        storage: { dir: join(dir, 'offline-data') },
        log: { level: 'info' },
        upstreams: { 'registry.test': { url: 'http://127.0.0.1:9' } },
        trust: { refresh: '1h' }, // the public-good root, refreshed over TUF at start-up
        policies: [{ name: 'allow-all', match: ['**'], action: 'allow' }],
      }),
    );
    // No route out: Node's fetch (used by @sigstore/tuf) goes to the closed proxy port.
    const serve = startDaemon(process.execPath, [join(root, 'src/cli/run.ts'), 'serve', '--config', config], {
      env: clientEnv({ NODE_USE_ENV_PROXY: '1' }),
    });
    try {
      const line = await waitFor(
        'the TUF refresh warning',
        () =>
          serve
            .stdout()
            .split('\n')
            .find((l) => l.includes('trust root refresh')),
        { timeoutMs: 60_000, daemon: serve },
      );
      const event = JSON.parse(line) as Record<string, unknown>;
      expect(event).toMatchObject({
        level: 40,
        mirror: 'https://tuf-repo-cdn.sigstore.dev',
        using: expect.stringMatching(/^the root embedded in @sigstore\/tuf \d+\.\d+\.\d+ \(seeds\.json\)$/),
      });
      expect(event.msg).toBe(`trust root refresh over TUF failed; using ${String(event.using)}`);
      expect(event.reason).toContain('127.0.0.1:9');
      expect(event).not.toHaveProperty('err');
      expect(line).not.toContain('stack');
      expect(
        serve
          .stdout()
          .split('\n')
          .filter((l) => l.includes('trust root refresh')),
      ).toHaveLength(1);
      expect(serve.stderr()).toBe('');
      // and it serves: the embedded root is a working root
      const ready = await fetch(`http://127.0.0.1:${port}/healthz`);
      expect(ready.status).toBe(200);
    } finally {
      await serve.stop();
    }
  });
});
