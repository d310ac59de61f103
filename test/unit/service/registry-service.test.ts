/**
 * RegistryService through its public methods, with the upstream port counting calls: what reaches the
 * upstream, what is served from the cache, and what never enters it.
 */
import { describe, expect, it, vi } from 'vitest';
import { errorStatus, RegistryError } from '../../../src/oci/index.ts';
import type { Digest } from '../../../src/oci/index.ts';
import { checkReference } from '../../../src/service/index.ts';
import { OCI_INDEX, OCI_MANIFEST } from '../../support/fake-ports.ts';
import { ACCEPT_ALL, HOST, readAll, ref, rejection, SIGNED, worldPerTest } from './helpers.ts';
import type { World } from './helpers.ts';

const start = worldPerTest();

/** Let every caller started so far run up to its first upstream call (or its single-flight join). */
const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 50));

/** Readers finish once the bytes are verified; the rename into the cache follows: wait for it. */
async function untilCached(w: World, digest: Digest): Promise<void> {
  for (let i = 0; i < 200 && (await w.blobs.stat(digest)) === undefined; i++) {
    await new Promise((r) => setTimeout(r, 10));
  }
  expect(await w.blobs.stat(digest), `${digest} in the blob cache`).toBeDefined();
}

const unavailable = () => new RegistryError('UNAVAILABLE', 'upstream answered 503');

