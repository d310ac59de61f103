/**
 * Proves the e2e harness itself: images built in TypeScript, pushed with skopeo to a real
 * distribution registry, and pulled DIRECTLY from it by skopeo, containerd (ctr + hosts.toml) and
 * podman (registries.conf) with the digests we wrote. The proxy suites reuse these helpers and put
 * pullwarden between the clients and the registry.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startE2e } from '../support/e2e.ts';
import type { E2e } from '../support/e2e.ts';
import { writeHostsToml } from '../support/containerd.ts';
import type { Containerd } from '../support/containerd.ts';
import { images, MediaTypes, writeOciLayout } from '../support/oci-layout.ts';
import type { WrittenLayout } from '../support/oci-layout.ts';
import type { PodmanStore } from '../support/podman.ts';
import { blobGets, startRegistry } from '../support/registry.ts';
import type { Registry } from '../support/registry.ts';
import { pushLayout, skopeoCopy, skopeoInspect } from '../support/skopeo.ts';

/** The registry host the path-prefix (podman) and ns= (containerd mirror) cases pretend to pull from. */
const UPSTREAM = 'upstream.test';

describe('e2e harness, pulling directly from distribution', () => {
  let e2e: E2e;
  let work: string;
  let registry: Registry;
  let containerd: Containerd;
  let podmanStore: PodmanStore;
  let single: WrittenLayout;
  let index: WrittenLayout;
  let docker: WrittenLayout;
  let big: WrittenLayout;
  let hostsDir: string;
  let registriesConf: string;

  beforeAll(async () => {
    e2e = await startE2e({ prefix: 'pw-harness-', containerd: true, podman: true });
    work = e2e.work;
    ({ registry, containerd } = e2e);
    single = await e2e.layout('single', images.singleArch('harness-single'));
    index = await e2e.layout('index', images.twoPlatformIndex('harness-index'));
    docker = await e2e.layout('docker', images.dockerSchema2('harness-docker'));
    big = await e2e.layout('big', images.big('harness-big'));
    await Promise.all([
      pushLayout(single, registry.host, 'single:v1'),
      pushLayout(index, registry.host, 'index:v1'),
      pushLayout(docker, registry.host, 'docker:v1'),
      pushLayout(big, registry.host, 'big:v1'),
      // The same image under a path prefix, as the proxy's /v2/<host>/<repo>/… routing will see it.
      pushLayout(single, registry.host, `${UPSTREAM}/single:v1`),
    ]);
    hostsDir = join(work, 'hosts.d');
    // Direct: the registry is both server and host, so containerd cannot go anywhere else.
    await writeHostsToml(hostsDir, registry.host, registry.url);
    // Mirror-style: pulls of upstream.test/… go to the registry, which sees ?ns=upstream.test.
    await writeHostsToml(hostsDir, UPSTREAM, registry.url);
    registriesConf = await e2e.registriesConf([
      { prefix: registry.host, location: registry.host },
      { prefix: UPSTREAM, location: `${registry.host}/${UPSTREAM}` },
    ]);
    podmanStore = await e2e.podman(registriesConf);
  }, 180_000);

  afterAll(async () => {
    await e2e?.close();
  });

  it('writes deterministic layouts: same seed same digest, new seed new digest', async () => {
    const again = await writeOciLayout(join(work, 'again'), images.singleArch('harness-single'));
    const other = await writeOciLayout(join(work, 'other'), images.singleArch('harness-single-2'));
    expect(again.digest).toBe(single.digest);
    expect(other.digest).not.toBe(single.digest);
    expect(index.images.map((i) => i.platform.architecture)).toEqual(['amd64', 'arm64']);
    expect(big.images[0]!.layers[0]!.size).toBeGreaterThan(100 * 1024 * 1024);
  });

  it('pushes every layout with skopeo keeping the written digests and media types', async () => {
    for (const [repo, layout] of [
      ['single', single],
      ['index', index],
      ['docker', docker],
      ['big', big],
    ] as const) {
      const got = await skopeoInspect(`${registry.host}/${repo}:v1`);
      expect(got.digest, repo).toBe(layout.digest);
      expect(got.mediaType, repo).toBe(layout.mediaType);
    }
    expect(docker.mediaType).toBe(MediaTypes.dockerManifest);
    expect(index.mediaType).toBe(MediaTypes.ociIndex);
  });

  it('skopeo copies from the registry to an OCI layout with the pushed digests', async () => {
    for (const [repo, layout] of [
      ['single', single],
      ['index', index],
      ['docker', docker],
    ] as const) {
      const dest = join(work, `copied-${repo}`);
      await skopeoCopy(`docker://${registry.host}/${repo}:v1`, `oci:${dest}:v1`, { all: true });
      const written = JSON.parse(await readFile(join(dest, 'index.json'), 'utf8')) as {
        manifests: { digest: string }[];
      };
      expect(written.manifests[0]!.digest, repo).toBe(layout.digest);
    }
  });

  it('ctr pulls through hosts.toml with the pushed digests', async () => {
    const s = await containerd.pull(`${registry.host}/single:v1`, { hostsDir });
    expect(s.digest).toBe(single.digest);
    const i = await containerd.pull(`${registry.host}/index:v1`, { hostsDir, allPlatforms: true });
    expect(i.digest).toBe(index.digest);
    expect(i.platforms.sort()).toEqual(['linux/amd64', 'linux/arm64']);
    const d = await containerd.pull(`${registry.host}/docker:v1`, { hostsDir });
    expect(d.digest).toBe(docker.digest);
    expect(d.mediaType).toBe(MediaTypes.dockerManifest);
    await containerd.removeImages();
    expect(await containerd.content()).toEqual([]);
  });

  it('ctr sends ?ns=<upstream> to a hosts.toml mirror, HEADs the tag and has no /v2/ ping', async () => {
    await registry.clearRequests();
    const img = await containerd.pull(`${UPSTREAM}/index:v1`, { hostsDir, platform: 'linux/arm64' });
    expect(img.digest).toBe(index.digest);
    const seen = await registry.requests();
    expect(seen.length).toBeGreaterThan(0);
    expect(seen.every((r) => r.uri.endsWith(`?ns=${UPSTREAM}`))).toBe(true);
    expect(seen[0]).toMatchObject({ method: 'HEAD', kind: 'manifest', repository: 'index', reference: 'v1' });
    expect(seen.some((r) => r.kind === 'base')).toBe(false);
    // Only the arm64 image's blobs: its config and two layers.
    const arm64 = index.images[1]!;
    expect(
      blobGets(seen)
        .map((r) => r.reference)
        .sort(),
    ).toEqual([arm64.config.digest, ...arm64.layers.map((l) => l.digest)].sort());
    await containerd.removeImages();
  });

  it('podman pulls through a registries.conf path-prefix location with the pushed digests', async () => {
    const s = await podmanStore.pull(`${registry.host}/single:v1`);
    expect(s.digest).toBe(single.digest);
    const i = await podmanStore.pull(`${registry.host}/index:v1`);
    expect(i.digest).toBe(index.digest);
    const d = await podmanStore.pull(`${registry.host}/docker:v1`);
    expect(d.digest).toBe(docker.digest);

    await registry.clearRequests();
    const p = await podmanStore.pull(`${UPSTREAM}/single:v1`);
    expect(p.digest).toBe(single.digest);
    const seen = await registry.requests();
    // containers/image pings /v2/, then GETs (not HEADs) the manifest by tag, without ns=.
    expect(seen[0]).toMatchObject({ method: 'GET', kind: 'base' });
    expect(seen[1]).toMatchObject({
      method: 'GET',
      kind: 'manifest',
      repository: `${UPSTREAM}/single`,
      reference: 'v1',
    });
    expect(seen.some((r) => r.uri.includes('ns='))).toBe(false);
    await podmanStore.removeImages();
  });

  it('counts blob GETs: a 100 MiB pull downloads each blob once, a repeat pull downloads none', async () => {
    await registry.clearRequests();
    const first = await containerd.pull(`${registry.host}/big:v1`, { hostsDir });
    expect(first.digest).toBe(big.digest);
    const gets = blobGets(await registry.requests());
    const image = big.images[0]!;
    expect(gets.map((r) => r.reference).sort()).toEqual(
      [image.config.digest, image.layers[0]!.digest].sort(),
    );
    expect(gets.reduce((n, r) => n + r.written, 0)).toBe(image.config.size + image.layers[0]!.size);

    await registry.clearRequests();
    await containerd.pull(`${registry.host}/big:v1`, { hostsDir });
    const again = await registry.requests();
    expect(blobGets(again)).toEqual([]);
    expect(again.filter((r) => r.kind === 'manifest').length).toBeGreaterThan(0);

    await registry.clearRequests();
    const p = await podmanStore.pull(`${registry.host}/big:v1`);
    expect(p.digest).toBe(big.digest);
    expect(blobGets(await registry.requests())).toHaveLength(2);
    await Promise.all([containerd.removeImages(), podmanStore.removeImages()]);
  });

  it("runs distribution's own proxy mode as a pull-through peer; a repeat pull fetches no blob", async () => {
    const peer = await startRegistry({ proxy: { remoteurl: registry.url } });
    try {
      await registry.clearRequests();
      await skopeoCopy(`docker://${peer.host}/single:v1`, `oci:${join(work, 'via-peer')}:first`);
      const image = single.images[0]!;
      // distribution 2.8 fetches a missed blob TWICE upstream: once to stream it to the client
      // (copyContent) and once in a background goroutine to store it (storeLocal). Wait for the
      // background fills to finish before counting.
      const firstGets = blobGets(await registry.requests({ quietMs: 500 }));
      expect([...new Set(firstGets.map((r) => r.reference))].sort()).toEqual(
        [image.config.digest, ...image.layers.map((l) => l.digest)].sort(),
      );
      expect(firstGets.length).toBeGreaterThanOrEqual(3);
      expect(firstGets.length).toBeLessThanOrEqual(6);
      await registry.clearRequests();
      await skopeoCopy(`docker://${peer.host}/single:v1`, `oci:${join(work, 'via-peer-2')}:second`);
      expect(blobGets(await registry.requests())).toEqual([]);
      expect((await skopeoInspect(`${peer.host}/single:v1`)).digest).toBe(single.digest);
    } finally {
      await peer.stop();
    }
  });
});
