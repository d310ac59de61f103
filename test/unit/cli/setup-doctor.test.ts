import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, afterEach, describe, expect, it } from 'vitest';
import { runCli } from '../../support/cli.ts';
import {
  checkContainerdConfig,
  checkHostsDir,
  parseProxyUrl,
  readContainerdConfig,
  renderHostsToml,
} from '../../../src/cli/setup/index.ts';
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
  await put('_default', renderHostsToml('_default', PROXY));
}

const DEFAULT = '_default (every other registry)';

const problems = (fs: Finding[]) => fs.filter((f) => f.level === 'problem').map((f) => [f.subject, f.code]);

const cli = (argv: string[]) => runCli(argv, dir);

describe('doctor: the hosts dir', () => {
  it('finds nothing wrong with what hosts-toml writes', async () => {
    await writeGood();
    const findings = await checkHostsDir(dir, UPSTREAMS, PROXY, REGEN);
    expect(problems(findings)).toEqual([]);
    expect(findings.map((f) => [f.subject, f.code])).toEqual([
      ['docker.io', 'ROUTED'],
      ['ghcr.io', 'ROUTED'],
      ['registry.local:5000', 'ROUTED'],
      [DEFAULT, 'ROUTED'],
    ]);
  });

  it('reports a missing _default: every registry that is not an upstream goes straight to the internet', async () => {
    await writeGood();
    await rm(join(dir, '_default'), { recursive: true });
    const findings = await checkHostsDir(dir, UPSTREAMS, PROXY, REGEN);
    expect(problems(findings)).toEqual([[DEFAULT, 'NO_DEFAULT']]);
    const f = findings.find((x) => x.code === 'NO_DEFAULT');
    expect(f?.message).toContain(join(dir, '_default', 'hosts.toml'));
    expect(f?.message).toContain('any evil.example.com/x');
    expect(f?.fix).toBe(`write it: ${REGEN} (without --no-default)`);
    // A _default directory with certificates only is the same gap.
    await put('_default', undefined);
    expect(problems(await checkHostsDir(dir, UPSTREAMS, PROXY, REGEN))).toEqual([[DEFAULT, 'NO_DEFAULT']]);
  });

  it('reports a _default that is not the proxy (a mirror only: falls back to the registry pulled)', async () => {
    await writeGood();
    await put('_default', `[host."${PROXY.url}"]\n  capabilities = ["pull", "resolve"]\n`);
    let findings = await checkHostsDir(dir, UPSTREAMS, PROXY, REGEN);
    expect(problems(findings)).toEqual([[DEFAULT, 'FALLBACK']]);
    expect(findings.find((f) => f.code === 'FALLBACK')?.message).toContain('the registry being pulled');
    await put('_default', 'server = "https://mirror.example"\n');
    findings = await checkHostsDir(dir, UPSTREAMS, PROXY, REGEN);
    expect(problems(findings)).toEqual([[DEFAULT, 'NOT_PROXY']]);
  });

  it('reports a missing host: containerd would pull it straight from the real registry', async () => {
    await writeGood();
    await rm(join(dir, 'ghcr.io'), { recursive: true });
    await rm(join(dir, '_default'), { recursive: true }); // with it, ghcr.io would use _default/
    const findings = await checkHostsDir(dir, UPSTREAMS, PROXY, REGEN);
    expect(problems(findings)).toEqual([
      ['ghcr.io', 'MISSING'],
      [DEFAULT, 'NO_DEFAULT'],
    ]);
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
    const findings = await checkHostsDir(dir, UPSTREAMS, PROXY, REGEN);
    expect(problems(findings)).toEqual([]);
    expect(findings.find((f) => f.subject === 'ghcr.io')?.message).toContain(
      join(dir, '_default', 'hosts.toml'),
    );
  });
});

