/**
 * The trust gate's multi-arch admission against the in-process fake upstream (fast, no root): the
 * e2e suite (test/e2e/trust.test.ts) covers the same with containerd; this one runs everywhere.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeIndex, startFakeUpstream } from '../support/fake-upstream.ts';
import type { FakeIndex, FakeUpstream } from '../support/fake-upstream.ts';
import { startTestProxy } from '../support/app.ts';
import type { TestProxy } from '../support/app.ts';
import { createKeyPair, fakeRegistryWriter, pushClassicSignature, signClassic } from '../support/signer.ts';
import type { TestKeyPair } from '../support/signer.ts';

const ACCEPT = ['application/vnd.oci.image.index.v1+json', 'application/vnd.oci.image.manifest.v1+json'].join(
  ', ',
);

describe('multi-arch admission through a signed index', () => {
  let fake: FakeUpstream;
  let proxy: TestProxy;
  let key: TestKeyPair;
  let dir: string;

  beforeAll(async () => {
    fake = await startFakeUpstream();
    key = createKeyPair();
    dir = await mkdtemp(join(tmpdir(), 'pw-trust-gate-'));
    const keyFile = join(dir, 'cosign.pub');
    await writeFile(keyFile, key.publicKeyPem);
    proxy = await startTestProxy({
      upstreams: { [fake.host]: { url: fake.url } },
      defaultUpstream: fake.host,
      trust: { roots: {}, keys: { release: { file: keyFile } }, refresh: '0s' },
      policies: [
        { name: 'signed', match: ['**'], action: 'verify', signatures: { attestors: [{ key: 'release' }] } },
      ],
    });
  });

  afterAll(async () => {
    await proxy?.close();
    await fake?.close();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  const get = (repo: string, what: 'manifests' | 'blobs', ref: string): Promise<Response> =>
    fetch(`${proxy.url}/v2/${repo}/${what}/${ref}`, { headers: { accept: ACCEPT } });

  async function signedIndex(repo: string): Promise<FakeIndex> {
    const index = makeIndex(fake, repo, 'v1');
    await pushClassicSignature(fakeRegistryWriter(fake), repo, index.indexDigest, [
      signClassic({ subject: index.indexDigest, dockerReference: `${fake.host}/${repo}`, key }),
    ]);
    return index;
  }

  it('admits platform manifests and their blobs only once the index is admitted in that repository', async () => {
    const index = await signedIndex('acme/multi');
    const child = index.images[1]!;

    // Asked for directly first (a pinned platform digest): not signed itself, so denied…
    const first = await get('acme/multi', 'manifests', child.manifestDigest);
    expect(first.status).toBe(403);
    expect(await first.json()).toMatchObject({
      errors: [{ code: 'DENIED', detail: { policy: 'signed', signatures: [] } }],
    });
    expect((await get('acme/multi', 'blobs', child.layerDigests[0]!)).status).toBe(403);

    // …then the index is pulled: its children are admitted, and the cached deny of the child must
    // not hold (it did, for denyTTL, before trust-gate re-checked admissions on a cached deny).
    const top = await get('acme/multi', 'manifests', 'v1');
    expect(top.status).toBe(200);
    expect(top.headers.get('docker-content-digest')).toBe(index.indexDigest);
    await top.arrayBuffer();
    const again = await get('acme/multi', 'manifests', child.manifestDigest);
    expect(again.status).toBe(200);
    expect(again.headers.get('docker-content-digest')).toBe(child.manifestDigest);
    await again.arrayBuffer();
    const layer = await get('acme/multi', 'blobs', child.layerDigests[0]!);
    expect(layer.status).toBe(200);
    await layer.arrayBuffer();
  });

  it('does not carry an admission over to another repository holding the same index', async () => {
    const index = await signedIndex('acme/origin');
    const child = index.images[0]!;
    // The same bytes in a second repository, where the index is not signed.
    for (const image of index.images) {
      for (const [i, layer] of image.layers.entries())
        expect(fake.putBlob('acme/copy', layer)).toBe(image.layerDigests[i]);
      fake.putBlob('acme/copy', image.configBytes);
      fake.putManifest('acme/copy', undefined, image.manifestBytes, image.mediaType);
    }
    fake.putManifest('acme/copy', 'v1', index.indexBytes, index.mediaType);

    const origin = await get('acme/origin', 'manifests', 'v1');
    expect(origin.status).toBe(200);
    await origin.arrayBuffer();
    const inOrigin = await get('acme/origin', 'manifests', child.manifestDigest);
    expect(inOrigin.status).toBe(200);
    await inOrigin.arrayBuffer();

    for (const ref of ['v1', child.manifestDigest]) {
      const res = await get('acme/copy', 'manifests', ref);
      expect(res.status, ref).toBe(403);
      await res.arrayBuffer();
    }
    expect((await get('acme/copy', 'blobs', child.layerDigests[0]!)).status).toBe(403);
  });
});