describe('RegistryService: tags', () => {
  it('serves a cached tag within its TTL without asking upstream and without verifying again', async () => {
    const w = await start({ policies: SIGNED, tagTTL: 60_000 });
    const image = await w.signed('acme/app', 'v1');
    const first = await w.service.resolveManifest(w.target('acme/app'), ref('v1'), {
      accept: ACCEPT_ALL,
      withBody: true,
    });
    expect(first).toMatchObject({ digest: image.digest, cache: 'miss', tag: 'v1' });
    expect(first.decision?.result).toBe('allow');
    expect(w.upstream.count('headManifest', 'v1')).toBe(1);
    const verified = w.verifier.calls;
    expect(verified).toBeGreaterThan(0);

    const asked = w.upstream.total;
    w.clock.t += 59_000;
    const second = await w.service.resolveManifest(w.target('acme/app'), ref('v1'), {
      accept: ACCEPT_ALL,
      withBody: true,
    });
    expect(second).toMatchObject({ digest: image.digest, cache: 'hit' });
    expect(second.bytes?.equals(image.bytes)).toBe(true);
    expect(w.upstream.total).toBe(asked);
    expect(w.verifier.calls).toBe(verified);
  });

  it('asks the upstream with one HEAD once the TTL has passed, and fetches no manifest it already has', async () => {
    const w = await start({ tagTTL: 1_000 });
    const image = w.upstream.image('acme/app', 'v1');
    const target = w.target('acme/app');
    await w.service.resolveManifest(target, ref('v1'), { accept: ACCEPT_ALL, withBody: true });
    expect(w.upstream.count('getManifest', image.digest)).toBe(1);
    w.clock.t += 1_001;
    const again = await w.service.resolveManifest(target, ref('v1'), { accept: ACCEPT_ALL, withBody: true });
    expect(again.digest).toBe(image.digest);
    expect(w.upstream.count('headManifest', 'v1')).toBe(2);
    expect(w.upstream.count('getManifest', image.digest)).toBe(1);
  });

  it('reads a warm tag from the metadata store once per tagTTL; past it, sees what another process resolved', async () => {
    const w = await start({ tagTTL: 10_000 });
    const v1 = w.upstream.image('acme/app', 'v1');
    const target = w.target('acme/app');
    const head = { accept: ACCEPT_ALL, withBody: false };
    await w.service.resolveManifest(target, ref('v1'), head);
    const getTag = vi.spyOn(w.metadata, 'getTag');
    for (let i = 0; i < 5; i++) {
      w.clock.t += 1_000;
      expect(await w.service.resolveManifest(target, ref('v1'), head)).toMatchObject({
        digest: v1.digest,
        cache: 'hit',
      });
    }
    expect(getTag).not.toHaveBeenCalled();

    // Another process (a worker, a replica on the same store) resolved the tag once it was due, and
    // the upstream tag has moved meanwhile: this process takes its answer from the store, asking
    // nothing upstream.
    const v2 = w.upstream.image('acme/app', 'v2');
    await w.service.resolveManifest(target, ref('v2'), head);
    w.clock.t += 5_001;
    await w.metadata.setTag(target.upstream, target.repository, 'v1', {
      digest: v2.digest,
      mediaType: v2.mediaType,
      size: v2.bytes.length,
      checkedAt: w.clock.t,
    });
    const heads = w.upstream.count('headManifest', 'v1');
    getTag.mockClear();
    expect(await w.service.resolveManifest(target, ref('v1'), head)).toMatchObject({
      digest: v2.digest,
      cache: 'hit',
    });
    expect(getTag).toHaveBeenCalledTimes(1);
    expect(w.upstream.count('headManifest', 'v1')).toBe(heads);
  });

  it('resolves a tag with one upstream HEAD however many clients ask at once', async () => {
    const w = await start();
    const image = w.upstream.image('acme/app', 'v1');
    const release = w.upstream.hold('headManifest');
    const pulls = Array.from({ length: 5 }, () =>
      w.service.resolveManifest(w.target('acme/app'), ref('v1'), { accept: ACCEPT_ALL, withBody: false }),
    );
    await settle();
    release();
    for (const r of await Promise.all(pulls)) expect(r.digest).toBe(image.digest);
    expect(w.upstream.count('headManifest', 'v1')).toBe(1);
    expect(w.upstream.count('getManifest', image.digest)).toBe(1);
  });

  it('caches the manifest on a HEAD by tag, so the GET by digest that follows asks nothing upstream', async () => {
    const w = await start();
    const image = w.upstream.image('acme/app', 'v1');
    const head = await w.service.resolveManifest(w.target('acme/app'), ref('v1'), {
      accept: ACCEPT_ALL,
      withBody: false,
    });
    expect(head.bytes).toBeUndefined();
    const asked = w.upstream.total;
    const get = await w.service.resolveManifest(w.target('acme/app'), ref(image.digest), {
      accept: ACCEPT_ALL,
      withBody: true,
    });
    expect(get).toMatchObject({ digest: image.digest, cache: 'hit' });
    expect(get.bytes?.equals(image.bytes)).toBe(true);
    expect(w.upstream.total).toBe(asked);
  });

  it('does not cache a failed resolution: the next request asks the upstream again', async () => {
    const w = await start();
    const image = w.upstream.image('acme/app', 'v1');
    w.upstream.fault('headManifest', unavailable, { times: 1 });
    const err = await rejection(
      w.service.resolveManifest(w.target('acme/app'), ref('v1'), { accept: ACCEPT_ALL, withBody: true }),
    );
    expect(err.code).toBe('UNAVAILABLE');
    const ok = await w.service.resolveManifest(w.target('acme/app'), ref('v1'), {
      accept: ACCEPT_ALL,
      withBody: true,
    });
    expect(ok).toMatchObject({ digest: image.digest, cache: 'miss' });
    expect(w.upstream.count('headManifest', 'v1')).toBe(2);
  });

  it('serves the last known digest (stale) while the upstream fails, and only within staleIfError', async () => {
    const w = await start({ tagTTL: 1_000, staleIfError: 10_000 });
    const image = w.upstream.image('acme/app', 'v1');
    const target = w.target('acme/app');
    await w.service.resolveManifest(target, ref('v1'), { accept: ACCEPT_ALL, withBody: true });
    w.upstream.fault('headManifest', unavailable);
    w.clock.t += 5_000;
    const stale = await w.service.resolveManifest(target, ref('v1'), { accept: ACCEPT_ALL, withBody: true });
    expect(stale).toMatchObject({ digest: image.digest, cache: 'stale' });
    w.clock.t += 7_000; // 12 s after the answer: past tagTTL + staleIfError
    expect(
      (await rejection(w.service.resolveManifest(target, ref('v1'), { accept: ACCEPT_ALL, withBody: true })))
        .code,
    ).toBe('UNAVAILABLE');
  });

  it('with a gate, serves stale only the last digest that passed it, never a newer denied one', async () => {
    const w = await start({ policies: SIGNED, tagTTL: 1_000, staleIfError: 60_000 });
    const good = await w.signed('acme/app', 'v1');
    const target = w.target('acme/app');
    await w.service.resolveManifest(target, ref('v1'), { accept: ACCEPT_ALL, withBody: true });
    const bad = w.upstream.image('acme/app', 'v1'); // the tag moves to an unsigned image
    w.clock.t += 1_001;
    const denied = await rejection(
      w.service.resolveManifest(target, ref('v1'), { accept: ACCEPT_ALL, withBody: true }),
    );
    expect(denied.code).toBe('DENIED');
    expect(denied.detail).toMatchObject({ digest: bad.digest, tag: 'v1' });
    w.upstream.fault('headManifest', unavailable);
    w.clock.t += 1_001;
    const stale = await w.service.resolveManifest(target, ref('v1'), { accept: ACCEPT_ALL, withBody: true });
    expect(stale).toMatchObject({ digest: good.digest, cache: 'stale' });
  });

  it('refuses an internal error instead of hiding it behind a stale answer', async () => {
    const w = await start({ tagTTL: 1_000, staleIfError: 60_000 });
    w.upstream.image('acme/app', 'v1');
    const target = w.target('acme/app');
    await w.service.resolveManifest(target, ref('v1'), { accept: ACCEPT_ALL, withBody: true });
    w.upstream.fault('headManifest', () => new Error('a bug of ours'));
    w.clock.t += 1_001;
    await expect(
      w.service.resolveManifest(target, ref('v1'), { accept: ACCEPT_ALL, withBody: true }),
    ).rejects.toThrow('a bug of ours');
  });

  it('tells a client that accepts no index that the tag is an index (MANIFEST_UNKNOWN), never converting it', async () => {
    const w = await start();
    const index = w.upstream.index('acme/app', 'v1');
    const err = await rejection(
      w.service.resolveManifest(w.target('acme/app'), ref('v1'), { accept: [OCI_MANIFEST], withBody: true }),
    );
    expect(err.code).toBe('MANIFEST_UNKNOWN');
    expect(err.detail).toMatchObject({ reason: 'media-type-not-accepted', digest: index.digest });
  });
});

