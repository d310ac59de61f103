/**
 * The content side of the trust boundary against a hostile upstream and a client who can push but not
 * sign: trust material is decided by what it is, manifests are parsed the way clients parse them,
 * blobs are proven by bytes, tag lists are paginated here. Each test names the hole it closes.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FsBlobStore } from '../../src/cache/index.ts';
import { openMetadataStore } from '../../src/metadata/index.ts';
import type { MetadataStore } from '../../src/metadata/index.ts';
import { parseDigest, RegistryError } from '../../src/oci/index.ts';
import { RegistryService } from '../../src/service/index.ts';
import type { UpstreamEntry } from '../../src/service/index.ts';
import { UndiciUpstream } from '../../src/upstream/index.ts';
import type { Upstream } from '../../src/upstream/index.ts';
import { loadConfig } from '../../src/config/index.ts';
import { startTestProxy } from '../support/app.ts';
import type { TestProxy } from '../support/app.ts';
import { makeImage, startFakeUpstream } from '../support/fake-upstream.ts';
import type { FakeImage, FakeUpstream } from '../support/fake-upstream.ts';
import { signedPolicy, startTrustGate } from '../support/trust-gate.ts';
import type { TrustGate } from '../support/trust-gate.ts';

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const SIMPLESIGNING = 'application/vnd.dev.cosign.simplesigning.v1+json';

/** The image's own manifest with every layer relabelled as a cosign signature payload. */
function relabelled(img: FakeImage, extra: Record<string, unknown> = {}): string {
  const m = JSON.parse(img.manifestBytes.toString('utf8')) as { layers: { mediaType: string }[] };
  for (const l of m.layers) l.mediaType = SIMPLESIGNING;
  return JSON.stringify({ ...m, ...extra });
}

