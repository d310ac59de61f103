import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { makeImage, makeIndex, makeReferrer, sha256, startFakeUpstream } from '../support/fake-upstream.ts';
import type { FakeUpstream } from '../support/fake-upstream.ts';
import { startTestProxy } from '../support/app.ts';
import type { TestProxy } from '../support/app.ts';

const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const ACCEPT_ALL = [OCI_INDEX, OCI_MANIFEST, 'application/vnd.docker.distribution.manifest.v2+json'].join(
  ', ',
);

let fake: FakeUpstream;
let proxy: TestProxy;

async function start(upstreamOptions: Record<string, unknown> = {}, fakeOptions = {}): Promise<void> {
  fake = await startFakeUpstream(fakeOptions);
  proxy = await startTestProxy({
    upstreams: { [fake.host]: { url: fake.url, tagTTL: '30s', staleIfError: '1h', ...upstreamOptions } },
    defaultUpstream: fake.host,
    policies: ALLOW_ALL,
  });
}

/** The core proxy behaviour, with trust out of the way (the trust suites cover policies). */
const ALLOW_ALL = [{ name: 'allow-all', match: ['**'], action: 'allow' }];

/** Pull the manifest first, as every client does: it admits the image's blobs in the repository. */
async function admit(repo: string, ref: string): Promise<void> {
  const res = await get(`/v2/${repo}/manifests/${ref}?${ns()}`);
  expect(res.status).toBe(200);
  await res.arrayBuffer();
}

afterEach(async () => {
  await proxy?.close();
  await fake?.close();
});

function get(path: string, init: RequestInit = {}): Promise<Response> {
  return fetch(`${proxy.url}${path}`, init);
}

const ns = () => `ns=${encodeURIComponent(fake.host)}`;