describe("doctor: containerd's config.toml", () => {
  const V2 = (path: string) =>
    `version = 2\n[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = "${path}"\n`;
  // containerd 2.2's `containerd config default` (excerpt), single-quoted as it prints it.
  const V3 = (path: string, extra = '') =>
    [
      'version = 3',
      "root = '/var/lib/containerd'",
      '[plugins]',
      "  [plugins.'io.containerd.cri.v1.images']",
      "    snapshotter = 'overlayfs'",
      extra,
      "    [plugins.'io.containerd.cri.v1.images'.registry]",
      `      config_path = '${path}'`,
      "  [plugins.'io.containerd.transfer.v1.local']",
      '    max_concurrent_downloads = 3',
      '',
    ].join('\n');
  const check = async (text: string, hostsDir = '/etc/containerd/certs.d') => {
    const file = join(dir, 'config.toml');
    await writeFile(file, text);
    return await checkContainerdConfig(file, hostsDir, true);
  };
  const codes = (fs: Finding[]) => fs.map((f) => [f.level, f.code]);

  it('reads config_path from the version 2 (containerd 1.6/1.7) and version 3 (2.x) schemas', () => {
    expect(readContainerdConfig(V2('/etc/containerd/certs.d'))).toMatchObject({
      version: 2,
      roots: ['/etc/containerd/certs.d'],
      table: '[plugins."io.containerd.grpc.v1.cri".registry]',
    });
    expect(readContainerdConfig(V3('/a:/b'))).toMatchObject({
      version: 3,
      roots: ['/a', '/b'],
      table: '[plugins."io.containerd.cri.v1.images".registry]',
      localPull: false,
    });
    expect(readContainerdConfig('[plugins.cri.registry]\nconfig_path = "/x"\n')).toMatchObject({
      version: 1,
      roots: ['/x'],
    });
  });

  it('is ok when config_path is the checked directory', async () => {
    expect(codes(await check(V2('/etc/containerd/certs.d')))).toEqual([['ok', 'CONFIG_PATH']]);
    expect(codes(await check(V3('/etc/containerd/certs.d')))).toEqual([['ok', 'CONFIG_PATH']]);
  });

  it('reports the 2.2/EKS default of two directories under version 3: the transfer service ignores it', async () => {
    const findings = await check(V3('/etc/containerd/certs.d:/etc/docker/certs.d'));
    expect(codes(findings)).toEqual([['problem', 'MULTI_CONFIG_PATH']]);
    expect(findings[0]?.message).toContain('containerd#12415, #12636');
    expect(findings[0]?.fix).toContain('config_path = "/etc/containerd/certs.d"');
    expect(findings[0]?.fix).toContain('use_local_image_pull = true');
    // The local pull searches the list in order: fine.
    expect(
      codes(
        await check(V3('/etc/containerd/certs.d:/etc/docker/certs.d', '    use_local_image_pull = true')),
      ),
    ).toEqual([['ok', 'CONFIG_PATH']]);
    // containerd 1.6/1.7 (version 2) search the list too.
    expect(codes(await check(V2('/etc/containerd/certs.d:/etc/docker/certs.d')))).toEqual([
      ['ok', 'CONFIG_PATH'],
    ]);
  });

  it('reports a config_path that does not name the checked directory, or lists it after another', async () => {
    const findings = await check(V2('/etc/containerd/hosts'));
    expect(codes(findings)).toEqual([['problem', 'CONFIG_PATH_MISMATCH']]);
    expect(findings[0]?.fix).toContain('--hosts-dir /etc/containerd/hosts');
    expect(codes(await check(V2('/etc/docker/certs.d:/etc/containerd/certs.d')))).toEqual([
      ['warning', 'CONFIG_PATH_ORDER'],
    ]);
  });

  it("reports no config_path at all (this machine's Debian containerd 1.6 config), and a file that does not parse", async () => {
    const debian = [
      'version = 2',
      '[plugins]',
      '  [plugins."io.containerd.grpc.v1.cri"]',
      '    [plugins."io.containerd.grpc.v1.cri".cni]',
      '      bin_dir = "/usr/lib/cni"',
      '',
    ].join('\n');
    const findings = await check(debian);
    expect(codes(findings)).toEqual([['problem', 'NO_CONFIG_PATH']]);
    expect(findings[0]?.fix).toBe(
      'set config_path = "/etc/containerd/certs.d" in [plugins."io.containerd.grpc.v1.cri".registry] and restart containerd',
    );
    expect(codes(await check('version = 2\n[plugins\n'))).toEqual([['problem', 'INVALID']]);
    expect(codes(await check('version = 7\n'))).toEqual([['problem', 'INVALID']]);
  });

  it('a missing file is a warning by default and a problem when named', async () => {
    const file = join(dir, 'absent.toml');
    expect(codes(await checkContainerdConfig(file, dir, false))).toEqual([
      ['warning', 'NO_CONTAINERD_CONFIG'],
    ]);
    expect(codes(await checkContainerdConfig(file, dir, true))).toEqual([
      ['problem', 'NO_CONTAINERD_CONFIG'],
    ]);
  });
});

