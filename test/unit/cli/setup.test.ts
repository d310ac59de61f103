import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runCli } from '../../support/cli.ts';
import {
  containerdHostDirs,
  effectiveEndpoint,
  parseProxyUrl,
  parseToml,
  readHostsToml,
  renderHostsToml,
  renderRegistriesConf,
  TomlError,
} from '../../../src/cli/setup/index.ts';
import { UsageError } from '../../../src/cli/types.ts';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pw-setup-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const cli = (argv: string[]) => runCli(argv, dir);

const PROXY = parseProxyUrl('http://pullwarden.internal:5050');
const TLS_PROXY = parseProxyUrl('https://pullwarden.internal');

describe('parseToml (smol-toml: hosts.toml, config.toml, registries.conf)', () => {
  it('reads root keys, quoted table headers, arrays and comments', () => {
    const doc = parseToml(
      [
        '# comment',
        'server = "http://p:5050" # trailing comment',
        "literal = 'C:\\path'",
        'n = 1_000',
        'on = true',
        '',
        '[host."http://p:5050"]',
        '  capabilities = [',
        '    "pull",  # why',
        '    "resolve",',
        '  ]',
        '  client = [["/c.pem", "/k.pem"]]',
        '  header = { x-a = "1", "x b" = ["2"] }',
        '[host."http://p:5050".more]',
        '  k = "v\\u00e9\\n"',
        '[[registry]]',
        'prefix = "a"',
        '[[registry]]',
        'prefix = "b"',
      ].join('\n'),
    );
    expect(doc).toEqual({
      server: 'http://p:5050',
      literal: 'C:\\path',
      n: 1000,
      on: true,
      host: {
        'http://p:5050': {
          capabilities: ['pull', 'resolve'],
          client: [['/c.pem', '/k.pem']],
          header: { 'x-a': '1', 'x b': ['2'] },
          more: { k: 'vé\n' },
        },
      },
      registry: [{ prefix: 'a' }, { prefix: 'b' }],
    });
  });

  it('reports syntax errors with their line', () => {
    expect(() => parseToml('a = 1\nserver = http://x\n')).toThrow(TomlError);
    expect(() => parseToml('a = 1\nserver = http://x\n')).toThrow(/^line 2: /);
    expect(() => parseToml('a = "x"\na = "y"\n')).toThrow(/^line 2: .*already defined/);
    expect(() => parseToml('[host."x"\n')).toThrow(/^line 1: /);
    expect(() => parseToml('a = "open\n')).toThrow(/^line 1: /);
    expect(() => parseToml('a = [1, 2\n')).toThrow(/^line 2: /);
  });
});

describe('renderHostsToml', () => {
  it('sets server and the one mirror host to the proxy, pull and resolve only', () => {
    const text = renderHostsToml('docker.io', PROXY);
    expect(text).toContain('server = "http://pullwarden.internal:5050"\n');
    expect(text).toContain(
      '[host."http://pullwarden.internal:5050"]\n  capabilities = ["pull", "resolve"]\n',
    );
    expect(text).not.toMatch(/skip_verify|ca =|client =/);
    const route = readHostsToml(text, 'docker.io');
    expect(route.serverExplicit).toBe(true);
    expect(route.server.effective).toBe('http://pullwarden.internal:5050/v2');
    expect(route.hosts.map((h) => [h.effective, h.capabilities])).toEqual([
      ['http://pullwarden.internal:5050/v2', ['pull', 'resolve']],
    ]);
  });

  it('writes ca, client and skip_verify for the server and the host only when asked', () => {
    const text = renderHostsToml('ghcr.io', TLS_PROXY, {
      ca: '/etc/pw/ca.pem',
      client: { cert: '/etc/pw/c.pem', key: '/etc/pw/k.pem' },
      skipVerify: true,
    });
    const doc = parseToml(text);
    const tls = { ca: '/etc/pw/ca.pem', client: [['/etc/pw/c.pem', '/etc/pw/k.pem']], skip_verify: true };
    expect(doc).toMatchObject({ server: 'https://pullwarden.internal', ...tls });
    expect(doc['host']).toEqual({
      'https://pullwarden.internal': { capabilities: ['pull', 'resolve'], ...tls },
    });
  });
});