describe('RegistryService: manifests by digest', () => {
  it('never caches a manifest whose bytes do not match its digest', async () => {
    const w = await start();
    const image = w.upstream.image('acme/app', undefined);
    w.upstream.corrupt(image.digest);
    const options = { accept: ACCEPT_ALL, withBody: true };
    expect(
      (await rejection(w.service.resolveManifest(w.target('acme/app'), ref(image.digest), options))).code,
    ).toBe('UNAVAILABLE');
    expect(await w.blobs.stat(image.digest)).toBeUndefined();
    w.upstream.clearFaults();
    const ok = await w.service.resolveManifest(w.target('acme/app'), ref(image.digest), options);
    expect(ok).toMatchObject({ digest: image.digest, cache: 'miss' });
    expect(w.upstream.count('getManifest', image.digest)).toBe(2);
  });

  it('refuses a manifest larger than maxManifestBytes before storing it', async () => {
    const w = await start({ maxManifestBytes: 100 });
    const image = w.upstream.image('acme/app', undefined);
    const err = await rejection(
      w.service.resolveManifest(w.target('acme/app'), ref(image.digest), {
        accept: ACCEPT_ALL,
        withBody: true,
      }),
    );
    expect(err.code).toBe('MANIFEST_INVALID');
    expect(await w.blobs.stat(image.digest)).toBeUndefined();
  });

  it('makes no connection for an upstream that is not configured: DENIED', async () => {
    const w = await start();
    const err = await rejection(
      w.service.resolveManifest({ upstream: 'elsewhere.test', repository: 'acme/app' }, ref('v1'), {
        accept: ACCEPT_ALL,
        withBody: true,
      }),
    );
    expect(err.code).toBe('DENIED');
    expect(errorStatus[err.code]).toBe(403);
    expect(err.detail).toMatchObject({ upstream: 'elsewhere.test', reason: 'upstream-not-configured' });
    expect(w.upstream.total).toBe(0);
  });
});