describe('OCI read API through the proxy', () => {
  beforeEach(() => start());

  it('answers the base endpoint with the distribution API version header', async () => {
    const res = await get('/v2/');
    expect(res.status).toBe(200);
    expect(res.headers.get('docker-distribution-api-version')).toBe('registry/2.0');
    expect(fake.count()).toBe(0);
  });

  it('resolves a tag with HEAD: digest, media type and length without a body', async () => {
    const img = makeImage(fake, 'acme/app', '1.0');
    const res = await get(`/v2/acme/app/manifests/1.0?${ns()}`, {
      method: 'HEAD',
      headers: { accept: ACCEPT_ALL },
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('docker-content-digest')).toBe(img.manifestDigest);
    expect(res.headers.get('content-type')).toBe(OCI_MANIFEST);
    expect(res.headers.get('content-length')).toBe(String(img.manifestBytes.length));
    expect((await res.arrayBuffer()).byteLength).toBe(0);
  });

  it('serves manifests byte-exact by tag and by digest', async () => {
    const img = makeImage(fake, 'acme/app', '1.0', { format: 'docker' });
    for (const ref of ['1.0', img.manifestDigest]) {
      const res = await get(`/v2/acme/app/manifests/${ref}?${ns()}`, { headers: { accept: ACCEPT_ALL } });
      expect(res.status).toBe(200);
      expect(Buffer.from(await res.arrayBuffer()).equals(img.manifestBytes)).toBe(true);
      expect(res.headers.get('content-type')).toBe('application/vnd.docker.distribution.manifest.v2+json');
      expect(res.headers.get('docker-content-digest')).toBe(img.manifestDigest);
    }
  });

  it('routes by host prefix and by the default upstream too', async () => {
    const img = makeImage(fake, 'acme/app', '1.0');
    for (const path of [`/v2/${fake.host}/acme/app/manifests/1.0`, '/v2/acme/app/manifests/1.0']) {
      const res = await get(path, { method: 'HEAD' });
      expect(res.status).toBe(200);
      expect(res.headers.get('docker-content-digest')).toBe(img.manifestDigest);
    }
  });

  it('serves a cached tag without asking upstream within its TTL', async () => {
    makeImage(fake, 'acme/app', '1.0');
    await get(`/v2/acme/app/manifests/1.0?${ns()}`, { method: 'HEAD' });
    fake.resetCounts();
    for (let i = 0; i < 5; i++) {
      const res = await get(`/v2/acme/app/manifests/1.0?${ns()}`, { method: 'HEAD' });
      expect(res.status).toBe(200);
      expect(res.headers.get('x-pullwarden-cache')).toBe('hit');
      const body = await get(`/v2/acme/app/manifests/1.0?${ns()}`);
      expect(body.status).toBe(200);
    }
    expect(fake.count()).toBe(0);
  });

  it('answers 404 MANIFEST_UNKNOWN for an unknown tag', async () => {
    const res = await get(`/v2/acme/app/manifests/nope?${ns()}`);
    expect(res.status).toBe(404);
    expect(await res.json()).toMatchObject({ errors: [{ code: 'MANIFEST_UNKNOWN' }] });
  });

  it('serves blobs, with Range, and HEAD never downloads the blob', async () => {
    const img = makeImage(fake, 'acme/app', '1.0', { layerSize: 100_000 });
    const layer = img.layerDigests[0]!;
    await admit('acme/app', '1.0');
    const head = await get(`/v2/acme/app/blobs/${layer}?${ns()}`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers.get('content-length')).toBe('100000');
    expect(fake.count({ kind: 'blob', method: 'GET' })).toBe(0);

    const full = await get(`/v2/acme/app/blobs/${layer}?${ns()}`);
    expect(full.status).toBe(200);
    expect(Buffer.from(await full.arrayBuffer()).equals(img.layers[0]!)).toBe(true);

    const part = await get(`/v2/acme/app/blobs/${layer}?${ns()}`, { headers: { range: 'bytes=10-19' } });
    expect(part.status).toBe(206);
    expect(part.headers.get('content-range')).toBe('bytes 10-19/100000');
    expect(Buffer.from(await part.arrayBuffer()).equals(img.layers[0]!.subarray(10, 20))).toBe(true);

    const bad = await get(`/v2/acme/app/blobs/${layer}?${ns()}`, { headers: { range: 'bytes=100000-' } });
    expect(bad.status).toBe(416);
    expect(fake.count({ kind: 'blob', method: 'GET' })).toBe(1);
  });

  it('makes one upstream GET for 16 concurrent cold requests of one blob', async () => {
    const img = makeImage(fake, 'acme/app', '1.0', { layerSize: 4 * 1024 * 1024 });
    const layer = img.layerDigests[0]!;
    await admit('acme/app', '1.0');
    fake.fault({ kind: 'blob', method: 'GET' }, { delayBodyMs: 5, chunkBytes: 256 * 1024 });
    const bodies = await Promise.all(
      Array.from({ length: 16 }, async () => {
        const res = await get(`/v2/acme/app/blobs/${layer}?${ns()}`);
        expect(res.status).toBe(200);
        return Buffer.from(await res.arrayBuffer());
      }),
    );
    for (const b of bodies) expect(sha256(b)).toBe(layer);
    expect(fake.count({ kind: 'blob', method: 'GET' })).toBe(1);
  });

  it('lists tags with pagination links that point back at the proxy', async () => {
    for (const t of ['a', 'b', 'c']) makeImage(fake, 'acme/app', t);
    const res = await get(`/v2/acme/app/tags/list?n=2&${ns()}`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ name: 'acme/app', tags: ['a', 'b'] });
    const link = res.headers.get('link');
    expect(link).toContain('/v2/acme/app/tags/list?');
    expect(link).toContain('last=b');
    expect(link).toContain(`ns=${encodeURIComponent(fake.host)}`);
  });

  it('answers referrers from the tag schema when the upstream has no referrers API', async () => {
    const img = makeImage(fake, 'acme/app', '1.0');
    const sigType = 'application/vnd.dev.sigstore.bundle.v0.3+json';
    const subject = { digest: img.manifestDigest, size: img.manifestBytes.length, mediaType: img.mediaType };
    const ref = makeReferrer(fake, 'acme/app', subject, sigType);
    const other = makeReferrer(fake, 'acme/app', subject, 'application/example');
    // The referrers tag schema (distribution-spec "Referrers Tag Schema"): an index at sha256-<hex>.
    const schemaIndex = {
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: [
        { mediaType: OCI_MANIFEST, digest: ref.digest, size: ref.bytes.length, artifactType: sigType },
        {
          mediaType: OCI_MANIFEST,
          digest: other.digest,
          size: other.bytes.length,
          artifactType: 'application/example',
        },
      ],
    };
    fake.putManifest(
      'acme/app',
      `sha256-${img.manifestDigest.slice(7)}`,
      JSON.stringify(schemaIndex),
      OCI_INDEX,
    );
    const all = await get(`/v2/acme/app/referrers/${img.manifestDigest}?${ns()}`);
    expect(((await all.json()) as { manifests: unknown[] }).manifests).toHaveLength(2);
    const none = await get(`/v2/acme/app/referrers/${sha256('nothing')}?${ns()}`);
    expect(none.status).toBe(200);
    expect(await none.json()).toEqual({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: [] });
    const res = await get(
      `/v2/acme/app/referrers/${img.manifestDigest}?artifactType=${encodeURIComponent(sigType)}&${ns()}`,
    );
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe(OCI_INDEX);
    expect(res.headers.get('oci-filters-applied')).toBe('artifactType');
    const body = (await res.json()) as { manifests: { digest: string }[] };
    expect(body.manifests.map((m) => m.digest)).toEqual([ref.digest]);
  });

  it('refuses pushes, deletes and uploads with 405 UNSUPPORTED', async () => {
    for (const [method, path] of [
      ['PUT', '/v2/acme/app/manifests/1.0'],
      ['DELETE', `/v2/acme/app/manifests/${sha256('x')}`],
      ['POST', '/v2/acme/app/blobs/uploads/'],
      ['PATCH', '/v2/acme/app/blobs/uploads/abc'],
    ] as const) {
      const res = await get(path, { method, body: method === 'DELETE' ? null : 'x' });
      expect(res.status).toBe(405);
      expect(await res.json()).toMatchObject({ errors: [{ code: 'UNSUPPORTED' }] });
    }
    const upload = await get('/v2/acme/app/blobs/uploads/');
    expect(upload.status).toBe(405);
    expect(fake.count()).toBe(0);
  });

  it('rejects bad names and digests with OCI errors and no upstream request', async () => {
    const cases: [string, number, string][] = [
      ['/v2/Acme/manifests/1', 400, 'NAME_INVALID'],
      ['/v2/a/..%2f..%2fetc/manifests/1', 400, 'NAME_INVALID'],
      ['/v2/a/blobs/sha256:1234', 400, 'DIGEST_INVALID'],
      ['/v2/a/manifests/sha256:zz', 400, 'DIGEST_INVALID'],
      [`/v2/${'a/'.repeat(400)}manifests/1`, 400, 'NAME_INVALID'],
    ];
    for (const [path, status, code] of cases) {
      const res = await get(path);
      expect(res.status, path).toBe(status);
      expect(await res.json()).toMatchObject({ errors: [{ code }] });
    }
    expect(fake.count()).toBe(0);
  });
});

