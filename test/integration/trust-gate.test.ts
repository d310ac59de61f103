/**
 * The trust gate's multi-arch admission against the in-process fake upstream (fast, no root): the
 * e2e suite (test/e2e/trust.test.ts) covers the same with containerd; this one runs everywhere.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeImage } from '../support/fake-upstream.ts';
import type { FakeImage, FakeIndex, FakeUpstream } from '../support/fake-upstream.ts';
import { signedPolicy, startTrustGate } from '../support/trust-gate.ts';
import type { TrustGate } from '../support/trust-gate.ts';

describe('multi-arch admission through a signed index', () => {
  let gate: TrustGate;
  let fake: FakeUpstream;

  beforeAll(async () => {
    gate = await startTrustGate({ prefix: 'pw-trust-gate-' });
    fake = gate.fake;
  });

  afterAll(async () => {
    await gate?.close();
  });

  const get = (repo: string, what: 'manifests' | 'blobs', ref: string): Promise<Response> =>
    gate.get(repo, what, ref);
  const signedIndex = (repo: string): Promise<FakeIndex> => gate.signedIndex(repo);

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

describe('trust gate edges', () => {
  let gate: TrustGate;
  let fake: FakeUpstream;

  beforeAll(async () => {
    gate = await startTrustGate({
      prefix: 'pw-trust-edges-',
      upstream: { tagTTL: '50ms', staleIfError: '1h', retries: 0 },
      policies: (host) => [{ ...signedPolicy('observe', [`${host}/warn/**`]), mode: 'warn' }, signedPolicy()],
      config: { decisions: { denyTTL: '10ms' } },
    });
    fake = gate.fake;
  });

  afterAll(async () => {
    await gate?.close();
  });

  const get = (repo: string, what: 'manifests' | 'blobs', ref: string, method = 'GET'): Promise<Response> =>
    gate.get(repo, what, ref, method);
  const signed = (repo: string, tag: string): Promise<FakeImage> => gate.signed(repo, tag);

  it('while the upstream fails, serves the last verified digest of a tag, not the last resolved one', async () => {
    const good = await signed('acme/stale', 'v1');
    expect((await get('acme/stale', 'manifests', 'v1')).status).toBe(200);
    // The tag moves to an unsigned image: denied, and the 403 names the digest and the tag.
    const bad = makeImage(fake, 'acme/stale', 'v1');
    await new Promise((r) => setTimeout(r, 80));
    const denied = await get('acme/stale', 'manifests', 'v1');
    expect(denied.status).toBe(403);
    expect(await denied.json()).toMatchObject({
      errors: [{ code: 'DENIED', detail: { policy: 'signed', digest: bad.manifestDigest, tag: 'v1' } }],
    });
    // Now the upstream fails: the stale answer is the verified digest, never the denied one.
    await new Promise((r) => setTimeout(r, 80));
    fake.fault({ kind: 'manifest', method: 'HEAD' }, { status: 500 });
    try {
      const stale = await get('acme/stale', 'manifests', 'v1');
      expect(stale.status).toBe(200);
      expect(stale.headers.get('docker-content-digest')).toBe(good.manifestDigest);
      expect(stale.headers.get('x-pullwarden-cache')).toBe('stale');
    } finally {
      fake.clearFaults();
    }
  });

  it('marks manifests served in warn mode with X-Pullwarden-Decision', async () => {
    makeImage(fake, 'warn/app', 'v1');
    const res = await get('warn/app', 'manifests', 'v1');
    expect(res.status).toBe(200);
    expect(res.headers.get('x-pullwarden-decision')).toBe('warn');
    const ok = await signed('acme/ok', 'v1');
    const allowed = await get('acme/ok', 'manifests', 'v1');
    expect(allowed.headers.get('x-pullwarden-decision')).toBe('allow');
    expect(allowed.headers.get('docker-content-digest')).toBe(ok.manifestDigest);
  });

  it('serves the referrers tag-schema index under enforce, without admitting the artifacts it lists', async () => {
    const img = makeImage(fake, 'acme/refs', 'v1');
    const unsigned = makeImage(fake, 'acme/refs', undefined);
    const schema = {
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [
        {
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          digest: unsigned.manifestDigest,
          size: unsigned.manifestBytes.length,
          artifactType: 'application/example',
        },
      ],
    };
    fake.putManifest(
      'acme/refs',
      `sha256-${img.manifestDigest.slice(7)}`,
      JSON.stringify(schema),
      schema.mediaType,
    );
    const index = await get('acme/refs', 'manifests', `sha256-${img.manifestDigest.slice(7)}`);
    expect(index.status).toBe(200);
    await index.arrayBuffer();
    // Listing a runnable image in a referrers index does not admit it.
    expect((await get('acme/refs', 'manifests', unsigned.manifestDigest)).status).toBe(403);
    expect((await get('acme/refs', 'blobs', unsigned.layerDigests[0]!)).status).toBe(403);
  });

  it('does not let a "signature" manifest make a large blob fetchable', async () => {
    const big = fake.putBlob('acme/sneaky', Buffer.alloc(2 * 1024 * 1024, 7));
    const small = fake.putBlob('acme/sneaky', Buffer.from('{"critical":{}}'));
    const config = fake.putBlob('acme/sneaky', Buffer.from('{}'));
    const manifest = {
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: config, size: 2 },
      layers: [
        { mediaType: 'application/vnd.dev.cosign.simplesigning.v1+json', digest: small, size: 15 },
        { mediaType: 'application/vnd.dev.cosign.simplesigning.v1+json', digest: big, size: 2 * 1024 * 1024 },
      ],
    };
    fake.putManifest(
      'acme/sneaky',
      'sha256-' + 'c'.repeat(64) + '.sig',
      JSON.stringify(manifest),
      manifest.mediaType,
    );
    expect((await get('acme/sneaky', 'manifests', 'sha256-' + 'c'.repeat(64) + '.sig')).status).toBe(200);
    expect((await get('acme/sneaky', 'blobs', small)).status).toBe(200);
    const refused = await get('acme/sneaky', 'blobs', big);
    expect(refused.status).toBe(403);
    expect(await refused.json()).toMatchObject({
      errors: [{ code: 'DENIED', detail: { reason: 'trust-material-blob-too-large' } }],
    });
    expect((await get('acme/sneaky', 'blobs', big, 'HEAD')).status).toBe(403);
  });
});
