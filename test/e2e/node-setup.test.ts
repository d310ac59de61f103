/**
 * Node set-up commands against the real thing: `pullwarden hosts-toml` run as a process writes the
 * certs.d directory, a real containerd (`ctr image pull --hosts-dir`) pulls through it from a real
 * distribution registry behind pullwarden, and `pullwarden doctor` checks the same directory.
 *
 * The upstream is configured twice: as `upstream.test` (a name, url = the registry) and under its own
 * `127.0.0.1:<port>`, a name containerd could reach directly (plain HTTP is allowed for loopback), so
 * a fallback would show up in the registry log as requests with containerd's user agent. The policy
 * allows `ok/**` and denies the rest. The same registry as `localhost:<port>` is NOT an upstream: a
 * registry the proxy does not know, which containerd and podman could still reach directly.
 */
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryAuditDir } from '../../src/audit/index.ts';
import type { AuditRecord } from '../../src/audit/index.ts';
import type { TestProxy } from '../support/app.ts';
import { startE2e } from '../support/e2e.ts';
import type { E2e } from '../support/e2e.ts';
import type { Containerd } from '../support/containerd.ts';
import { images } from '../support/oci-layout.ts';
import type { WrittenLayout } from '../support/oci-layout.ts';
import { createPodmanStore } from '../support/podman.ts';
import { CommandError, run } from '../support/proc.ts';
import { blobGets } from '../support/registry.ts';
import type { Registry, RegistryRequest } from '../support/registry.ts';
import { pushLayout } from '../support/skopeo.ts';

const UPSTREAM = 'upstream.test';
const CLI = join(import.meta.dirname, '../../src/cli/run.ts');

/** containerd 1.6/1.7 config.toml (schema version 2) whose CRI reads hosts.toml files from `dir`. */
function containerdV2(dir: string): string {
  return `version = 2\n\n[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = ${JSON.stringify(dir)}\n`;
}

/** `node src/cli/run.ts ARGS` as a real process. */
async function pullwarden(args: string[]) {
  return await run(process.execPath, [CLI, ...args], { allowFailure: true, timeoutMs: 60_000 });
}