describe('upstream selection is limited to the configuration', () => {
  beforeEach(() => start());

  it('refuses an unconfigured ns= host with 403 and never connects to it', async () => {
    let connections = 0;
    const listener = createServer((s) => {
      connections++;
      s.destroy();
    });
    await new Promise<void>((r) => listener.listen(0, '127.0.0.1', r));
    const evil = `127.0.0.1:${(listener.address() as AddressInfo).port}`;
    try {
      for (const path of [
        `/v2/library/x/manifests/1?ns=${encodeURIComponent(evil)}`,
        `/v2/${evil}/library/x/manifests/1`,
        `/v2/library/x/blobs/${sha256('x')}?ns=${encodeURIComponent(evil)}`,
      ]) {
        const res = await get(path, { headers: { host: evil, 'x-forwarded-host': evil } });
        expect(res.status).toBe(403);
        const body = (await res.json()) as { errors: { code: string; message: string }[] };
        expect(body.errors[0]!.code).toBe('DENIED');
        expect(body.errors[0]!.message).toContain('not configured');
      }
      expect(connections).toBe(0);
    } finally {
      listener.close();
    }
  });
});

describe('upstream faults', () => {
  it('serves the last known digest while the upstream fails, within staleIfError', async () => {
    await start({ tagTTL: '50ms', staleIfError: '1h' });
    const img = makeImage(fake, 'acme/app', '1.0');
    await get(`/v2/acme/app/manifests/1.0?${ns()}`, { method: 'HEAD' });
    await new Promise((r) => setTimeout(r, 80));
    fake.fault({ kind: 'manifest' }, { status: 500 });
    const res = await get(`/v2/acme/app/manifests/1.0?${ns()}`);
    expect(res.status).toBe(200);
    expect(res.headers.get('docker-content-digest')).toBe(img.manifestDigest);
    expect(res.headers.get('x-pullwarden-cache')).toBe('stale');
    expect(res.headers.get('warning')).toContain('Stale');
  });

  it('answers 503 UNAVAILABLE when the upstream fails and nothing may be served stale', async () => {
    await start({ tagTTL: '50ms', staleIfError: '50ms', retries: 0 });
    makeImage(fake, 'acme/app', '1.0');
    await get(`/v2/acme/app/manifests/1.0?${ns()}`, { method: 'HEAD' });
    await new Promise((r) => setTimeout(r, 120));
    fake.fault({ kind: 'manifest' }, { status: 500 });
    const res = await get(`/v2/acme/app/manifests/1.0?${ns()}`);
    expect(res.status).toBe(503);
    expect(await res.json()).toMatchObject({ errors: [{ code: 'UNAVAILABLE' }] });
  });

  it('passes upstream rate limiting on as 429 TOOMANYREQUESTS with Retry-After', async () => {
    await start();
    makeImage(fake, 'acme/app', '1.0');
    fake.fault({ kind: 'manifest' }, { status: 429, retryAfter: 7 });
    const res = await get(`/v2/acme/app/manifests/1.0?${ns()}`);
    expect(res.status).toBe(429);
    expect(res.headers.get('retry-after')).toBe('7');
    expect(await res.json()).toMatchObject({ errors: [{ code: 'TOOMANYREQUESTS' }] });
  });

  for (const fault of ['wrong-bytes', 'reset-mid-body', 'truncate'] as const) {
    it(`never caches or completes a blob whose upstream sends ${fault}`, async () => {
      await start({ retries: 0 });
      const img = makeImage(fake, 'acme/app', '1.0', { layerSize: 512 * 1024 });
      const layer = img.layerDigests[0]!;
      await admit('acme/app', '1.0');
      fake.fault({ kind: 'blob', method: 'GET' }, fault, { times: 1 });
      const broken = await get(`/v2/acme/app/blobs/${layer}?${ns()}`)
        .then(async (res) => ({ status: res.status, body: Buffer.from(await res.arrayBuffer()) }))
        .catch((err: unknown) => ({ status: -1, err }));
      // Either the status says so, or the body is cut: the client never sees a complete wrong blob.
      if ('body' in broken && broken.status === 200) expect(sha256(broken.body)).not.toBe(layer);
      if ('body' in broken && broken.status === 200) expect(broken.body.length).not.toBe(512 * 1024);
      const again = await get(`/v2/acme/app/blobs/${layer}?${ns()}`);
      expect(again.status).toBe(200);
      expect(sha256(Buffer.from(await again.arrayBuffer()))).toBe(layer);
      expect(fake.count({ kind: 'blob', method: 'GET' })).toBe(2);
    });
  }

  it('does not serve a manifest whose bytes do not match the digest asked for', async () => {
    await start({ retries: 0 });
    const img = makeImage(fake, 'acme/app', '1.0');
    fake.fault({ kind: 'manifest', method: 'GET' }, 'wrong-bytes', { times: 1 });
    const res = await get(`/v2/acme/app/manifests/${img.manifestDigest}?${ns()}`);
    expect(res.status).toBe(503);
    const ok = await get(`/v2/acme/app/manifests/${img.manifestDigest}?${ns()}`);
    expect(ok.status).toBe(200);
    expect(Buffer.from(await ok.arrayBuffer()).equals(img.manifestBytes)).toBe(true);
  });
});