describe('RegistryService: blobs', () => {
  async function pulled(w: World, repository: string) {
    const image = w.upstream.image(repository, 'v1');
    await w.service.resolveManifest(w.target(repository), ref('v1'), { accept: ACCEPT_ALL, withBody: true });
    return image;
  }

  it('fetches a blob from upstream once for concurrent callers, and serves each the verified bytes', async () => {
    const w = await start();
    const image = await pulled(w, 'acme/app');
    const release = w.upstream.hold('getBlob');
    const handles = Array.from({ length: 5 }, () => w.service.getBlob(w.target('acme/app'), image.layer));
    await settle();
    release();
    for (const handle of await Promise.all(handles)) {
      expect((await readAll(handle.createReadStream())).equals(image.layerBytes)).toBe(true);
      handle.release();
    }
    expect(w.upstream.count('getBlob', image.layer)).toBe(1);

    await untilCached(w, image.layer);
    const cached = await w.service.getBlob(w.target('acme/app'), image.layer);
    expect(cached.state).toBe('hit');
    cached.release();
    expect(w.upstream.count('getBlob', image.layer)).toBe(1);
  });

  it('never caches a blob whose bytes do not match its digest; the next request fetches it again', async () => {
    const w = await start();
    const image = await pulled(w, 'acme/app');
    w.upstream.corrupt(image.layer);
    const bad = await w.service.getBlob(w.target('acme/app'), image.layer);
    await expect(readAll(bad.createReadStream())).rejects.toThrow();
    bad.release();
    expect(await w.blobs.stat(image.layer)).toBeUndefined();

    w.upstream.clearFaults();
    const good = await w.service.getBlob(w.target('acme/app'), image.layer);
    expect((await readAll(good.createReadStream())).equals(image.layerBytes)).toBe(true);
    good.release();
    expect(w.upstream.count('getBlob', image.layer)).toBe(2);
  });

  it('serves a blob cached for another repository only after this upstream shows its bytes there', async () => {
    const w = await start();
    const image = await pulled(w, 'acme/app');
    const first = await w.service.getBlob(w.target('acme/app'), image.layer);
    await readAll(first.createReadStream());
    first.release();
    // The same layer bytes in a second repository, whose manifest was never fetched.
    w.upstream.blob('acme/copy', image.layerBytes);
    const copy = await w.service.getBlob(w.target('acme/copy'), image.layer);
    expect((await readAll(copy.createReadStream())).equals(image.layerBytes)).toBe(true);
    copy.release();
    expect(w.upstream.count('getBlob', image.layer)).toBe(2);
    expect(w.upstream.calls.filter((c) => c.method === 'getBlob').map((c) => c.repository)).toEqual([
      'acme/app',
      'acme/copy',
    ]);
    // A repository the upstream does not hold it in: refused, not served from the cache.
    expect((await rejection(w.service.getBlob(w.target('acme/other'), image.layer))).code).toBe(
      'BLOB_UNKNOWN',
    );
  });

  it('answers HEAD of a cached, linked blob from the cache and of another from one upstream HEAD', async () => {
    const w = await start();
    const image = await pulled(w, 'acme/app');
    const handle = await w.service.getBlob(w.target('acme/app'), image.layer);
    await readAll(handle.createReadStream());
    handle.release();
    await untilCached(w, image.layer);
    expect(await w.service.headBlob(w.target('acme/app'), image.layer)).toEqual({
      size: image.layerBytes.length,
      cache: 'hit',
    });
    expect(w.upstream.count('headBlob')).toBe(0);
    expect(await w.service.headBlob(w.target('acme/app'), image.config)).toMatchObject({ cache: 'miss' });
    expect(w.upstream.count('headBlob', image.config)).toBe(1);
  });

  it('with a gate, refuses a blob outside an admitted closure without asking the upstream', async () => {
    const w = await start({ policies: SIGNED });
    const unsigned = w.upstream.image('acme/app', 'v1');
    expect(
      (
        await rejection(
          w.service.resolveManifest(w.target('acme/app'), ref('v1'), { accept: ACCEPT_ALL, withBody: true }),
        )
      ).code,
    ).toBe('DENIED');
    for (const digest of [unsigned.layer, unsigned.config] as Digest[]) {
      const err = await rejection(w.service.getBlob(w.target('acme/app'), digest));
      expect(err.code).toBe('DENIED');
      expect(err.detail).toMatchObject({ reason: 'blob-not-admitted', digest, upstream: HOST });
      expect((await rejection(w.service.headBlob(w.target('acme/app'), digest))).code).toBe('DENIED');
    }
    expect(w.upstream.count('getBlob')).toBe(0);
    expect(w.upstream.count('headBlob')).toBe(0);
  });
});

