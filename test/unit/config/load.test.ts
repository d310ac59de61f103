import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError, EMBEDDED_SOURCE, loadConfig } from '../../../src/config/index.ts';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pw-config-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function write(name: string, text: string): Promise<string> {
  const file = join(dir, name);
  await writeFile(file, text);
  return file;
}

/** The ConfigError a load fails with (the test fails if it loads). */
async function loadError(path: string | undefined, env: NodeJS.ProcessEnv = {}): Promise<ConfigError> {
  const error: unknown = await loadConfig(path, env, { cwd: dir }).then(
    () => new Error('expected loadConfig to fail'),
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ConfigError);
  return error as ConfigError;
}

describe('loadConfig without a file', () => {
  it('runs on embedded defaults: six public upstreams, sqlite metadata under storage.dir', async () => {
    const config = await loadConfig(undefined, {}, { cwd: dir });
    expect(config.source).toBe(EMBEDDED_SOURCE);
    expect(Object.keys(config.upstreams).sort()).toEqual(
      ['docker.io', 'gcr.io', 'ghcr.io', 'public.ecr.aws', 'quay.io', 'registry.k8s.io'].sort(),
    );
    expect(config.upstreams['docker.io']?.url).toBe('https://registry-1.docker.io');
    expect(config.upstreams['ghcr.io']?.url).toBe('https://ghcr.io');
    expect(config.defaultUpstream).toBe('docker.io');
    expect(config.storage.dir).toBe(join(dir, 'pullwarden-data'));
    expect(config.metadata.url).toBe(`sqlite://${join(dir, 'pullwarden-data', 'meta.sqlite')}`);
    expect(config.upstreams['quay.io']?.tagTTL).toBe(30_000);
    expect(config.storage.maxBytes).toBe(50 * 1024 ** 3);
  });

  it('applies PULLWARDEN_* environment overrides', async () => {
    const config = await loadConfig(
      undefined,
      {
        PULLWARDEN_LISTEN: '0.0.0.0:6000',
        PULLWARDEN_STORAGE_DIR: 'cache',
        PULLWARDEN_METADATA_URL: 'redis://redis:6379/1',
        PULLWARDEN_LOG_LEVEL: 'debug',
      },
      { cwd: dir },
    );
    expect(config.listen).toBe('0.0.0.0:6000');
    expect(config.storage.dir).toBe(join(dir, 'cache'));
    expect(config.metadata.url).toBe('redis://redis:6379/1');
    expect(config.log.level).toBe('debug');
  });
});