describe('trust material is decided by what it is', () => {
  let gate: TrustGate;
  let fake: FakeUpstream;

  beforeAll(async () => {
    gate = await startTrustGate({
      prefix: 'pw-content-trust-',
      upstream: { retries: 0 },
      config: { server: { maxTrustMaterialBlobBytes: '64KiB' } },
      policies: (host) => [{ name: 'closed', match: [`${host}/deny/**`], action: 'deny' }, signedPolicy()],
    });
    fake = gate.fake;
  });

  afterAll(async () => {
    await gate?.close();
  });

  const get = (repo: string, what: 'manifests' | 'blobs', ref: string, method = 'GET'): Promise<Response> =>
    gate.get(repo, what, ref, method);

  it.each(['deny/app', 'verify/app'])(
    'an image whose layers are relabelled as signatures is not trust material (%s)',
    async (repo) => {
      const img = makeImage(fake, repo, undefined);
      fake.putManifest(repo, 'v1', relabelled(img), OCI_MANIFEST);
      const res = await get(repo, 'manifests', 'v1');
      expect(res.status).toBe(403);
      expect(await res.json()).toMatchObject({ errors: [{ code: 'DENIED' }] });
      // Its layers — the unsigned image's real ones — stay unreachable.
      expect((await get(repo, 'blobs', img.layerDigests[0]!)).status).toBe(403);
    },
  );

  it('a relabelled image is not trust material under a referrers tag schema tag either', async () => {
    const img = makeImage(fake, 'verify/schema', undefined);
    const tag = `sha256-${'a'.repeat(64)}`;
    fake.putManifest('verify/schema', tag, relabelled(img), OCI_MANIFEST);
    expect((await get('verify/schema', 'manifests', tag)).status).toBe(403);
  });

  it('a cosign .sig of a digest, and a referrer with a subject, are served as trust material', async () => {
    const img = makeImage(fake, 'verify/sig', undefined);
    const tag = `sha256-${img.manifestDigest.slice(7)}.sig`;
    fake.putManifest('verify/sig', tag, relabelled(img), OCI_MANIFEST);
    const sig = await get('verify/sig', 'manifests', tag);
    expect(sig.status).toBe(200);
    expect(sig.headers.get('x-pullwarden-decision')).toBe('allow');
    expect((await get('verify/sig', 'blobs', img.layerDigests[0]!)).status).toBe(200);

    const other = makeImage(fake, 'deny/referrer', undefined);
    const subject = { mediaType: OCI_MANIFEST, digest: img.manifestDigest, size: img.manifestBytes.length };
    const digest = fake.putManifest('deny/referrer', undefined, relabelled(other, { subject }), OCI_MANIFEST);
    expect((await get('deny/referrer', 'manifests', digest)).status).toBe(200);
  });

  it('caps a trust material blob by the bytes received, not by what HEAD says', async () => {
    const big = fake.putBlob('verify/liar', Buffer.alloc(3 * 1024 * 1024, 7));
    const config = fake.putBlob('verify/liar', Buffer.from('{}'));
    const manifest = JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: config, size: 2 },
      layers: [{ mediaType: SIMPLESIGNING, digest: big, size: 100 }],
    });
    const tag = `sha256-${'b'.repeat(64)}.sig`;
    fake.putManifest('verify/liar', tag, manifest, OCI_MANIFEST);
    expect((await get('verify/liar', 'manifests', tag)).status).toBe(200);
    // The upstream's HEAD says 100 bytes, as the descriptor does; the GET sends 3 MiB.
    fake.fault({ kind: 'blob', method: 'HEAD' }, { headers: { 'content-length': 100 } });
    try {
      for (const method of ['GET', 'HEAD', 'GET']) {
        const res = await get('verify/liar', 'blobs', big, method);
        expect(res.status, method).toBe(503);
        if (method === 'GET') {
          expect(await res.json()).toMatchObject({
            errors: [{ code: 'UNAVAILABLE', detail: { reason: 'blob-size-mismatch', size: 100 } }],
          });
        }
      }
    } finally {
      fake.clearFaults();
    }
  });

  /** A `.sig` manifest in `repo` whose one layer is `layer` with the declared `size`. */
  function sigWithLayer(repo: string, layer: string, size: number): string {
    const config = fake.putBlob(repo, Buffer.from('{}'));
    const manifest = JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: config, size: 2 },
      layers: [{ mediaType: SIMPLESIGNING, digest: layer, size }],
    });
    const tag = `sha256-${createHash('sha256').update(repo).digest('hex')}.sig`;
    fake.putManifest(repo, tag, manifest, OCI_MANIFEST);
    return tag;
  }

  async function refusedTotal(reason: string): Promise<number> {
    const text = await (await fetch(`${gate.proxy.url}/metrics`)).text();
    const line = text
      .split('\n')
      .find((l) =>
        l.startsWith(`pullwarden_upstream_blobs_refused_total{upstream="${fake.host}",reason="${reason}"}`),
      );
    return line === undefined ? 0 : Number(line.split(' ').at(-1));
  }

  it('refuses a trust material blob whose descriptor declares more than the cap without asking upstream', async () => {
    const payload = Buffer.alloc(100, 1);
    const layer = fake.putBlob('verify/declared-big', payload);
    const tag = sigWithLayer('verify/declared-big', layer, 1024 * 1024);
    expect((await get('verify/declared-big', 'manifests', tag)).status).toBe(200);
    fake.resetCounts();
    for (const method of ['GET', 'HEAD']) {
      const res = await get('verify/declared-big', 'blobs', layer, method);
      expect(res.status, method).toBe(403);
      if (method === 'GET') {
        expect(await res.json()).toMatchObject({
          errors: [
            { code: 'DENIED', detail: { reason: 'trust-material-blob-too-large', size: 1024 * 1024 } },
          ],
        });
      }
    }
    expect(fake.count({ kind: 'blob' })).toBe(0);
  });

  it.each([
    ['more bytes than the descriptor declares', 'larger-than-declared', 2],
    ['fewer bytes than the descriptor declares', 'shorter-than-declared', 0.5],
  ])('refuses a trust material blob of %s, counts it, and caches nothing', async (_what, reason, factor) => {
    const repo = `verify/${reason}`;
    const payload = randomBytes(1000);
    const layer = fake.putBlob(repo, payload);
    const tag = sigWithLayer(repo, layer, payload.length);
    expect((await get(repo, 'manifests', tag)).status).toBe(200);
    const before = await refusedTotal(reason);
    // Without Content-Length: only the bytes themselves can tell.
    const lie = randomBytes(payload.length * factor);
    fake.fault({ kind: 'blob', method: 'GET', repo }, { body: lie, chunked: true }, { times: 1 });
    const res = await get(repo, 'blobs', layer);
    expect(res.status).toBe(503);
    expect(await res.json()).toMatchObject({
      errors: [{ code: 'UNAVAILABLE', detail: { reason: `blob-${reason}`, size: payload.length } }],
    });
    expect(await refusedTotal(reason)).toBe(before + 1);
    // Nothing of the lie was kept: the honest answer is fetched and served.
    const again = await get(repo, 'blobs', layer);
    expect(again.status).toBe(200);
    expect(Buffer.from(await again.arrayBuffer()).equals(payload)).toBe(true);
  });

  it('refuses a body that claims an image manifest but carries "manifests" (CVE-2021-41190 class)', async () => {
    const img = makeImage(fake, 'deny/confused', undefined);
    const m = JSON.parse(img.manifestBytes.toString('utf8')) as Record<string, unknown>;
    delete m.layers;
    const digest = fake.putManifest(
      'deny/confused',
      'v1',
      JSON.stringify({ ...m, manifests: [] }),
      OCI_MANIFEST,
    );
    const res = await get('deny/confused', 'manifests', 'v1');
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({
      errors: [{ code: 'MANIFEST_INVALID', detail: { reason: 'shape-mismatch', digest } }],
    });
    expect((await get('deny/confused', 'blobs', img.configDigest)).status).toBe(403);
  });

  it('refuses a manifest whose body mediaType and Content-Type disagree', async () => {
    const img = makeImage(fake, 'deny/mixed', undefined);
    // Served as an index, the body says image manifest (and has both shapes).
    const m = JSON.parse(img.manifestBytes.toString('utf8')) as Record<string, unknown>;
    fake.putManifest('deny/mixed', 'v1', JSON.stringify({ ...m, manifests: [] }), OCI_INDEX);
    const res = await get('deny/mixed', 'manifests', 'v1');
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({
      errors: [{ code: 'MANIFEST_INVALID', detail: { reason: 'media-type-mismatch' } }],
    });
  });

  it('refuses a manifest served with a Content-Type that is not a manifest media type', async () => {
    const img = makeImage(fake, 'verify/html', undefined);
    const m = JSON.parse(img.manifestBytes.toString('utf8')) as Record<string, unknown>;
    delete m.mediaType;
    const tag = `sha256-${img.manifestDigest.slice(7)}.sig`;
    fake.putManifest('verify/html', tag, relabelled(img, { mediaType: undefined }), 'text/html');
    const res = await get('verify/html', 'manifests', tag);
    expect(res.status).toBe(400);
    expect(res.headers.get('content-type')).not.toContain('text/html');
    expect(await res.json()).toMatchObject({
      errors: [{ code: 'MANIFEST_INVALID', detail: { reason: 'not-a-manifest-media-type' } }],
    });
  });
});