describe('RegistryService: blobs bounded by the size their admitted manifest declares', () => {
  async function admitted(w: World) {
    const image = await w.signed('acme/app', 'v1');
    await w.service.resolveManifest(w.target('acme/app'), ref('v1'), { accept: ACCEPT_ALL, withBody: true });
    return image;
  }

  it('refuses a blob whose announced length is not the declared size, reads none of it, caches nothing', async () => {
    const w = await start({ policies: SIGNED });
    const image = await admitted(w);
    w.upstream.oversize(image.layer, 1_000);
    const err = await rejection(w.service.getBlob(w.target('acme/app'), image.layer));
    expect(err.code).toBe('UNAVAILABLE');
    expect(err.detail).toMatchObject({
      reason: 'blob-size-mismatch',
      digest: image.layer,
      size: image.layerBytes.length,
      received: image.layerBytes.length + 1_000,
    });
    expect(await w.blobs.stat(image.layer)).toBeUndefined();
    // A HEAD is refused the same way: a client is not told a size that cannot be served.
    expect((await rejection(w.service.headBlob(w.target('acme/app'), image.layer))).detail).toMatchObject({
      reason: 'blob-size-mismatch',
    });

    w.upstream.clearFaults();
    const good = await w.service.getBlob(w.target('acme/app'), image.layer);
    expect((await readAll(good.createReadStream())).equals(image.layerBytes)).toBe(true);
    good.release();
    expect(w.upstream.count('getBlob', image.layer)).toBe(2);
  });

  it('cuts a blob streamed without a length once it passes the declared size, and caches nothing', async () => {
    const w = await start({ policies: SIGNED });
    const image = await admitted(w);
    w.upstream.oversize(image.layer, 1_000, { withLength: false });
    const handle = await w.service.getBlob(w.target('acme/app'), image.layer);
    const err = await rejection(readAll(handle.createReadStream()));
    handle.release();
    // Refused for its size, before the digest check at the end could: the bound holds while streaming.
    expect(err.detail).toMatchObject({ reason: 'blob-larger-than-declared', size: image.layerBytes.length });
    expect(await w.blobs.stat(image.layer)).toBeUndefined();
  });
});

describe('RegistryService: tag lists', () => {
  it('paginates here, in lexical order, with a Link to the next page', async () => {
    const w = await start();
    for (const tag of ['b', 'a', 'd', 'c']) w.upstream.image('acme/app', tag);
    const first = await w.service.listTags(w.target('acme/app'), { n: 2 });
    expect(JSON.parse(first.body.toString())).toEqual({ name: 'acme/app', tags: ['a', 'b'] });
    expect(first.link).toBe('</v2/acme/app/tags/list?n=2&last=b>; rel="next"');
    const second = await w.service.listTags(w.target('acme/app'), { n: 2, last: 'b' });
    expect(JSON.parse(second.body.toString())).toEqual({ name: 'acme/app', tags: ['c', 'd'] });
    expect(second.link).toBeUndefined();
  });

  it('refuses to list a repository no policy lets anyone pull', async () => {
    const w = await start({ policies: [{ name: 'closed', match: ['**'], action: 'deny' }] });
    w.upstream.image('acme/app', 'v1');
    const err = await rejection(w.service.listTags(w.target('acme/app'), {}));
    expect(err.code).toBe('DENIED');
    expect(err.detail).toMatchObject({ policy: 'closed', reason: 'repository-denied' });
    expect(w.upstream.count('listTags')).toBe(0);
  });
});