describe('loadConfig with a file', () => {
  it('resolves relative paths against the directory of the file', async () => {
    const file = await write(
      'pw.yaml',
      'storage: { dir: data }\nmetadata: { url: "sqlite://db/meta.sqlite" }\nupstreams:\n  ghcr.io:\n    caFile: ca.pem\n',
    );
    const config = await loadConfig(file, {}, { cwd: '/' });
    expect(config.source).toBe(file);
    expect(config.storage.dir).toBe(join(dir, 'data'));
    expect(config.metadata.url).toBe(`sqlite://${join(dir, 'db', 'meta.sqlite')}`);
    expect(config.upstreams['ghcr.io']?.caFile).toBe(join(dir, 'ca.pem'));
  });

  it('lets an environment override win over the file, relative to the working directory', async () => {
    const file = await write(
      'pw.yaml',
      'listen: 127.0.0.1:1\nstorage: { dir: data }\nupstreams: { ghcr.io: }\n',
    );
    const config = await loadConfig(
      file,
      { PULLWARDEN_LISTEN: '127.0.0.1:2', PULLWARDEN_STORAGE_DIR: 'x' },
      {
        cwd: '/srv',
      },
    );
    expect(config.listen).toBe('127.0.0.1:2');
    expect(config.storage.dir).toBe('/srv/x');
  });

  it('names the environment variable when its value is invalid', async () => {
    const error = await loadError(undefined, { PULLWARDEN_LOG_LEVEL: 'loud' });
    expect(error.message).toContain(
      `${EMBEDDED_SOURCE}: log.level (from PULLWARDEN_LOG_LEVEL): expected one of`,
    );
  });

  it('reports an unknown key with its path and a suggestion', async () => {
    const file = await write('pw.yaml', 'storage:\n  maxbytes: 1GiB\nupstreams: { ghcr.io: {} }\n');
    const error = await loadError(file);
    expect(error.message).toContain(`${file}:2:3: storage.maxbytes: unknown key (did you mean "maxBytes"?)`);
  });

  it('reports a bad duration with its path and what is expected', async () => {
    const file = await write('pw.yaml', 'upstreams:\n  ghcr.io:\n    tagTTL: soon\n');
    const error = await loadError(file);
    expect(error.problems).toEqual([
      expect.objectContaining({
        path: 'upstreams.ghcr.io.tagTTL',
        message: expect.stringContaining('expected a duration such as "30s"') as string,
      }),
    ]);
    expect(error.message).toContain('upstreams.ghcr.io.tagTTL: expected a duration such as "30s"');
  });

  it('lists every problem, one line each', async () => {
    const file = await write(
      'pw.yaml',
      'listen: 5050\nextra: 1\nupstreams:\n  ghcr.io: { retries: many }\n  "https://quay.io": {}\n',
    );
    const lines = (await loadError(file)).message.split('\n');
    expect(lines).toHaveLength(4);
    expect(lines.every((l) => l.startsWith(`${file}:`))).toBe(true);
    expect(lines.join('\n')).toMatch(/listen: expected a string, got a number/);
    expect(lines.join('\n')).toMatch(/extra: unknown key/);
    expect(lines.join('\n')).toMatch(/upstreams\.ghcr\.io\.retries: expected a number, got a string/);
    expect(lines.join('\n')).toMatch(/upstreams\.https:\/\/quay\.io: expected a registry host/);
  });

  it('requires defaultUpstream to name a configured upstream', async () => {
    const file = await write(
      'pw.yaml',
      'upstreams: { ghcr.io: {}, quay.io: {} }\ndefaultUpstream: docker.io\n',
    );
    const error = await loadError(file);
    expect(error.message).toContain(
      'defaultUpstream: expected one of the configured upstreams ("ghcr.io", "quay.io")',
    );
  });

  it('points at the line and column of a YAML syntax error', async () => {
    const file = await write('pw.yaml', 'upstreams:\n  ghcr.io: {}\n  ghcr.io: {}\n');
    const error = await loadError(file);
    expect(error.message).toMatch(new RegExp(`^${file}:3:3: invalid YAML: Map keys must be unique`));
  });

  it('reports a missing config file and an empty one', async () => {
    expect((await loadError(join(dir, 'nope.yaml'))).message).toBe(
      `${join(dir, 'nope.yaml')}: cannot read the config file: no such file`,
    );
    expect((await loadError(await write('empty.yaml', '# nothing\n'))).message).toContain(
      'the file is empty',
    );
  });
});