describe('referrers API upstreams', () => {
  it('passes the upstream referrers answer through', async () => {
    await start({}, { referrersApi: true });
    const img = makeImage(fake, 'acme/app', '1.0');
    const subject = { digest: img.manifestDigest, size: img.manifestBytes.length, mediaType: img.mediaType };
    const ref = makeReferrer(fake, 'acme/app', subject, 'application/vnd.dev.sigstore.bundle.v0.3+json');
    const res = await get(`/v2/acme/app/referrers/${img.manifestDigest}?${ns()}`);
    expect(res.status).toBe(200);
    const body = (await res.json()) as { manifests: { digest: string }[] };
    expect(body.manifests.map((m) => m.digest)).toEqual([ref.digest]);
    expect(fake.count({ kind: 'referrers' })).toBe(1);
  });
});

describe('upstream authentication', () => {
  it('pulls through a registry that requires bearer tokens with credentials', async () => {
    fake = await startFakeUpstream({
      auth: 'bearer',
      username: 'robot',
      password: 's3cret',
      redirectBlobs: true,
    });
    proxy = await startTestProxy({
      upstreams: {
        // The fake's CDN is on 127.0.0.1 too: allowed by name, as an operator allows an internal CDN.
        [fake.host]: {
          url: fake.url,
          username: 'robot',
          password: 's3cret',
          redirects: { allow: [new URL(fake.cdnUrl).host] },
        },
      },
      policies: ALLOW_ALL,
    });
    const img = makeImage(fake, 'acme/private', '1.0');
    const res = await get(`/v2/acme/private/manifests/1.0?${ns()}`);
    expect(res.status).toBe(200);
    const blob = await get(`/v2/acme/private/blobs/${img.layerDigests[0]}?${ns()}`);
    expect(blob.status).toBe(200);
    expect(sha256(Buffer.from(await blob.arrayBuffer()))).toBe(img.layerDigests[0]);
    const cdn = fake.requests.filter((r) => r.origin === 'cdn');
    expect(cdn.length).toBeGreaterThan(0);
    for (const r of cdn) expect(r.authorization).toBeUndefined();
  });
});

