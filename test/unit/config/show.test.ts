import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { runCli } from '../../support/cli.ts';
import { formatDuration, formatSize, loadConfig } from '../../../src/config/index.ts';
import type { LoadedConfig } from '../../../src/config/index.ts';

const example = fileURLToPath(new URL('../../../config/pullwarden.example.yaml', import.meta.url));

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pw-show-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const cli = (argv: string[], env: NodeJS.ProcessEnv = {}) => runCli(argv, dir, { env });

/** The effective config without where it came from. */
function effective(config: LoadedConfig): Omit<LoadedConfig, 'source'> {
  return Object.fromEntries(Object.entries(config).filter(([k]) => k !== 'source')) as Omit<
    LoadedConfig,
    'source'
  >;
}

/**
 * show → save → validate → load: the same effective configuration. `show` of the saved file prints
 * the same file again (apart from the header naming the source).
 */
async function roundTrip(file: string | undefined, env: NodeJS.ProcessEnv = {}, validateArgs: string[] = []) {
  const shown = await cli(['config', 'show', ...(file === undefined ? [] : [file])], env);
  expect(shown).toMatchObject({ code: 0, stderr: '' });
  const saved = join(dir, 'shown', 'effective.yaml');
  await mkdir(join(dir, 'shown'), { recursive: true });
  await writeFile(saved, shown.stdout);
  const validated = await cli(['config', 'validate', ...validateArgs, '--config', saved]);
  expect(validated.code).toBe(0);
  expect(validated.stdout).toMatch(new RegExp(`^${saved}: ok \\(\\d+ upstreams?\\)\n$`));
  const before = await loadConfig(file, env, { cwd: dir });
  const after = await loadConfig(saved, {}, { cwd: '/' });
  expect(effective(after)).toEqual(effective(before));
  const again = await cli(['config', 'show', saved]);
  const body = (text: string) => text.split('\n').slice(1).join('\n');
  expect(body(again.stdout)).toBe(body(shown.stdout));
  return shown.stdout;
}

describe('config show', () => {
  it('round-trips the example config through show and validate', async () => {
    const text = await roundTrip(example);
    const doc = parse(text) as {
      upstreams: Record<string, { tagTTL: unknown }>;
      storage: { maxBytes: unknown };
    };
    expect(doc.upstreams['ghcr.io']?.tagTTL).toBe('1m');
    expect(doc.storage.maxBytes).toBe('50GiB');
  });

  it('round-trips the embedded defaults, with environment overrides', async () => {
    const text = await roundTrip(undefined, {
      PULLWARDEN_STORAGE_DIR: 'cache',
      PULLWARDEN_LOG_LEVEL: 'warn',
    });
    const doc = parse(text) as { storage: { dir: string }; log: { level: string }; policies: unknown[] };
    expect(doc.storage.dir).toBe(join(dir, 'cache'));
    expect(doc.log.level).toBe('warn');
    expect(doc.policies).toHaveLength(1);
  });

  it('prints bare numbers in unit form and relative paths absolute, leaving no key the schema rejects', async () => {
    await mkdir(join(dir, 'etc'));
    await writeFile(
      join(dir, 'etc', 'pw.yaml'),
      [
        'upstreams: { ghcr.io: { tagTTL: 90, caFile: ca.pem } }',
        'storage: { dir: data, maxBytes: 1073741824, reserve: 5% }',
        'metadata: { url: "sqlite://db/meta.sqlite" }',
        'trust: { keys: { k: { file: keys/k.pem } } }',
        'server: { maxManifestBytes: 500000 }',
        "policies: [{ name: all, match: ['**'], action: allow }]",
        '',
      ].join('\n'),
    );
    // The files it names do not exist here: only their paths matter.
    const text = await roundTrip('etc/pw.yaml', {}, ['--skip-files']);
    const doc = parse(text) as Record<string, Record<string, unknown>>;
    expect(doc['upstreams']?.['ghcr.io']).toMatchObject({
      tagTTL: '90s',
      caFile: join(dir, 'etc', 'ca.pem'),
    });
    expect(doc['storage']).toMatchObject({ dir: join(dir, 'etc', 'data'), maxBytes: '1GiB', reserve: '5%' });
    expect(doc['metadata']?.['url']).toBe(`sqlite://${join(dir, 'etc', 'db', 'meta.sqlite')}`);
    expect(doc['server']?.['maxManifestBytes']).toBe('500KB');
    expect(text).not.toMatch(/^source:/m);
  });

  it('takes the file as an argument or as --config, not two different ones', async () => {
    await writeFile(join(dir, 'a.yaml'), 'upstreams: { ghcr.io: {} }\n');
    const positional = await cli(['config', 'show', 'a.yaml']);
    expect((await cli(['config', 'show', '--config', 'a.yaml'])).stdout).toBe(positional.stdout);
    const both = await cli(['config', 'show', 'a.yaml', '--config', 'b.yaml']);
    expect(both.code).toBe(2);
    expect(both.stderr).toContain('two config files given');
  });
});

describe('config show without the secrets', () => {
  it('prints a config whose secret files and variables are missing here (it never prints them)', async () => {
    await writeFile(
      join(dir, 'pw.yaml'),
      'upstreams: { ghcr.io: { username: bot, passwordFile: /run/secrets/none } }\n',
    );
    const result = await cli(['config', 'show', 'pw.yaml']);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('passwordFile: /run/secrets/none');
  });
});

describe('unit formatting', () => {
  it('uses the largest unit that holds the value exactly', () => {
    expect(formatDuration(0)).toBe('0s');
    expect(formatDuration(250)).toBe('250ms');
    expect(formatDuration(90_000)).toBe('90s');
    expect(formatDuration(86_400_000)).toBe('1d');
    expect(formatSize(50 * 1024 ** 3)).toBe('50GiB');
    expect(formatSize(500_000_000)).toBe('500MB');
    expect(formatSize(1023)).toBe('1023B');
  });
});