describe('secrets', () => {
  it('reads passwordFile and removes the trailing newline', async () => {
    await write('token', 's3cret\n');
    const file = await write('pw.yaml', 'upstreams:\n  ghcr.io: { username: bot, passwordFile: token }\n');
    const config = await loadConfig(file, {});
    expect(config.upstreams['ghcr.io']?.password).toBe('s3cret');
    expect(config.upstreams['ghcr.io']?.passwordFile).toBe(join(dir, 'token'));
  });

  it('names the key of a missing secret file', async () => {
    const file = await write('pw.yaml', 'upstreams:\n  ghcr.io: { username: bot, passwordFile: missing }\n');
    const error = await loadError(file);
    expect(error.message).toContain(
      `upstreams.ghcr.io.passwordFile: cannot read secret file ${join(dir, 'missing')}: no such file`,
    );
  });

  it('reads passwordEnv, and says which variable is missing', async () => {
    const file = await write(
      'pw.yaml',
      'upstreams:\n  ghcr.io: { username: bot, passwordEnv: GHCR_TOKEN }\n',
    );
    const config = await loadConfig(file, { GHCR_TOKEN: 'from-env' });
    expect(config.upstreams['ghcr.io']?.password).toBe('from-env');
    expect((await loadError(file)).message).toContain(
      'upstreams.ghcr.io.passwordEnv: environment variable GHCR_TOKEN is not set or empty',
    );
  });

  it('skips reading secrets when asked to', async () => {
    const file = await write('pw.yaml', 'upstreams:\n  ghcr.io: { username: bot, passwordFile: missing }\n');
    const config = await loadConfig(file, {}, { resolveSecrets: false });
    expect(config.upstreams['ghcr.io']?.password).toBeUndefined();
  });

  it('resolves the Redis password from a file', async () => {
    await write('redis-pw', 'r3dis\n');
    const file = await write(
      'pw.yaml',
      'metadata: { url: "redis://redis:6379", passwordFile: redis-pw }\nupstreams: { ghcr.io: {} }\n',
    );
    expect((await loadConfig(file, {})).metadata.password).toBe('r3dis');
  });

  it('rejects a username without a password source, and two sources at once', async () => {
    const file = await write(
      'pw.yaml',
      'upstreams:\n  ghcr.io: { username: bot }\n  quay.io: { username: bot, password: a, passwordEnv: B }\n',
    );
    const { message } = await loadError(file);
    expect(message).toContain(
      'upstreams.ghcr.io.username: username needs password, passwordFile or passwordEnv',
    );
    expect(message).toContain('upstreams.quay.io: expected only one of password, passwordFile, passwordEnv');
  });

  it('never puts a secret value in an error message', async () => {
    const file = await write(
      'pw.yaml',
      'upstreams:\n  ghcr.io: { username: bot, password: hunter2, passwordEnv: X }\n  quay.io: { password: [hunter3] }\n',
    );
    const { message } = await loadError(file, { X: 'hunter4' });
    expect(message).not.toMatch(/hunter/);
  });
});

describe('audit.checkpoint', () => {
  it('reads the Ed25519 key from keyFile or keyEnv and rejects anything else, naming the key', async () => {
    const { generateKeyPairSync } = await import('node:crypto');
    const pem = generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
    await write('audit.pem', pem);
    const ok = await loadConfig(
      await write('a.yaml', 'upstreams: { docker.io: {} }\naudit: { checkpoint: { keyFile: audit.pem } }\n'),
      {},
      { cwd: dir },
    );
    expect(ok.audit.checkpointKey).toBe(pem.replace(/\n$/, ''));
    expect(ok.audit.checkpoint).toMatchObject({ every: 10_000, interval: 300_000 });
    const env = await loadConfig(
      await write('b.yaml', 'upstreams: { docker.io: {} }\naudit: { checkpoint: { keyEnv: AUDIT_KEY } }\n'),
      { AUDIT_KEY: pem },
      { cwd: dir },
    );
    expect(env.audit.checkpointKey).toBe(pem);
    const { redactConfig } = await import('../../../src/config/index.ts');
    expect(redactConfig(env).audit.checkpointKey).toBe('[redacted]');

    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({
      type: 'pkcs8',
      format: 'pem',
    }) as string;
    await write('rsa.pem', rsa);
    const wrongType = await loadError(
      await write('c.yaml', 'upstreams: { docker.io: {} }\naudit: { checkpoint: { keyFile: rsa.pem } }\n'),
    );
    expect(wrongType.message).toContain('audit.checkpoint.keyFile');
    expect(wrongType.message).toContain('expected an Ed25519 key');
    expect(wrongType.message).not.toContain('PRIVATE KEY');
    const both = await loadError(
      await write('d.yaml', 'upstreams: { docker.io: {} }\naudit: { checkpoint: {} }\n'),
    );
    expect(both.message).toContain('expected exactly one of keyFile, keyEnv');
  });
});
