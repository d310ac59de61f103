/**
 * pullwarden between real clients and a real registry: distribution 2.8 as the upstream, seeded with
 * skopeo, pulled through the proxy by skopeo, containerd (`ctr image pull --hosts-dir`, hosts.toml whose
 * server is the proxy, so requests carry `?ns=`) and podman (registries.conf path-prefix location).
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import type { AddressInfo, Server } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestProxy } from '../support/app.ts';
import { startE2e } from '../support/e2e.ts';
import type { E2e } from '../support/e2e.ts';
import { writeHostsToml } from '../support/containerd.ts';
import type { Containerd } from '../support/containerd.ts';
import { images } from '../support/oci-layout.ts';
import type { WrittenLayout } from '../support/oci-layout.ts';
import { createPodmanStore } from '../support/podman.ts';
import type { PodmanStore } from '../support/podman.ts';
import { CommandError } from '../support/proc.ts';
import { blobGets } from '../support/registry.ts';
import type { Registry } from '../support/registry.ts';
import { pushLayout, skopeoCopy } from '../support/skopeo.ts';

/**
 * The name clients use for the upstream. The real registry listens on 127.0.0.1:<port>; pullwarden's
 * config maps this name to that URL (the config key is the host clients name, `url` is where it is).
 * containers/image cannot put `host:port` into a registries.conf location path, so a name is used.
 */
const UPSTREAM = 'upstream.test';