describe('containerd host names', () => {
  it('tries host_port_ before host:port, and only the name for a host without a port', () => {
    expect(containerdHostDirs('127.0.0.1:5000')).toEqual(['127.0.0.1_5000_', '127.0.0.1:5000']);
    expect(containerdHostDirs('docker.io')).toEqual(['docker.io']);
    expect(containerdHostDirs('index.docker.io')).toEqual(['docker.io']);
  });

  it('resolves endpoints as containerd does: https by default, /v2 appended', () => {
    expect(effectiveEndpoint('registry.example')).toBe('https://registry.example/v2');
    expect(effectiveEndpoint('http://P:5050/')).toBe('http://p:5050/v2');
    expect(effectiveEndpoint('https://p:443/v2')).toBe('https://p/v2');
    expect(effectiveEndpoint('https://p/mirror', true)).toBe('https://p/mirror');
  });

  it('defaults server to the real registry and capabilities to pull, resolve, push', () => {
    const route = readHostsToml('[host."http://p:5050"]\n', 'docker.io');
    expect(route.serverExplicit).toBe(false);
    expect(route.server.effective).toBe('https://registry-1.docker.io/v2');
    expect(route.hosts[0]?.capabilities).toEqual(['pull', 'resolve', 'push']);
  });
});

describe('parseProxyUrl', () => {
  it('accepts an http(s) origin and refuses paths, credentials and other schemes', () => {
    expect(parseProxyUrl('http://pw:5050/')).toEqual({
      url: 'http://pw:5050',
      host: 'pw:5050',
      scheme: 'http',
    });
    expect(parseProxyUrl('https://pw:443')).toEqual({ url: 'https://pw', host: 'pw', scheme: 'https' });
    for (const bad of ['pw:5050', 'ftp://pw', 'http://pw/v2', 'http://u:p@pw', 'http://pw?x=1']) {
      expect(() => parseProxyUrl(bad), bad).toThrow(UsageError);
    }
  });
});

describe('renderRegistriesConf', () => {
  it('writes a path-prefix location per upstream, insecure only for an http proxy, no mirrors', () => {
    const { text, warnings } = renderRegistriesConf(
      [
        { host: 'docker.io', aliases: [] },
        { host: 'registry.local:5000', aliases: ['corp', 'corp2'] },
      ],
      PROXY,
      { defaultUpstream: 'docker.io' },
    );
    expect(warnings).toEqual([]);
    const doc = parseToml(text);
    expect(doc).toEqual({
      'unqualified-search-registries': ['docker.io'],
      registry: [
        { prefix: 'docker.io', location: 'pullwarden.internal:5050/docker.io', insecure: true },
        { prefix: 'registry.local:5000', location: 'pullwarden.internal:5050/corp', insecure: true },
      ],
    });
    expect(text).not.toMatch(/^\[\[registry\.mirror\]\]/m);
    const tls = parseToml(renderRegistriesConf([{ host: 'ghcr.io', aliases: [] }], TLS_PROXY).text);
    expect(tls['registry']).toEqual([{ prefix: 'ghcr.io', location: 'pullwarden.internal/ghcr.io' }]);
  });

  it('leaves out an upstream with a port and no alias, naming the config key to add', () => {
    const { text, warnings } = renderRegistriesConf([{ host: '10.0.0.5:5000', aliases: [] }], PROXY);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain('upstreams."10.0.0.5:5000".aliases');
    expect(text).toContain('# WARNING: upstream "10.0.0.5:5000" has a port');
    expect(parseToml(text)['registry']).toBeUndefined();
  });
});

