import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, beforeEach, afterEach, describe, expect, it } from 'vitest';
import { main } from '../../../src/cli/main.ts';
import { checkHostsDir, parseProxyUrl, renderHostsToml } from '../../../src/cli/setup/index.ts';
import type { Finding } from '../../../src/cli/setup/index.ts';
import { startTestProxy } from '../../support/app.ts';
import type { TestProxy } from '../../support/app.ts';
import { makeImage, startFakeUpstream } from '../../support/fake-upstream.ts';
import type { FakeUpstream } from '../../support/fake-upstream.ts';

const PROXY = parseProxyUrl('http://pw.internal:5050');
const UPSTREAMS = [
  { host: 'docker.io', url: 'https://registry-1.docker.io' },
  { host: 'ghcr.io', url: 'https://ghcr.io' },
  { host: 'registry.local:5000', url: 'http://10.1.2.3:5000' },
];
const REGEN = 'pullwarden hosts-toml …';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pw-doctor-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function put(name: string, text: string | undefined): Promise<void> {
  await mkdir(join(dir, name), { recursive: true });
  if (text !== undefined) await writeFile(join(dir, name, 'hosts.toml'), text);
}

async function writeGood(): Promise<void> {
  for (const u of UPSTREAMS) await put(u.host, renderHostsToml(u.host, PROXY));
}

const problems = (fs: Finding[]) => fs.filter((f) => f.level === 'problem').map((f) => [f.subject, f.code]);

async function cli(argv: string[]) {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.on('data', (c: Buffer) => (out += c.toString()));
  stderr.on('data', (c: Buffer) => (err += c.toString()));
  const code = await main(argv, { stdout, stderr, env: {}, cwd: dir });
  return { code, stdout: out, stderr: err };
}

describe('doctor: the hosts dir', () => {
  it('finds nothing wrong with what hosts-toml writes', async () => {
    await writeGood();
    const findings = await checkHostsDir(dir, UPSTREAMS, PROXY, REGEN);
    expect(problems(findings)).toEqual([]);
    expect(findings.map((f) => [f.subject, f.code])).toEqual([
      ['docker.io', 'ROUTED'],
      ['ghcr.io', 'ROUTED'],
      ['registry.local:5000', 'ROUTED'],
    ]);
  });

  it('reports a missing host: containerd would pull it straight from the real registry', async () => {
    await writeGood();
    await rm(join(dir, 'ghcr.io'), { recursive: true });
    const findings = await checkHostsDir(dir, UPSTREAMS, PROXY, REGEN);
    expect(problems(findings)).toEqual([['ghcr.io', 'MISSING']]);
    const missing = findings.find((f) => f.code === 'MISSING');
    expect(missing?.message).toContain(join(dir, 'ghcr.io', 'hosts.toml'));
    expect(missing?.fix).toContain(REGEN);
  });

  it('reports a directory without hosts.toml (certificates only: the real registry)', async () => {
    await writeGood();
    await rm(join(dir, 'ghcr.io', 'hosts.toml'));
    expect(problems(await checkHostsDir(dir, UPSTREAMS, PROXY, REGEN))).toEqual([
      ['ghcr.io', 'NO_HOSTS_TOML'],
    ]);
  });

  it('reports server = the real registry as FALLBACK (also under the upstream url from config)', async () => {
    await writeGood();
    const leaky = (server: string) =>
      `server = "${server}"\n\n[host."${PROXY.url}"]\n  capabilities = ["pull", "resolve"]\n`;
    await put('docker.io', leaky('https://registry-1.docker.io'));
    await put('registry.local:5000', leaky('http://10.1.2.3:5000'));
    const findings = await checkHostsDir(dir, UPSTREAMS, PROXY, REGEN);
    expect(problems(findings)).toEqual([
      ['docker.io', 'FALLBACK'],
      ['registry.local:5000', 'FALLBACK'],
    ]);
    const f = findings.find((x) => x.subject === 'docker.io');
    expect(f?.message).toContain('server = "https://registry-1.docker.io" is the real registry');
    expect(f?.fix).toBe(`set server = "${PROXY.url}" (${REGEN})`);
  });

  it("reports a mirror-only file (no server line) as FALLBACK to containerd's default server", async () => {
    await writeGood();
    await put('ghcr.io', `[host."${PROXY.url}"]\n  capabilities = ["pull", "resolve"]\n`);
    const findings = await checkHostsDir(dir, UPSTREAMS, PROXY, REGEN);
    expect(problems(findings)).toEqual([['ghcr.io', 'FALLBACK']]);
    expect(findings.find((f) => f.code === 'FALLBACK')?.message).toContain(
      "no server line, so containerd's default server https://ghcr.io",
    );
  });

  it('reports another mirror, a real-registry host entry and missing capabilities', async () => {
    await writeGood();
    await put(
      'ghcr.io',
      [
        `server = "${PROXY.url}"`,
        '[host."https://mirror.example"]',
        `[host."${PROXY.url}"]`,
        '  capabilities = ["pull"]',
        '[host."https://ghcr.io"]',
      ].join('\n'),
    );
    expect(problems(await checkHostsDir(dir, UPSTREAMS, PROXY, REGEN))).toEqual([
      ['ghcr.io', 'NOT_PROXY'],
      ['ghcr.io', 'FALLBACK'],
      ['ghcr.io', 'CAPABILITIES'],
    ]);
  });

  it('reports a file that does not parse, with its line', async () => {
    await writeGood();
    await put('ghcr.io', 'server = "http://pw.internal:5050"\n[host."http://pw.internal:5050"\n');
    const findings = await checkHostsDir(dir, UPSTREAMS, PROXY, REGEN);
    expect(problems(findings)).toEqual([['ghcr.io', 'INVALID']]);
    expect(findings.find((f) => f.code === 'INVALID')?.message).toContain('line 2');
  });

  it('reads host_port_ before host:port, as containerd does, and says so', async () => {
    await writeGood();
    await put('registry.local_5000_', 'server = "http://10.1.2.3:5000"\n');
    const findings = await checkHostsDir(dir, UPSTREAMS, PROXY, REGEN);
    expect(problems(findings)).toEqual([['registry.local:5000', 'FALLBACK']]);
    expect(findings.find((f) => f.code === 'SHADOWED')?.message).toContain(
      'containerd reads only registry.local_5000_/',
    );
  });

  it('uses _default/ for a host without its own directory', async () => {
    await writeGood();
    await rm(join(dir, 'ghcr.io'), { recursive: true });
    await put('_default', renderHostsToml('*', PROXY));
    const findings = await checkHostsDir(dir, UPSTREAMS, PROXY, REGEN);
    expect(problems(findings)).toEqual([]);
    expect(findings.find((f) => f.subject === 'ghcr.io')?.message).toContain(
      join(dir, '_default', 'hosts.toml'),
    );
  });
});