describe('pulling through pullwarden from a real registry', () => {
  let e2e: E2e;
  let work: string;
  let registry: Registry;
  let proxy: TestProxy;
  let containerd: Containerd;
  let podmanStore: PodmanStore;
  let single: WrittenLayout;
  let index: WrittenLayout;
  let docker: WrittenLayout;
  let big: WrittenLayout;
  let hostsDir: string;
  let trap: Server;
  let trapHost: string;
  let trapConnections = 0;

  beforeAll(async () => {
    e2e = await startE2e({ prefix: 'pw-e2e-', containerd: true, podman: true });
    work = e2e.work;
    ({ registry, containerd } = e2e);
    proxy = await e2e.proxy({
      upstreams: {
        [UPSTREAM]: { url: registry.url, tagTTL: '5m' },
        // The same registry under its host:port name, with an alias for registries.conf locations.
        [registry.host]: { url: registry.url, aliases: ['direct-registry'] },
        // The name the shipped deploy/ client configs use, pointed at the local registry: nothing here
        // ever reaches Docker Hub.
        'docker.io': { url: registry.url },
      },
      defaultUpstream: UPSTREAM,
    });
    [single, index, docker, big] = await Promise.all([
      e2e.layout('single', images.singleArch('e2e-single')),
      e2e.layout('index', images.twoPlatformIndex('e2e-index')),
      e2e.layout('docker', images.dockerSchema2('e2e-docker')),
      e2e.layout('big', images.big('e2e-big')),
    ]);
    await Promise.all([
      pushLayout(single, registry.host, 'acme/single:v1'),
      pushLayout(index, registry.host, 'acme/index:v1'),
      pushLayout(docker, registry.host, 'acme/docker:v1'),
      pushLayout(big, registry.host, 'acme/big:v1'),
    ]);

    // A listener standing in for a registry that is NOT configured: it must never see a connection.
    trap = createServer((s) => {
      trapConnections++;
      s.destroy();
    });
    await new Promise<void>((r) => trap.listen(0, '127.0.0.1', r));
    trapHost = `127.0.0.1:${(trap.address() as AddressInfo).port}`;

    // hosts.toml with server = the proxy for both names: a refusal has nothing to fall back to.
    hostsDir = join(work, 'certs.d');
    await writeHostsToml(hostsDir, UPSTREAM, proxy.url);
    await writeHostsToml(hostsDir, trapHost, proxy.url);
    const registriesConf = await e2e.registriesConf([
      { prefix: UPSTREAM, location: `${proxy.host}/${UPSTREAM}`, insecure: true },
      { prefix: registry.host, location: `${proxy.host}/direct-registry`, insecure: true },
    ]);
    podmanStore = await e2e.podman(registriesConf);
  }, 240_000);

  afterAll(async () => {
    trap?.close();
    await e2e?.close();
  });

  it('skopeo copies every image kind through the proxy with the upstream digests', async () => {
    for (const [repo, layout] of [
      ['single', single],
      ['index', index],
      ['docker', docker],
    ] as const) {
      const dest = join(work, `skopeo-${repo}`);
      await skopeoCopy(`docker://${proxy.host}/${UPSTREAM}/acme/${repo}:v1`, `oci:${dest}:v1`, {
        all: true,
        preserveDigests: true,
      });
      const written = JSON.parse(await readFile(join(dest, 'index.json'), 'utf8')) as {
        manifests: { digest: string }[];
      };
      expect(written.manifests[0]!.digest, repo).toBe(layout.digest);
    }
  });

  it('containerd pulls through hosts.toml (ns=) with the upstream digests, all platforms', async () => {
    const s = await containerd.pull(`${UPSTREAM}/acme/single:v1`, { hostsDir });
    expect(s.digest).toBe(single.digest);
    const i = await containerd.pull(`${UPSTREAM}/acme/index:v1`, { hostsDir, allPlatforms: true });
    expect(i.digest).toBe(index.digest);
    expect(i.platforms.sort()).toEqual(['linux/amd64', 'linux/arm64']);
    const d = await containerd.pull(`${UPSTREAM}/acme/docker:v1`, { hostsDir });
    expect(d.digest).toBe(docker.digest);
    await containerd.removeImages();
  });

  it('podman pulls through a registries.conf path-prefix location with the upstream digests', async () => {
    const s = await podmanStore.pull(`${UPSTREAM}/acme/single:v1`);
    expect(s.digest).toBe(single.digest);
    const i = await podmanStore.pull(`${UPSTREAM}/acme/index:v1`);
    expect(i.digest).toBe(index.digest);
    const d = await podmanStore.pull(`${UPSTREAM}/acme/docker:v1`);
    expect(d.digest).toBe(docker.digest);
    await podmanStore.removeImages();
  });

  it('podman reaches an upstream named host:port through its alias in the location path', async () => {
    const s = await podmanStore.pull(`${registry.host}/acme/single:v1`);
    expect(s.digest).toBe(single.digest);
    await podmanStore.removeImages();
  });

  it('pulls a ~100 MB image once from upstream; the second pull makes zero upstream blob requests', async () => {
    await registry.clearRequests();
    const first = await containerd.pull(`${UPSTREAM}/acme/big:v1`, { hostsDir });
    expect(first.digest).toBe(big.digest);
    const image = big.images[0]!;
    const firstGets = blobGets(await registry.requests());
    expect(firstGets.map((r) => r.reference).sort()).toEqual(
      [image.config.digest, ...image.layers.map((l) => l.digest)].sort(),
    );
    await containerd.removeImages();
    expect(await containerd.content()).toEqual([]);

    await registry.clearRequests();
    const again = await containerd.pull(`${UPSTREAM}/acme/big:v1`, { hostsDir });
    expect(again.digest).toBe(big.digest);
    const p = await podmanStore.pull(`${UPSTREAM}/acme/big:v1`);
    expect(p.digest).toBe(big.digest);
    expect(blobGets(await registry.requests())).toEqual([]);
    await Promise.all([containerd.removeImages(), podmanStore.removeImages()]);
  });

  it('the shipped deploy/ hosts.toml and registries.conf work as they are with ctr and podman', async () => {
    const shipped = (file: string) => readFile(join(import.meta.dirname, '../../deploy', file), 'utf8');
    const shippedHosts = join(work, 'shipped-certs.d');
    await mkdir(join(shippedHosts, 'docker.io'), { recursive: true });
    await writeFile(
      join(shippedHosts, 'docker.io', 'hosts.toml'),
      (await shipped('containerd/certs.d/docker.io/hosts.toml')).replaceAll(
        'pullwarden.internal:5050',
        proxy.host,
      ),
    );
    const viaCtr = await containerd.pull('docker.io/acme/single:v1', { hostsDir: shippedHosts });
    expect(viaCtr.digest).toBe(single.digest);
    await containerd.removeImages();

    const conf = join(work, 'shipped-registries.conf');
    await writeFile(
      conf,
      (await shipped('podman/registries.conf')).replaceAll('pullwarden.internal:5050', proxy.host),
    );
    const store = await createPodmanStore({ registriesConf: conf });
    try {
      expect((await store.pull('docker.io/acme/single:v1')).digest).toBe(single.digest);
    } finally {
      await store.cleanup();
    }
  });

  it('refuses an unconfigured ns= host with 403 and never connects to it', async () => {
    const pull = containerd.pull(`${trapHost}/acme/single:v1`, { hostsDir });
    await expect(pull).rejects.toBeInstanceOf(CommandError);
    const res = await fetch(`${proxy.url}/v2/acme/single/manifests/v1?ns=${encodeURIComponent(trapHost)}`);
    expect(res.status).toBe(403);
    expect(await res.json()).toMatchObject({ errors: [{ code: 'DENIED' }] });
    expect(trapConnections).toBe(0);
  });
});