describe('pullwarden hosts-toml', () => {
  it('writes one hosts.toml per configured upstream (embedded defaults) and _default, and prints each', async () => {
    const r = await cli(['hosts-toml', '--proxy', 'http://pw:5050', '--out', 'certs.d']);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    const names = (await readdir(join(dir, 'certs.d'))).sort();
    expect(names).toEqual([
      '_default',
      'docker.io',
      'gcr.io',
      'ghcr.io',
      'public.ecr.aws',
      'quay.io',
      'registry.k8s.io',
    ]);
    expect(r.stdout).toContain('every other registry -> http://pw:5050');
    for (const n of names) {
      expect(r.stdout).toContain(`wrote ${join(dir, 'certs.d', n, 'hosts.toml')}`);
      const route = readHostsToml(await readFile(join(dir, 'certs.d', n, 'hosts.toml'), 'utf8'), n);
      expect(route.server.effective).toBe('http://pw:5050/v2');
    }
  });

  it('uses --config, names a host with a port host:port, and writes TLS paths as absolute paths', async () => {
    await writeFile(
      join(dir, 'pw.yaml'),
      'upstreams:\n  "registry.local:5000": { url: "https://registry.local:5000" }\n  docker.io: {}\n',
    );
    const r = await cli([
      'hosts-toml',
      '--config',
      'pw.yaml',
      '--proxy',
      'https://pw.internal',
      '--out',
      'out',
      '--ca',
      'ca.pem',
      '--client-cert',
      '/etc/c.pem',
      '--client-key',
      '/etc/k.pem',
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect((await readdir(join(dir, 'out'))).sort()).toEqual([
      '_default',
      'docker.io',
      'registry.local:5000',
    ]);
    for (const name of ['registry.local:5000', '_default']) {
      const doc = parseToml(await readFile(join(dir, 'out', name, 'hosts.toml'), 'utf8'));
      expect(doc).toMatchObject({
        server: 'https://pw.internal',
        ca: join(dir, 'ca.pem'),
        client: [['/etc/c.pem', '/etc/k.pem']],
      });
      expect(doc['skip_verify']).toBeUndefined();
    }
  });

  it('--no-default writes no _default and warns loudly on stderr', async () => {
    const r = await cli(['hosts-toml', '--proxy', 'http://pw:5050', '--out', 'certs.d', '--no-default']);
    expect(r.code).toBe(0);
    expect(await readdir(join(dir, 'certs.d'))).not.toContain('_default');
    expect(r.stderr).toMatch(
      /^pullwarden hosts-toml: WARNING: --no-default: no .*_default\/hosts\.toml written/,
    );
    expect(r.stderr).toContain('straight from the internet, past pullwarden');
  });

  it('refuses TLS options for an http proxy, a lone --client-cert and a missing --out', async () => {
    const ca = await cli(['hosts-toml', '--proxy', 'http://pw', '--out', 'o', '--ca', 'x.pem']);
    expect(ca.code).toBe(2);
    expect(ca.stderr).toContain('apply only to an https:// proxy');
    const lone = await cli(['hosts-toml', '--proxy', 'https://pw', '--out', 'o', '--client-cert', 'c']);
    expect(lone.code).toBe(2);
    expect((await cli(['hosts-toml', '--proxy', 'http://pw'])).stderr).toContain('--out DIR is required');
  });

  it('exits 2 on an invalid config file', async () => {
    await writeFile(join(dir, 'bad.yaml'), 'upstreams: {}\n');
    const r = await cli(['hosts-toml', '--config', 'bad.yaml', '--proxy', 'http://pw', '--out', 'o']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('invalid configuration');
  });
});

describe('pullwarden registries-conf', () => {
  it('prints to stdout, or writes --out; warns and exits 1 for a port upstream without alias', async () => {
    await writeFile(
      join(dir, 'pw.yaml'),
      [
        'upstreams:',
        '  ghcr.io: {}',
        '  "10.0.0.5:5000": { url: "http://10.0.0.5:5000", aliases: [lab] }',
        '  "10.0.0.6:5000": { url: "http://10.0.0.6:5000" }',
        'defaultUpstream: ghcr.io',
        '',
      ].join('\n'),
    );
    const r = await cli(['registries-conf', '--config', 'pw.yaml', '--proxy', 'http://pw:5050']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('upstreams."10.0.0.6:5000".aliases');
    expect(parseToml(r.stdout)['registry']).toEqual([
      { prefix: 'ghcr.io', location: 'pw:5050/ghcr.io', insecure: true },
      { prefix: '10.0.0.5:5000', location: 'pw:5050/lab', insecure: true },
    ]);

    const w = await cli(['registries-conf', '--proxy', 'https://pw', '--out', 'registries.conf']);
    expect(w.code).toBe(0);
    expect(w.stdout).toContain('(6 of 6 upstreams)');
    const text = await readFile(join(dir, 'registries.conf'), 'utf8');
    const doc = parseToml(text);
    expect(doc['registry']).toContainEqual({ prefix: 'docker.io', location: 'pw/docker.io' });
    // What it cannot cover is said, in the file and on stderr.
    expect(text).toContain('# NOT covered here: registries that are not listed below.');
    expect(w.stderr).toContain('registries.conf has no catch-all');
  });

  it('--policy-json writes the catch-all: reject by default, accept the routed upstreams and the proxy', async () => {
    await writeFile(
      join(dir, 'pw.yaml'),
      [
        'upstreams:',
        '  ghcr.io: {}',
        '  "10.0.0.5:5000": { url: "http://10.0.0.5:5000", aliases: [lab] }',
        '  "10.0.0.6:5000": { url: "http://10.0.0.6:5000" }',
        '',
      ].join('\n'),
    );
    const r = await cli([
      'registries-conf',
      '--config',
      'pw.yaml',
      '--proxy',
      'http://pw:5050',
      '--out',
      'registries.conf',
      '--policy-json',
      'policy.json',
    ]);
    expect(r.code).toBe(1); // 10.0.0.6:5000 has no alias: not routed, so not accepted either
    expect(r.stderr).not.toContain('no catch-all');
    const accept = [{ type: 'insecureAcceptAnything' }];
    const policy = JSON.parse(await readFile(join(dir, 'policy.json'), 'utf8')) as {
      default: unknown;
      transports: Record<string, Record<string, unknown>>;
    };
    expect(policy.default).toEqual([{ type: 'reject' }]);
    expect(policy.transports['docker']).toEqual({
      'pw:5050': accept,
      'ghcr.io': accept,
      '10.0.0.5:5000': accept,
    });
    expect(policy.transports['containers-storage']).toEqual({ '': accept });
  });
});