describe('referrers and tag lists', () => {
  let fake: FakeUpstream;
  let proxy: TestProxy;

  beforeAll(async () => {
    fake = await startFakeUpstream({ ignoreTagPagination: true });
    proxy = await startTestProxy({
      upstreams: { [fake.host]: { url: fake.url } },
      defaultUpstream: fake.host,
      policies: [{ name: 'allow-all', match: ['**'], action: 'allow' }],
    });
  });

  afterAll(async () => {
    await proxy?.close();
    await fake?.close();
  });

  it('answers the referrers of a sha512 subject from its referrers tag schema tag', async () => {
    const subject = parseDigest(`sha512:${'c'.repeat(128)}`);
    const img = makeImage(fake, 'acme/sha512', undefined);
    const index = {
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: [
        {
          mediaType: OCI_MANIFEST,
          digest: img.manifestDigest,
          size: img.manifestBytes.length,
          artifactType: 'application/example',
        },
      ],
    };
    // distribution-spec: `<alg>-<ref>`, <ref> truncated to 64 characters.
    fake.putManifest('acme/sha512', `sha512-${'c'.repeat(64)}`, JSON.stringify(index), OCI_INDEX);
    const res = await fetch(`${proxy.url}/v2/acme/sha512/referrers/${subject}`);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ manifests: [{ digest: img.manifestDigest }] });
  });

  it('serves what a tag is to clients that accept it, and 404 to one that cannot read it', async () => {
    const img = makeImage(fake, 'acme/kinds', 'v1', { format: 'docker' });
    const tag = (accept?: string): Promise<Response> =>
      fetch(`${proxy.url}/v2/acme/kinds/manifests/v1`, accept === undefined ? {} : { headers: { accept } });
    for (const accept of [
      undefined,
      '*/*',
      OCI_MANIFEST,
      'application/vnd.docker.distribution.manifest.v2+json',
    ]) {
      const res = await tag(accept);
      await res.arrayBuffer();
      expect(res.status, accept).toBe(200);
      expect(res.headers.get('docker-content-digest')).toBe(img.manifestDigest);
    }
    // Resolved once, with the full Accept list, whatever the clients sent.
    expect(fake.count({ kind: 'manifest', method: 'HEAD', repo: 'acme/kinds' })).toBe(1);
    for (const r of fake.requests.filter((q) => q.kind === 'manifest' && q.repo === 'acme/kinds')) {
      expect(r.accept).toContain(OCI_INDEX);
      expect(r.accept).toContain('application/vnd.docker.distribution.manifest.v2+json');
    }
    const refused = await tag(OCI_INDEX);
    expect(refused.status).toBe(404);
    expect(await refused.json()).toMatchObject({
      errors: [{ code: 'MANIFEST_UNKNOWN', detail: { reason: 'media-type-not-accepted' } }],
    });
  });

  it('applies n and last itself, with a Link to the next page, when the upstream ignores them', async () => {
    const img = makeImage(fake, 'acme/tags', 'a');
    for (const t of ['b', 'c', 'd', 'e']) fake.tag('acme/tags', t, img.manifestDigest);
    const first = await fetch(`${proxy.url}/v2/acme/tags/tags/list?n=2`);
    expect(first.status).toBe(200);
    expect(await first.json()).toEqual({ name: 'acme/tags', tags: ['a', 'b'] });
    const link = first.headers.get('link');
    expect(link).toBe('</v2/acme/tags/tags/list?n=2&last=b>; rel="next"');
    const second = await fetch(`${proxy.url}/v2/acme/tags/tags/list?n=2&last=b`);
    expect(await second.json()).toEqual({ name: 'acme/tags', tags: ['c', 'd'] });
    const third = await fetch(`${proxy.url}/v2/acme/tags/tags/list?n=2&last=d`);
    expect(await third.json()).toEqual({ name: 'acme/tags', tags: ['e'] });
    expect(third.headers.get('link')).toBeNull();
    const all = await fetch(`${proxy.url}/v2/acme/tags/tags/list`);
    expect(await all.json()).toEqual({ name: 'acme/tags', tags: ['a', 'b', 'c', 'd', 'e'] });
  });
});

