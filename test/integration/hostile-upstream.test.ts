/**
 * A hostile (or broken) upstream tries to get something past the proxy that a careful one would not:
 * a downgrade to plain http, a mislabelled manifest, an endless tag list, bodies that lie about their
 * size or never end. Nothing of it may be cached or served as a success, and the proxy says why.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { UndiciUpstream } from '../../src/upstream/index.ts';
import { startTestProxy } from '../support/app.ts';
import type { TestProxy } from '../support/app.ts';
import { startCanary } from '../support/canary.ts';
import type { Canary } from '../support/canary.ts';
import { makeImage, makeReferrer, sha256, startFakeUpstream } from '../support/fake-upstream.ts';
import type { FakeUpstream } from '../support/fake-upstream.ts';
import { selfSignedCertificate } from '../support/tls.ts';

const ALLOW_ALL = [{ name: 'allow-all', match: ['**'], action: 'allow' }];

let fake: FakeUpstream | undefined;
let proxy: TestProxy | undefined;
const canaries: Canary[] = [];
const dirs: string[] = [];

afterEach(async () => {
  await proxy?.close();
  await fake?.close();
  await Promise.all(canaries.splice(0).map((c) => c.close()));
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
  proxy = undefined;
  fake = undefined;
});

async function canary(): Promise<Canary> {
  const c = await startCanary('127.0.0.1');
  canaries.push(c);
  return c;
}

async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'pw-hostile-'));
  dirs.push(d);
  return d;
}

async function errorOf(res: Response): Promise<{ code: string; message: string; detail?: unknown }> {
  const body = (await res.json()) as { errors: { code: string; message: string; detail?: unknown }[] };
  return body.errors[0] ?? { code: '', message: '' };
}

async function metric(p: TestProxy, name: string): Promise<string[]> {
  const text = await (await fetch(`${p.url}/metrics`)).text();
  return text.split('\n').filter((l) => l.startsWith(name));
}

describe('redirect downgrades and unusable redirects', () => {
  async function httpsUpstream(extra: Record<string, unknown> = {}) {
    const cert = await selfSignedCertificate(await tempDir());
    fake = await startFakeUpstream({ tls: { key: cert.key, cert: cert.cert } });
    const c = await canary();
    proxy = await startTestProxy({
      upstreams: {
        [fake.host]: {
          url: fake.url,
          caFile: cert.certFile,
          // The canary is allowed as an address: the only reason left to refuse it is the scheme.
          redirects: { allow: [c.host], ...extra },
        },
      },
      policies: ALLOW_ALL,
    });
    const img = makeImage(fake, 'acme/app', '1.0', { layerSize: 4096 });
    const pulled = await fetch(`${proxy.url}/v2/acme/app/manifests/1.0?ns=${fake.host}`);
    expect(pulled.status).toBe(200);
    c.respond = () => Promise.resolve({ status: 200, body: img.layers[0]! });
    return { c, img, layer: img.layerDigests[0]! };
  }

  it('refuses a redirect from an https upstream to plain http, without connecting, and counts it', async () => {
    const { c, layer } = await httpsUpstream();
    fake!.fault(
      { kind: 'blob', method: 'GET' },
      { redirect: `http://${c.host}/cdn/blob?sig=1` },
      { times: 1 },
    );

    const res = await fetch(`${proxy!.url}/v2/acme/app/blobs/${layer}?ns=${fake!.host}`);

    expect(res.status).toBe(503);
    const err = await errorOf(res);
    expect(err.code).toBe('UNAVAILABLE');
    expect(err.message).toContain('from https to plain http');
    expect(err.message).toContain(`upstreams.${fake!.host}.redirects.allowHttp`);
    expect(c.connections).toBe(0);
    expect(await metric(proxy!, 'pullwarden_upstream_refused_total')).toContainEqual(
      `pullwarden_upstream_refused_total{upstream="${fake!.host}",reason="redirect-http"} 1`,
    );
    // Nothing cached: the next pull (no redirect now) is a miss with the right bytes.
    const again = await fetch(`${proxy!.url}/v2/acme/app/blobs/${layer}?ns=${fake!.host}`);
    expect(again.status).toBe(200);
    expect(again.headers.get('x-pullwarden-cache')).toBe('miss');
    expect(sha256(Buffer.from(await again.arrayBuffer()))).toBe(layer);
  });

  it('follows an https to http redirect when redirects.allowHttp is set', async () => {
    const { c, layer } = await httpsUpstream({ allowHttp: true });
    fake!.fault(
      { kind: 'blob', method: 'GET' },
      { redirect: `http://${c.host}/cdn/blob?sig=1` },
      { times: 1 },
    );

    const res = await fetch(`${proxy!.url}/v2/acme/app/blobs/${layer}?ns=${fake!.host}`);

    expect(res.status).toBe(200);
    expect(sha256(Buffer.from(await res.arrayBuffer()))).toBe(layer);
    expect(c.connections).toBe(1);
  });

  it('refuses a redirect with credentials in its URL or a non-http scheme, and a redirect loop', async () => {
    const c = await canary();
    fake = await startFakeUpstream();
    proxy = await startTestProxy({
      upstreams: { [fake.host]: { url: fake.url, redirects: { allow: [c.host] } } },
      policies: ALLOW_ALL,
    });
    const img = makeImage(fake, 'acme/app', '1.0');
    const layer = img.layerDigests[0]!;
    await fetch(`${proxy.url}/v2/acme/app/manifests/1.0?ns=${fake.host}`);
    for (const [location, reason] of [
      [`http://user:pw@${c.host}/blob`, /credentials/],
      [`file:///etc/passwd`, /unusable redirect/],
      [`ftp://${c.host}/blob`, /unusable redirect/],
    ] as const) {
      fake.fault({ kind: 'blob', method: 'GET' }, { redirect: location }, { times: 1 });
      const res = await fetch(`${proxy.url}/v2/acme/app/blobs/${layer}?ns=${fake.host}`);
      expect(res.status, location).toBe(503);
      expect((await errorOf(res)).message, location).toMatch(reason);
    }
    // A loop: the registry sends the blob back to itself, forever. Bounded, then refused.
    fake.fault({ kind: 'blob', method: 'GET' }, { redirect: `${fake.url}/v2/acme/app/blobs/${layer}` });
    const loop = await fetch(`${proxy.url}/v2/acme/app/blobs/${layer}?ns=${fake.host}`);
    expect(loop.status).toBe(503);
    expect((await errorOf(loop)).message).toMatch(/more than 5 times/);
    expect(fake.count({ kind: 'blob', method: 'GET' })).toBeLessThanOrEqual(3 + 6);
    expect(c.connections).toBe(0);
    const refused = await metric(proxy, 'pullwarden_upstream_refused_total');
    expect(refused).toContainEqual(
      `pullwarden_upstream_refused_total{upstream="${fake.host}",reason="redirect-unusable"} 3`,
    );
    expect(refused).toContainEqual(
      `pullwarden_upstream_refused_total{upstream="${fake.host}",reason="redirect-limit"} 1`,
    );
  });
});

describe('answers with a generic Content-Type are judged by what they are', () => {
  async function start(options: Parameters<typeof startFakeUpstream>[0] = {}) {
    fake = await startFakeUpstream(options);
    proxy = await startTestProxy({ upstreams: { [fake.host]: { url: fake.url } }, policies: ALLOW_ALL });
    return { fake, proxy };
  }

  it('reads a referrers API answer served as application/json by its body, not as a missing API', async () => {
    const { fake: f, proxy: p } = await start({ referrersApi: true });
    const img = makeImage(f, 'acme/app', '1.0');
    const subject = { digest: img.manifestDigest, size: img.manifestBytes.length, mediaType: img.mediaType };
    const ref = makeReferrer(f, 'acme/app', subject, 'application/vnd.dev.sigstore.bundle.v0.3+json');
    f.fault({ kind: 'referrers' }, { headers: { 'content-type': 'application/json' } });

    const res = await fetch(`${p.url}/v2/acme/app/referrers/${img.manifestDigest}?ns=${f.host}`);

    expect(res.status).toBe(200);
    const body = (await res.json()) as { manifests: { digest: string }[] };
    expect(body.manifests.map((m) => m.digest)).toEqual([ref.digest]);
    // The API answered: no detour through the referrers tag schema.
    expect(f.count({ kind: 'manifest', ref: `sha256-${img.manifestDigest.slice(7)}` })).toBe(0);
  });

  it('serves a schema2 manifest sent as application/json or octet-stream under its own media type, everywhere', async () => {
    const { fake: f, proxy: p } = await start();
    const img = makeImage(f, 'acme/app', 'src', { format: 'docker' });
    for (const [tag, generic] of [
      ['json', 'application/json; charset=utf-8'],
      ['octet', 'application/octet-stream'],
    ] as const) {
      const digest = f.putManifest('acme/app', tag, img.manifestBytes, generic);
      for (const ref of [tag, digest]) {
        for (const method of ['HEAD', 'GET']) {
          const res = await fetch(`${p.url}/v2/acme/app/manifests/${ref}?ns=${f.host}`, { method });
          expect(res.status, `${method} ${ref}`).toBe(200);
          expect(res.headers.get('content-type'), `${method} ${ref}`).toBe(img.mediaType);
          expect(res.headers.get('docker-content-digest')).toBe(digest);
          if (method === 'GET')
            expect(Buffer.from(await res.arrayBuffer()).equals(img.manifestBytes)).toBe(true);
        }
      }
    }
  });

  it('refuses a generic-typed body whose mediaType and shape disagree, or that is no manifest at all', async () => {
    const { fake: f, proxy: p } = await start();
    const img = makeImage(f, 'acme/app', 'src');
    const hybrid = JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: JSON.parse(img.manifestBytes.toString()).config,
      layers: [],
      manifests: [{ mediaType: img.mediaType, digest: img.manifestDigest, size: img.manifestBytes.length }],
    });
    f.putManifest('acme/app', 'hybrid', hybrid, 'application/json');
    f.putManifest('acme/app', 'config', img.configBytes, 'application/octet-stream');
    for (const [tag, reason] of [
      ['hybrid', 'shape-mismatch'],
      ['config', 'not-a-manifest-media-type'],
    ] as const) {
      const res = await fetch(`${p.url}/v2/acme/app/manifests/${tag}?ns=${f.host}`);
      expect(res.status, tag).toBe(400);
      const err = await errorOf(res);
      expect(err.code).toBe('MANIFEST_INVALID');
      expect(err.detail).toMatchObject({ reason });
    }
  });
});

describe('tag lists', () => {
  it('bounds the whole tag list across upstream pages (16 MiB), not only each page', async () => {
    fake = await startFakeUpstream({ tagPageSize: 8_000 });
    proxy = await startTestProxy({ upstreams: { [fake.host]: { url: fake.url } }, policies: ALLOW_ALL });
    const img = makeImage(fake, 'acme/app', 'seed');
    // 150 000 tags of 120 characters: about 17.6 MiB in 19 pages of about 1 MiB each.
    const pad = 'x'.repeat(112);
    for (let i = 0; i < 150_000; i++)
      fake.tag('acme/app', `${pad}${String(i).padStart(8, '0')}`, img.manifestDigest);

    const res = await fetch(`${proxy.url}/v2/acme/app/tags/list?ns=${fake.host}`);

    expect(res.status).toBe(503);
    const err = await errorOf(res);
    expect(err.code).toBe('UNAVAILABLE');
    expect(err.message).toContain('bytes of tags');
    expect(err.detail).toMatchObject({ reason: 'tag-list-too-large' });
    expect(fake.count({ kind: 'tags' })).toBeLessThan(19);
  }, 60_000);

  it('walks the upstream pages once for concurrent listings of one repository', async () => {
    fake = await startFakeUpstream({ tagPageSize: 2 });
    proxy = await startTestProxy({ upstreams: { [fake.host]: { url: fake.url } }, policies: ALLOW_ALL });
    const img = makeImage(fake, 'acme/app', 'a');
    for (const t of ['b', 'c', 'd', 'e', 'f']) fake.tag('acme/app', t, img.manifestDigest);
    // The first page is slow, so every listing below arrives while the walk is running.
    fake.fault({ kind: 'tags' }, { delayHeadersMs: 300 }, { times: 1 });

    const answers = await Promise.all(
      Array.from({ length: 4 }, () => fetch(`${proxy!.url}/v2/acme/app/tags/list?ns=${fake!.host}`)),
    );

    for (const res of answers) {
      expect(res.status).toBe(200);
      expect(((await res.json()) as { tags: string[] }).tags).toEqual(['a', 'b', 'c', 'd', 'e', 'f']);
    }
    expect(fake.count({ kind: 'tags' })).toBe(3);
  });
});

describe('token answers', () => {
  it('does not keep a token for the 10 years an upstream says it lasts: an hour at most', async () => {
    fake = await startFakeUpstream({ auth: 'bearer', tokenExpiresIn: 10 * 365 * 24 * 3600 });
    makeImage(fake, 'acme/app', '1.0');
    let now = Date.now();
    const upstream = new UndiciUpstream({
      host: fake.host,
      config: {
        url: fake.url,
        connectTimeout: 2_000,
        headersTimeout: 2_000,
        bodyTimeout: 2_000,
        retries: 0,
        connections: 2,
        insecureSkipTLSVerify: false,
      },
      now: () => now,
    });
    try {
      await upstream.headManifest('acme/app', '1.0');
      now += 30 * 60_000;
      await upstream.headManifest('acme/app', '1.0');
      expect(fake.count({ kind: 'token' })).toBe(1);
      now += 31 * 60_000;
      await upstream.headManifest('acme/app', '1.0');
      expect(fake.count({ kind: 'token' })).toBe(2);
    } finally {
      await upstream.close();
    }
  });
});

describe('slow (trickling) upstream bodies', () => {
  async function start() {
    fake = await startFakeUpstream();
    proxy = await startTestProxy({
      upstreams: { [fake.host]: { url: fake.url, bodyTimeout: '1s', retries: 0 } },
      policies: ALLOW_ALL,
    });
    return { f: fake, p: proxy };
  }

  it('abandons a manifest that trickles in just inside bodyTimeout, caches nothing, and says why', async () => {
    const { f, p } = await start();
    const img = makeImage(f, 'acme/app', '1.0');
    // ~450 bytes, 8 bytes every 200 ms: no pause reaches bodyTimeout (1 s), the whole takes 11 s.
    f.fault({ kind: 'manifest', method: 'GET' }, { delayBodyMs: 200, chunkBytes: 8 }, { times: 1 });

    const res = await fetch(`${p.url}/v2/acme/app/manifests/1.0?ns=${f.host}`);

    expect(res.status).toBe(503);
    expect((await errorOf(res)).message).toMatch(/too slowly/);
    const again = await fetch(`${p.url}/v2/acme/app/manifests/1.0?ns=${f.host}`);
    expect(again.status).toBe(200);
    expect(again.headers.get('docker-content-digest')).toBe(img.manifestDigest);
    expect(Buffer.from(await again.arrayBuffer()).equals(img.manifestBytes)).toBe(true);
  }, 30_000);

  it('abandons a blob fill that trickles (slowloris), never serves it complete, and caches nothing', async () => {
    const { f, p } = await start();
    const img = makeImage(f, 'acme/app', '1.0', { layerSize: 2048 });
    const layer = img.layerDigests[0]!;
    await fetch(`${p.url}/v2/acme/app/manifests/1.0?ns=${f.host}`);
    // 16 bytes every 200 ms: 80 B/s, far below the floor, and no single pause reaches bodyTimeout.
    f.fault({ kind: 'blob', method: 'GET' }, { delayBodyMs: 200, chunkBytes: 16 }, { times: 1 });

    let outcome: string | number;
    try {
      const res = await fetch(`${p.url}/v2/acme/app/blobs/${layer}?ns=${f.host}`);
      outcome = res.status === 200 ? sha256(Buffer.from(await res.arrayBuffer())) : res.status;
    } catch {
      outcome = 'aborted';
    }
    expect(outcome === 503 || outcome === 'aborted', String(outcome)).toBe(true);

    const again = await fetch(`${p.url}/v2/acme/app/blobs/${layer}?ns=${f.host}`);
    expect(again.status).toBe(200);
    expect(again.headers.get('x-pullwarden-cache')).toBe('miss');
    expect(sha256(Buffer.from(await again.arrayBuffer()))).toBe(layer);
  }, 40_000);
});

describe('bodies that do not match their Content-Length', () => {
  for (const [name, fault] of [
    ['short (Content-Length promises more, then FIN)', 'truncate'],
    ['long (more bytes than Content-Length)', 'long'],
    ['understated (Content-Length says less, connection closed after)', 'understated'],
  ] as const) {
    it(`never caches or completes a blob whose body is ${name}`, async () => {
      fake = await startFakeUpstream();
      proxy = await startTestProxy({
        upstreams: { [fake.host]: { url: fake.url, retries: 0 } },
        policies: ALLOW_ALL,
      });
      const img = makeImage(fake, 'acme/app', '1.0', { layerSize: 256 * 1024 });
      const layer = img.layerDigests[0]!;
      const size = img.layers[0]!.length;
      await fetch(`${proxy.url}/v2/acme/app/manifests/1.0?ns=${fake.host}`);
      const matcher = { kind: 'blob', method: 'GET' } as const;
      if (fault === 'truncate') fake.fault(matcher, 'truncate', { times: 1 });
      else if (fault === 'long')
        fake.fault(matcher, { headers: { 'content-length': size - 100 } }, { times: 1 });
      else
        fake.fault(matcher, { headers: { 'content-length': size - 100, connection: 'close' } }, { times: 1 });

      let outcome: string | number;
      try {
        const res = await fetch(`${proxy.url}/v2/acme/app/blobs/${layer}?ns=${fake.host}`);
        const body = Buffer.from(await res.arrayBuffer());
        outcome = res.status === 200 ? `200 with ${body.length} bytes` : res.status;
      } catch {
        outcome = 'aborted';
      }
      expect(outcome === 'aborted' || outcome === 503, String(outcome)).toBe(true);

      const again = await fetch(`${proxy.url}/v2/acme/app/blobs/${layer}?ns=${fake.host}`);
      expect(again.status).toBe(200);
      expect(again.headers.get('x-pullwarden-cache')).toBe('miss');
      expect(sha256(Buffer.from(await again.arrayBuffer()))).toBe(layer);
    });
  }
});

describe('deeply nested JSON', () => {
  it('refuses a referrers index with 200 000 levels of annotations as invalid, not with an internal error', async () => {
    fake = await startFakeUpstream();
    proxy = await startTestProxy({ upstreams: { [fake.host]: { url: fake.url } }, policies: ALLOW_ALL });
    const img = makeImage(fake, 'acme/app', '1.0');
    const n = 200_000;
    const deep = `${'{"a":'.repeat(n)}"x"${'}'.repeat(n)}`;
    const index = `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"${img.mediaType}","digest":"${img.manifestDigest}","size":${img.manifestBytes.length},"artifactType":"x","annotations":${deep}}]}`;
    fake.putManifest(
      'acme/app',
      `sha256-${img.manifestDigest.slice(7)}`,
      index,
      'application/vnd.oci.image.index.v1+json',
    );

    const res = await fetch(`${proxy.url}/v2/acme/app/referrers/${img.manifestDigest}?ns=${fake.host}`);

    expect(res.status).toBe(400);
    const err = await errorOf(res);
    expect(err.code).toBe('MANIFEST_INVALID');
    expect(err.detail).toMatchObject({ reason: 'too-deep' });
    // The proxy is fine: the image itself still pulls.
    expect((await fetch(`${proxy.url}/v2/acme/app/manifests/1.0?ns=${fake.host}`)).status).toBe(200);
  });
});

describe('error bodies', () => {
  it('does not wait for an error body that trickles in: the failure is answered at once', async () => {
    fake = await startFakeUpstream();
    proxy = await startTestProxy({
      upstreams: { [fake.host]: { url: fake.url, retries: 0, bodyTimeout: '5s' } },
      policies: ALLOW_ALL,
    });
    makeImage(fake, 'acme/app', '1.0');
    // A 500 whose ~70-byte error body comes one byte a second: 70 s if anyone waited for it.
    fake.fault(
      { kind: 'manifest', method: 'GET' },
      { status: 500, delayBodyMs: 1_000, chunkBytes: 1 },
      { times: 1 },
    );

    const res = await fetch(`${proxy.url}/v2/acme/app/manifests/1.0?ns=${fake.host}`);

    expect(res.status).toBe(503);
    expect((await errorOf(res)).message).toContain('answered 500');
  }, 20_000);
});

describe('oversized upstream headers', () => {
  it('answers 503 for an upstream whose response headers are huge (a 1 MiB WWW-Authenticate), and stays up', async () => {
    fake = await startFakeUpstream();
    proxy = await startTestProxy({
      upstreams: { [fake.host]: { url: fake.url, retries: 0 } },
      policies: ALLOW_ALL,
    });
    const img = makeImage(fake, 'acme/app', '1.0');
    const huge = `Bearer realm="${fake.url}/token",service="${'s'.repeat(1024 * 1024)}"`;
    fake.fault({ kind: 'manifest' }, { headers: { 'www-authenticate': huge } }, { times: 1 });

    const res = await fetch(`${proxy.url}/v2/acme/app/manifests/1.0?ns=${fake.host}`);

    expect(res.status).toBe(503);
    expect((await errorOf(res)).code).toBe('UNAVAILABLE');
    const again = await fetch(`${proxy.url}/v2/acme/app/manifests/1.0?ns=${fake.host}`);
    expect(again.status).toBe(200);
    expect(again.headers.get('docker-content-digest')).toBe(img.manifestDigest);
  });
});