describe('pullwarden hosts-toml, registries-conf and doctor with real containerd and podman', () => {
  let e2e: E2e;
  let work: string;
  let registry: Registry;
  let containerd: Containerd;
  let proxy: TestProxy;
  let config: string;
  let hostsDir: string;
  let allowed: WrittenLayout;
  let denied: WrittenLayout;

  const isContainerd = (r: RegistryRequest) => /^containerd/i.test(r.userAgent);
  const blobsOf = (layout: WrittenLayout) => {
    const image = layout.images[0]!;
    return new Set([image.config.digest, ...image.layers.map((l) => l.digest)]);
  };

  beforeAll(async () => {
    e2e = await startE2e({ prefix: 'pw-e2e-setup-', containerd: true, podman: true });
    work = e2e.work;
    ({ registry, containerd } = e2e);
    proxy = await e2e.proxy({
      upstreams: {
        [UPSTREAM]: { url: registry.url },
        [registry.host]: { url: registry.url, aliases: ['direct-registry'] },
      },
      defaultUpstream: UPSTREAM,
      policies: [
        { name: 'ok-images', match: [`${UPSTREAM}/ok/**`, `${registry.host}/ok/**`], action: 'allow' },
        { name: 'deny-rest', match: ['**'], action: 'deny' },
      ],
    });
    // The proxy's own config file: the CLI reads the same upstreams.
    config = join(proxy.dir, 'pullwarden.yaml');
    [allowed, denied] = await Promise.all([
      e2e.layout('allowed', images.singleArch('setup-allowed')),
      e2e.layout('denied', images.singleArch('setup-denied')),
    ]);
    await Promise.all([
      pushLayout(allowed, registry.host, 'ok/app:v1'),
      pushLayout(denied, registry.host, 'blocked/app:v1'),
    ]);
    hostsDir = join(work, 'certs.d');
    const written = await pullwarden([
      'hosts-toml',
      '--config',
      config,
      '--proxy',
      proxy.url,
      '--out',
      hostsDir,
    ]);
    expect(written.code, written.stderr).toBe(0);
  }, 240_000);

  afterAll(async () => {
    await e2e?.close();
  });

  /** The registry under a name that is not a configured upstream. */
  const unconfigured = () => registry.host.replace('127.0.0.1', 'localhost');

  it('writes one directory per upstream (the name, host:port for a host with a port) and _default', async () => {
    expect((await readdir(hostsDir)).sort()).toEqual([registry.host, UPSTREAM, '_default'].sort());
    for (const name of [registry.host, '_default']) {
      const text = await readFile(join(hostsDir, name, 'hosts.toml'), 'utf8');
      expect(text).toContain(`server = "${proxy.url}"`);
      expect(text).toContain(`[host."${proxy.url}"]`);
    }
  });

  it('a registry that is not an upstream reaches pullwarden through _default and is refused; nothing direct', async () => {
    await registry.clearRequests();
    // --plain-http: containerd could reach the registry itself over HTTP; only _default stops it.
    await expect(
      containerd.pull(`${unconfigured()}/ok/app:v1`, { hostsDir, plainHttp: true }),
    ).rejects.toBeInstanceOf(CommandError);
    expect(await containerd.images()).toEqual([]);
    expect(await registry.requests()).toEqual([]);
    // pullwarden refused it at routing, and the audit trail names the registry containerd asked for.
    const refused: AuditRecord[] = [];
    for await (const r of queryAuditDir(proxy.config.audit.dir, { upstream: unconfigured() }))
      refused.push(r);
    expect(refused.length).toBeGreaterThan(0);
    expect(refused[0]).toMatchObject({
      type: 'manifest',
      repository: 'ok/app',
      decision: 'deny',
      status: 403,
    });
    expect(refused[0]?.userAgent).toMatch(/^containerd/);
  });

  it('control: with --no-default containerd pulls that registry straight past pullwarden, and doctor says so', async () => {
    const leaky = join(work, 'certs-no-default');
    const written = await pullwarden([
      'hosts-toml',
      '--config',
      config,
      '--proxy',
      proxy.url,
      '--out',
      leaky,
      '--no-default',
    ]);
    expect(written.code).toBe(0);
    expect(written.stderr).toContain('WARNING: --no-default');
    await registry.clearRequests();
    const image = await containerd.pull(`${unconfigured()}/ok/app:v1`, { hostsDir: leaky, plainHttp: true });
    expect(image.digest).toBe(allowed.digest);
    expect((await registry.requests()).filter(isContainerd).length).toBeGreaterThan(0);
    await containerd.removeImages();
    const containerdConfig = join(work, 'config-leaky.toml');
    await writeFile(containerdConfig, containerdV2(leaky));
    const r = await pullwarden([
      'doctor',
      '--config',
      config,
      '--proxy',
      proxy.url,
      '--hosts-dir',
      leaky,
      '--containerd-config',
      containerdConfig,
    ]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(
      /^NO_DEFAULT +_default \(every other registry\): no .*_default\/hosts\.toml: containerd pulls every registry/m,
    );
    expect(r.stdout).toContain('1 problem found');
  });

  it('containerd pulls the allowed image through the proxy with the upstream digest', async () => {
    await registry.clearRequests();
    const image = await containerd.pull(`${UPSTREAM}/ok/app:v1`, { hostsDir });
    expect(image.digest).toBe(allowed.digest);
    const seen = await registry.requests();
    expect(seen.length).toBeGreaterThan(0);
    expect(seen.every((r) => r.userAgent.startsWith('pullwarden'))).toBe(true);
    await containerd.removeImages();
  });

  it('containerd uses the host:port directory for a registry with a port (through the proxy)', async () => {
    await registry.clearRequests();
    const image = await containerd.pull(`${registry.host}/ok/app:v1`, { hostsDir });
    expect(image.digest).toBe(allowed.digest);
    const seen = await registry.requests();
    // Without this directory containerd would go to the registry itself (plain HTTP is allowed for
    // loopback). Only the proxy asked, for the tag (its blob cache already holds the layers).
    expect(seen.filter(isContainerd)).toEqual([]);
    expect(seen.some((r) => r.kind === 'manifest' && r.userAgent.startsWith('pullwarden'))).toBe(true);
    await containerd.removeImages();
  });

  it('a denied image fails to pull, and none of its blobs is fetched from the upstream by anyone', async () => {
    await registry.clearRequests();
    await expect(containerd.pull(`${UPSTREAM}/blocked/app:v1`, { hostsDir })).rejects.toBeInstanceOf(
      CommandError,
    );
    // Under the registry's real name containerd could reach it itself: server = proxy leaves no fallback.
    await expect(containerd.pull(`${registry.host}/blocked/app:v1`, { hostsDir })).rejects.toBeInstanceOf(
      CommandError,
    );
    expect(await containerd.images()).toEqual([]);
    const seen = await registry.requests();
    const deniedBlobs = blobsOf(denied);
    expect(blobGets(seen).filter((r) => deniedBlobs.has(r.reference ?? ''))).toEqual([]);
    expect(seen.filter((r) => r.repository === 'blocked/app' && r.kind === 'blob')).toEqual([]);
    expect(seen.filter(isContainerd)).toEqual([]);
    const content = await containerd.content();
    expect(content.filter((d) => deniedBlobs.has(d))).toEqual([]);
  });

  it("doctor reads containerd's config.toml as containerd 1.6 does (config dump), and flags the wrong config_path", async () => {
    const file = join(work, 'config-v2.toml');
    await writeFile(file, containerdV2(hostsDir));
    // containerd 1.6 itself reads the file doctor accepts and finds config_path where doctor looked.
    const dump = await run('containerd', ['--config', file, 'config', 'dump'], { timeoutMs: 30_000 });
    expect(dump.stdout).toContain(`config_path = ${JSON.stringify(hostsDir)}`);
    const base = ['doctor', '--config', config, '--proxy', proxy.url, '--hosts-dir', hostsDir];
    const ok = await pullwarden([...base, '--containerd-config', file, '--json']);
    const codes = (JSON.parse(ok.stdout) as { findings: { code: string }[] }).findings.map((f) => f.code);
    expect(codes).toContain('CONFIG_PATH');
    const other = join(work, 'config-other.toml');
    await writeFile(other, containerdV2('/etc/containerd/certs.d'));
    const bad = await pullwarden([...base, '--containerd-config', other]);
    expect(bad.code).toBe(1);
    expect(bad.stdout).toMatch(/^CONFIG_PATH_MISMATCH +containerd config .*does not include/m);
  });

  it('doctor: exit 0 for the generated dir with a refused canary; exit 1 for an allowed one', async () => {
    const containerdConfig = join(work, 'config-good.toml');
    await writeFile(containerdConfig, containerdV2(hostsDir));
    const base = [
      'doctor',
      '--config',
      config,
      '--proxy',
      proxy.url,
      '--hosts-dir',
      hostsDir,
      '--containerd-config',
      containerdConfig,
    ];
    const good = await pullwarden([...base, '--canary', `${UPSTREAM}/blocked/app:v1`]);
    expect(good.code, good.stdout + good.stderr).toBe(0);
    expect(good.stdout).toContain('refused with 403');
    expect(good.stdout).toMatch(
      /^ok +canary unconfigured\.pullwarden-doctor\.invalid\/.*refused with 403 \(upstream-not-configured\)/m,
    );
    const bad = await pullwarden([...base, '--canary', `${UPSTREAM}/ok/app:v1`]);
    expect(bad.code).toBe(1);
    expect(bad.stdout).toMatch(
      /^CANARY_ALLOWED +canary upstream\.test\/ok\/app:v1: .*enforcement is not active/m,
    );
  });

  it('control: a leaky host_port_ directory shadows host:port, containerd falls back, and doctor says so', async () => {
    // containerd tries <host>_<port>_ before <host>:<port>; this one has the real registry as server.
    const [h, p] = registry.host.split(':');
    const shadow = join(hostsDir, `${h}_${p}_`);
    await mkdir(shadow);
    await writeFile(
      join(shadow, 'hosts.toml'),
      `server = "${registry.url}"\n\n[host."${proxy.url}"]\n  capabilities = ["pull", "resolve"]\n`,
    );
    try {
      await registry.clearRequests();
      const leaked = await containerd.pull(`${registry.host}/blocked/app:v1`, { hostsDir });
      expect(leaked.digest).toBe(denied.digest);
      const seen = await registry.requests();
      // The proxy refused; containerd then fetched the denied blobs from the registry itself.
      expect(blobGets(seen).filter(isContainerd).length).toBeGreaterThan(0);
      await containerd.removeImages();

      const r = await pullwarden([
        'doctor',
        '--config',
        config,
        '--proxy',
        proxy.url,
        '--hosts-dir',
        hostsDir,
        '--containerd-config',
        join(work, 'config-good.toml'),
      ]);
      expect(r.code).toBe(1);
      expect(r.stdout).toMatch(
        new RegExp(`^FALLBACK +${registry.host.replace(/\./g, '\\.')}: .*${h}_${p}_`, 'm'),
      );
      expect(r.stdout).toContain(`containerd reads only ${h}_${p}_/`);
    } finally {
      await rm(shadow, { recursive: true, force: true });
    }
  });

  it('podman pulls through the registries-conf output (alias for host:port); a denied image fails', async () => {
    const file = join(work, 'registries.conf');
    const written = await pullwarden([
      'registries-conf',
      '--config',
      config,
      '--proxy',
      proxy.url,
      '--out',
      file,
    ]);
    expect(written.code, written.stderr).toBe(0);
    expect(await readFile(file, 'utf8')).toContain(`location = "${proxy.host}/direct-registry"`);
    const store = await createPodmanStore({ registriesConf: file });
    try {
      await registry.clearRequests();
      expect((await store.pull(`${UPSTREAM}/ok/app:v1`)).digest).toBe(allowed.digest);
      expect((await store.pull(`${registry.host}/ok/app:v1`)).digest).toBe(allowed.digest);
      await expect(store.pull(`${registry.host}/blocked/app:v1`)).rejects.toBeInstanceOf(CommandError);
      const seen = await registry.requests();
      expect(seen.filter((r) => !r.userAgent.startsWith('pullwarden'))).toEqual([]);
      expect(blobGets(seen).filter((r) => r.repository === 'blocked/app')).toEqual([]);
    } finally {
      await store.cleanup();
    }
  });

  it('podman: registries.conf cannot route an unlisted registry; the --policy-json catch-all refuses its images', async () => {
    const conf = join(work, 'registries-catch-all.conf');
    const policy = join(work, 'policy.json');
    const written = await pullwarden([
      'registries-conf',
      '--config',
      config,
      '--proxy',
      proxy.url,
      '--out',
      conf,
      '--policy-json',
      policy,
    ]);
    expect(written.code, written.stderr).toBe(0);
    const store = await createPodmanStore({ registriesConf: conf });
    try {
      // Control: without the policy, podman pulls the unlisted registry directly.
      await registry.clearRequests();
      expect((await store.pull(`${unconfigured()}/ok/app:v1`)).digest).toBe(allowed.digest);
      expect(
        blobGets(await registry.requests()).filter((r) => !r.userAgent.startsWith('pullwarden')).length,
      ).toBeGreaterThan(0);
      await store.removeImages();
      // With it: refused on the node. containers/image reads the manifest to apply the policy, no layer.
      await registry.clearRequests();
      const refused = store.pull(`${unconfigured()}/ok/app:v1`, { signaturePolicy: policy });
      await expect(refused).rejects.toBeInstanceOf(CommandError);
      await expect(refused).rejects.toThrow(/rejected by policy/i);
      expect(blobGets(await registry.requests())).toEqual([]);
      // The routed upstreams still pull, through the proxy.
      await registry.clearRequests();
      const image = await store.pull(`${UPSTREAM}/ok/app:v1`, { signaturePolicy: policy });
      expect(image.digest).toBe(allowed.digest);
      expect((await registry.requests()).filter((r) => !r.userAgent.startsWith('pullwarden'))).toEqual([]);
    } finally {
      await store.cleanup();
    }
  });
});