describe('pullwarden doctor against a running proxy', () => {
  let fake: FakeUpstream;
  let proxy: TestProxy;
  let config: string;
  let work: string;
  let containerdConfig: string;

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
    const written = (
      await runCli(
        ['hosts-toml', '--config', config, '--proxy', proxy.url, '--out', join(work, 'certs.d')],
        work,
      )
    ).code;
    expect(written).toBe(0);
    containerdConfig = join(work, 'config.toml');
    await writeFile(
      containerdConfig,
      `version = 2\n[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = "${join(work, 'certs.d')}"\n`,
    );
  });

  afterAll(async () => {
    await proxy?.close();
    await fake?.close();
    if (work !== undefined) await rm(work, { recursive: true, force: true });
  });

  const doctor = (...extra: string[]) =>
    cli([
      'doctor',
      '--config',
      config,
      '--proxy',
      proxy.url,
      '--hosts-dir',
      join(work, 'certs.d'),
      '--containerd-config',
      containerdConfig,
      ...extra,
    ]);

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

  it('exits 1 for a missing host and a missing _default, and prints how to fix them', async () => {
    const certs = join(work, 'certs.d');
    await rm(join(certs, fake.host), { recursive: true });
    await rm(join(certs, '_default'), { recursive: true });
    try {
      const r = await doctor('--canary', `${fake.host}/bad/app:v1`);
      expect(r.code).toBe(1);
      expect(r.stdout).toMatch(/^MISSING +127\.0\.0\.1:\d+: no .*hosts\.toml: containerd pulls/m);
      expect(r.stdout).toMatch(/^NO_DEFAULT +_default \(every other registry\): no .*_default\/hosts\.toml/m);
      expect(r.stdout).toContain(`fix: write it: pullwarden hosts-toml --proxy ${proxy.url}`);
      expect(r.stdout).toContain('2 problems found');
    } finally {
      for (const host of [fake.host, '_default']) {
        await mkdir(join(certs, host), { recursive: true });
        await writeFile(join(certs, host, 'hosts.toml'), renderHostsToml(host, parseProxyUrl(proxy.url)));
      }
    }
  });

  it('asks the proxy for a registry that is not an upstream and expects 403 upstream-not-configured', async () => {
    const r = await doctor('--json');
    const out = JSON.parse(r.stdout) as { findings: Finding[] };
    expect(out.findings.find((f) => f.code === 'UNCONFIGURED_DENIED')).toMatchObject({
      level: 'ok',
      subject: 'canary unconfigured.pullwarden-doctor.invalid/doctor/canary:latest (not an upstream)',
    });
    // The proxy refused it at routing: nothing was asked upstream.
    expect(fake.count({ repo: 'doctor/canary' })).toBe(0);
  });

  it('a URL that is a plain registry, not pullwarden, serves the unconfigured canary: a problem', async () => {
    const r = await cli([
      'doctor',
      '--config',
      config,
      '--proxy',
      fake.url,
      '--hosts-dir',
      join(work, 'certs.d'),
      '--containerd-config',
      containerdConfig,
      '--json',
    ]);
    const out = JSON.parse(r.stdout) as { findings: Finding[] };
    expect(r.code).toBe(1);
    expect(out.findings.map((f) => f.code)).toContain('UNCONFIGURED_SERVED');
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