describe('cache persistence and sharing rules', () => {
  it('reuses the cache after a restart with no upstream blob requests', async () => {
    await start();
    const img = makeIndex(fake, 'acme/multi', '1.0');
    const child = img.images[0]!;
    await get(`/v2/acme/multi/manifests/1.0?${ns()}`);
    await get(`/v2/acme/multi/manifests/${child.manifestDigest}?${ns()}`);
    await get(`/v2/acme/multi/blobs/${child.layerDigests[0]}?${ns()}`).then((r) => r.arrayBuffer());
    proxy = await proxy.restart();
    fake.resetCounts();
    const again = await get(`/v2/acme/multi/blobs/${child.layerDigests[0]}?${ns()}`);
    expect(again.status).toBe(200);
    expect(again.headers.get('x-pullwarden-cache')).toBe('hit');
    const m = await get(`/v2/acme/multi/manifests/${child.manifestDigest}?${ns()}`);
    expect(Buffer.from(await m.arrayBuffer()).equals(child.manifestBytes)).toBe(true);
    expect(fake.count({ kind: 'blob' })).toBe(0);
    expect(fake.count({ kind: 'manifest', method: 'GET' })).toBe(0);
  });

  it('does not serve a blob cached for one repository to another repository that admitted nothing', async () => {
    await start();
    const img = makeImage(fake, 'team-a/app', '1.0');
    const layer = img.layerDigests[0]!;
    await admit('team-a/app', '1.0');
    await get(`/v2/team-a/app/blobs/${layer}?${ns()}`).then((r) => r.arrayBuffer());
    fake.resetCounts();
    const stranger = await get(`/v2/team-c/other/blobs/${layer}?${ns()}`);
    expect(stranger.status).toBe(403);
    expect(fake.count()).toBe(0);
  });
});

describe('operations endpoints', () => {
  beforeEach(() => start());

  it('reports health, readiness and Prometheus metrics', async () => {
    makeImage(fake, 'acme/app', '1.0');
    await get(`/v2/acme/app/manifests/1.0?${ns()}`, { method: 'HEAD' });
    expect((await get('/healthz')).status).toBe(200);
    expect((await get('/readyz')).status).toBe(200);
    const text = await (await get('/metrics')).text();
    expect(text).toContain('pullwarden_http_requests_total{route="manifest",method="HEAD",status="200"} 1');
    expect(text).toMatch(/pullwarden_upstream_requests_total\{[^}]*kind="manifest"[^}]*\} \d/);
  });
});