describe('pullwarden doctor against a running proxy', () => {
  let fake: FakeUpstream;
  let proxy: TestProxy;
  let config: string;
  let work: string;

  beforeAll(async () => {
    fake = await startFakeUpstream();
    makeImage(fake, 'ok/app', 'v1');
    makeImage(fake, 'bad/app', 'v1');
    proxy = await startTestProxy({
      upstreams: { [fake.host]: { url: fake.url } },
      policies: [
        { name: 'ok', match: [`${fake.host}/ok/**`], action: 'allow' },
        { name: 'deny-rest', match: ['**'], action: 'deny' },
      ],
    });
    config = join(proxy.dir, 'pullwarden.yaml');
    work = await mkdtemp(join(tmpdir(), 'pw-doctor-proxy-'));
    const written = await main(
      ['hosts-toml', '--config', config, '--proxy', proxy.url, '--out', join(work, 'certs.d')],
      {
        stdout: new PassThrough(),
        stderr: new PassThrough(),
        env: {},
        cwd: work,
      },
    );
    expect(written).toBe(0);
  });

  afterAll(async () => {
    await proxy?.close();
    await fake?.close();
    if (work !== undefined) await rm(work, { recursive: true, force: true });
  });

  const doctor = (...extra: string[]) =>
    cli(['doctor', '--config', config, '--proxy', proxy.url, '--hosts-dir', join(work, 'certs.d'), ...extra]);

  it('exits 0 when the canary is refused (403) and the hosts dir routes through the proxy', async () => {
    const r = await doctor('--canary', `${fake.host}/bad/app:v1`);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^ok +canary .*\/bad\/app:v1: refused with 403 \(DENIED: .*deny-rest/m);
    expect(r.stdout).toMatch(/^ok +proxy: .*\/readyz answers 200/m);
    expect(r.stdout).toContain('no problems found');
    // A denial by policy fetches nothing from upstream but what the decision needs: no blob.
    expect(fake.count({ kind: 'blob' })).toBe(0);
  });

  it('exits 1 and says enforcement is not active when the canary is served', async () => {
    const r = await doctor('--canary', `${fake.host}/ok/app:v1`, '--json');
    expect(r.code).toBe(1);
    const out = JSON.parse(r.stdout) as { ok: boolean; findings: Finding[] };
    expect(out.ok).toBe(false);
    const allowed = out.findings.find((f) => f.code === 'CANARY_ALLOWED');
    expect(allowed?.message).toContain('enforcement is not active for it');
    expect(allowed?.fix).toContain(`pullwarden check ${fake.host}/ok/app:v1`);
  });

  it('exits 1 for a missing host and prints how to fix it', async () => {
    await rm(join(work, 'certs.d', fake.host), { recursive: true });
    try {
      const r = await doctor('--canary', `${fake.host}/bad/app:v1`);
      expect(r.code).toBe(1);
      expect(r.stdout).toMatch(/^MISSING +127\.0\.0\.1:\d+: no .*hosts\.toml: containerd pulls/m);
      expect(r.stdout).toContain(`fix: write it: pullwarden hosts-toml --proxy ${proxy.url}`);
      expect(r.stdout).toContain('1 problem found');
    } finally {
      await mkdir(join(work, 'certs.d', fake.host), { recursive: true });
      await writeFile(
        join(work, 'certs.d', fake.host, 'hosts.toml'),
        renderHostsToml(fake.host, parseProxyUrl(proxy.url)),
      );
    }
  });

  it('exits 1 when the proxy cannot be reached, and 2 on a usage error', async () => {
    const r = await cli([
      'doctor',
      '--config',
      config,
      '--proxy',
      'http://127.0.0.1:9',
      '--hosts-dir',
      join(work, 'certs.d'),
    ]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^UNREACHABLE +proxy:/m);
    expect((await cli(['doctor', '--hosts-dir', 'x'])).code).toBe(2);
  });
});