describe('RegistryService: referrers', () => {
  function referrersOf(w: World, repository: string, subject: Digest) {
    const sbom = w.upstream.image(repository, undefined);
    const sig = w.upstream.image(repository, undefined);
    const entry = (m: { digest: Digest; bytes: Buffer }, artifactType: string) => ({
      mediaType: OCI_MANIFEST,
      digest: m.digest,
      size: m.bytes.length,
      artifactType,
    });
    const index = {
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: [
        entry(sbom, 'application/spdx+json'),
        entry(sig, 'application/vnd.dev.cosign.artifact.sig.v1+json'),
      ],
    };
    w.upstream.manifest(
      repository,
      `sha256-${subject.slice(7)}`,
      Buffer.from(JSON.stringify(index)),
      OCI_INDEX,
    );
    return index.manifests;
  }

  it('answers from the referrers tag schema when the upstream has no referrers API, filtering here', async () => {
    const w = await start();
    const image = w.upstream.image('acme/app', 'v1');
    const [sbom, sig] = referrersOf(w, 'acme/app', image.digest);
    const all = await w.service.getReferrers(w.target('acme/app'), image.digest, undefined);
    expect(all.filtersApplied).toBe(false);
    expect(JSON.parse(all.body.toString())).toEqual({
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: [sbom, sig],
    });
    const filtered = await w.service.getReferrers(
      w.target('acme/app'),
      image.digest,
      'application/spdx+json',
    );
    expect(filtered.filtersApplied).toBe(true);
    expect(JSON.parse(filtered.body.toString()).manifests).toEqual([sbom]);
    expect(w.upstream.count('getReferrers', image.digest)).toBe(2);
  });

  it('answers an empty index for a digest without referrers', async () => {
    const w = await start();
    const image = w.upstream.image('acme/app', 'v1');
    const none = await w.service.getReferrers(w.target('acme/app'), image.digest, undefined);
    expect(JSON.parse(none.body.toString())).toEqual({
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: [],
    });
  });

  it('refuses to list the referrers of a repository no policy lets anyone pull, asking nothing upstream', async () => {
    const w = await start({ policies: [{ name: 'closed', match: ['**'], action: 'deny' }] });
    const image = w.upstream.image('acme/app', 'v1');
    const err = await rejection(w.service.getReferrers(w.target('acme/app'), image.digest, undefined));
    expect(err.detail).toMatchObject({ policy: 'closed', reason: 'repository-denied' });
    expect(w.upstream.total).toBe(0);
  });
});

describe('RegistryService: check (pullwarden check)', () => {
  it('decides as a pull does but throws no deny, caches no decision and admits nothing', async () => {
    const w = await start({ policies: SIGNED });
    const unsigned = w.upstream.image('acme/unsigned', 'v1');
    const refused = await checkReference(w.service, `${HOST}/acme/unsigned:v1`, undefined);
    expect(refused).toMatchObject({
      upstream: HOST,
      repository: 'acme/unsigned',
      digest: unsigned.digest,
      decision: { result: 'deny', policy: 'signed' },
      policy: { name: 'signed' },
    });
    expect(
      (await rejection(w.gate!.assertBlobAdmitted(w.target('acme/unsigned'), unsigned.layer))).code,
    ).toBe('DENIED');

    const signed = await w.signed('acme/app', 'v1');
    const ok = await w.service.check(w.target('acme/app'), ref('v1'));
    expect(ok).toMatchObject({ digest: signed.digest, decision: { result: 'allow' } });
    const verified = w.verifier.calls;
    // The pull that follows decides for itself: the check left no decision behind.
    await w.service.resolveManifest(w.target('acme/app'), ref('v1'), { accept: ACCEPT_ALL, withBody: false });
    expect(w.verifier.calls).toBeGreaterThan(verified);
  });

  it('refuses a reference to an upstream that is not configured, with no connection', async () => {
    const w = await start({ policies: SIGNED });
    const err = await rejection(checkReference(w.service, 'elsewhere.test/acme/app:v1', HOST));
    expect(err.code).toBe('DENIED');
    expect(w.upstream.total).toBe(0);
  });
});