/** The service alone over real upstream clients, cache and metadata: what the app composes. */
describe('registry service against hostile upstreams', () => {
  let a: FakeUpstream;
  let b: FakeUpstream;
  let dir: string;
  let metadata: MetadataStore;
  let blobs: FsBlobStore;
  const closers: (() => Promise<void>)[] = [];

  async function upstream(fake: FakeUpstream): Promise<Upstream> {
    const file = join(dir, `${fake.host.replace(':', '_')}.yaml`);
    await writeFile(file, `upstreams:\n  "${fake.host}":\n    url: ${fake.url}\n    retries: 0\n`);
    const config = await loadConfig(file, {});
    const u = new UndiciUpstream({
      host: fake.host,
      config: config.upstreams[fake.host]!,
      maxManifestBytes: 4 * 1024 * 1024,
    });
    closers.push(() => u.close());
    return u;
  }

  beforeAll(async () => {
    [a, b] = await Promise.all([startFakeUpstream(), startFakeUpstream()]);
    dir = await mkdtemp(join(tmpdir(), 'pw-content-service-'));
    blobs = new FsBlobStore({ dir: join(dir, 'data'), maxBytes: 1 << 30 });
    await blobs.init();
    metadata = await openMetadataStore({
      url: 'sqlite://:memory:',
      namespace: 'test',
      logger: pino({ level: 'silent' }),
    });
  });

  afterAll(async () => {
    for (const close of closers) await close();
    await blobs?.close();
    await a?.close();
    await b?.close();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  function service(entries: [string, UpstreamEntry][]): RegistryService {
    return new RegistryService({
      upstreams: new Map(entries),
      blobs,
      metadata,
      logger: pino({ level: 'silent' }),
      maxManifestBytes: 4 * 1024 * 1024,
    });
  }

  it("never serves a blob cached from upstream A for upstream B's repository because B answered HEAD 200", async () => {
    const secret = Buffer.from('the private layer of upstream A');
    const digest = a.putBlob('acme/private', secret);
    b.putBlob('acme/public', secret);
    const svc = service([
      [a.host, { upstream: await upstream(a), tagTTL: 60_000, staleIfError: 0 }],
      [b.host, { upstream: await upstream(b), tagTTL: 60_000, staleIfError: 0 }],
    ]);
    const d = parseDigest(digest);
    const fromA = await svc.getBlob({ upstream: a.host, repository: 'acme/private' }, d);
    fromA.release();
    // B says it has the blob (HEAD 200) but cannot send it.
    b.fault({ kind: 'blob', method: 'GET' }, { status: 404, code: 'BLOB_UNKNOWN' });
    await expect(svc.getBlob({ upstream: b.host, repository: 'acme/public' }, d)).rejects.toMatchObject({
      code: 'BLOB_UNKNOWN',
    });
    // B sends other bytes: an upstream failure, not a success.
    b.clearFaults();
    b.fault({ kind: 'blob', method: 'GET' }, 'wrong-bytes');
    await expect(svc.getBlob({ upstream: b.host, repository: 'acme/public' }, d)).rejects.toMatchObject({
      code: 'UNAVAILABLE',
    });
    // B sends the bytes: proven, then served from the cache (one GET, hashed).
    b.clearFaults();
    b.resetCounts();
    const fromB = await svc.getBlob({ upstream: b.host, repository: 'acme/public' }, d);
    fromB.release();
    expect(b.count({ kind: 'blob', method: 'GET' })).toBe(1);
    expect(b.count({ kind: 'blob', method: 'HEAD' })).toBe(0);
  });

  it('does not serve a stale tag for an internal error (UNKNOWN), only for upstream failures', async () => {
    const real = await upstream(a);
    let failure: Error | undefined;
    // The real client, with tag resolution failing as chosen (every other call goes through).
    const flaky: Upstream = {
      host: real.host,
      headManifest: (...args) => (failure ? Promise.reject(failure) : real.headManifest(...args)),
      getManifest: (...args) => real.getManifest(...args),
      getBlob: (...args) => real.getBlob(...args),
      headBlob: (...args) => real.headBlob(...args),
      listTags: (...args) => real.listTags(...args),
      getReferrers: (...args) => real.getReferrers(...args),
      close: () => real.close(),
    };
    const svc = service([[a.host, { upstream: flaky, tagTTL: 1, staleIfError: 3_600_000 }]]);
    const img = makeImage(a, 'acme/stale', 'v1');
    const target = { upstream: a.host, repository: 'acme/stale' };
    const ref = { kind: 'tag', tag: 'v1' } as const;
    expect((await svc.resolveManifest(target, ref, { accept: [], withBody: false })).digest).toBe(
      img.manifestDigest,
    );
    await new Promise((r) => setTimeout(r, 5));
    failure = new RegistryError('UNAVAILABLE', 'upstream down');
    expect((await svc.resolveManifest(target, ref, { accept: [], withBody: false })).cache).toBe('stale');
    failure = new RegistryError('UNKNOWN', 'a bug of ours');
    await expect(svc.resolveManifest(target, ref, { accept: [], withBody: false })).rejects.toMatchObject({
      code: 'UNKNOWN',
    });
  });
});
