import type { Readable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import type { Digest } from '../../src/oci/index.ts';
import { UndiciUpstream } from '../../src/upstream/index.ts';
import type { UndiciUpstreamConfig, UpstreamRequestInfo } from '../../src/upstream/index.ts';
import { registryFailure as failure } from '../support/registry-error.ts';
import { makeImage, makeIndex, makeReferrer, startFakeUpstream } from '../support/fake-upstream.ts';
import type { FakeUpstream, FakeUpstreamOptions } from '../support/fake-upstream.ts';

let fake: FakeUpstream | undefined;
let upstream: UndiciUpstream | undefined;

afterEach(async () => {
  await upstream?.close();
  await fake?.close();
  upstream = undefined;
  fake = undefined;
});

interface Setup {
  fake: FakeUpstream;
  upstream: UndiciUpstream;
  requests: UpstreamRequestInfo[];
}

async function setup(
  fakeOptions: FakeUpstreamOptions = {},
  config: Partial<UndiciUpstreamConfig> = {},
): Promise<Setup> {
  fake = await startFakeUpstream(fakeOptions);
  const requests: UpstreamRequestInfo[] = [];
  upstream = new UndiciUpstream({
    host: fake.host,
    config: {
      url: fake.url,
      connectTimeout: 2_000,
      headersTimeout: 2_000,
      bodyTimeout: 2_000,
      retries: 2,
      connections: 4,
      insecureSkipTLSVerify: false,
      ...config,
    },
    retryDelayMs: 5,
    onRequest: (info) => requests.push(info),
  });
  return { fake, upstream, requests };
}

async function readAll(body: Readable): Promise<Buffer> {
  return Buffer.concat((await body.toArray()) as Buffer[]);
}

describe('UndiciUpstream authentication', () => {
  it('fetches an anonymous bearer token after a challenge and retries once', async () => {
    const { fake, upstream } = await setup({ auth: 'bearer' });
    const image = makeImage(fake, 'library/nginx', '1.27');

    const m = await upstream.getManifest('library/nginx', '1.27');

    expect(m.digest).toBe(image.manifestDigest);
    expect(m.bytes.equals(image.manifestBytes)).toBe(true);
    expect(fake.count({ kind: 'token' })).toBe(1);
    expect(fake.requests.find((r) => r.kind === 'token')?.authorization).toBeUndefined();
    expect(fake.count({ kind: 'manifest' })).toBe(2);
    expect(fake.requests.filter((r) => r.kind === 'manifest').map((r) => r.status)).toEqual([401, 200]);
  });

  it('reuses a token per scope and fetches a new scope token up front', async () => {
    const { fake, upstream } = await setup({ auth: 'bearer' });
    const a = makeImage(fake, 'team/a', 'v1');
    makeImage(fake, 'team/b', 'v1');

    await upstream.getManifest('team/a', 'v1');
    await upstream.headManifest('team/a', 'v1');
    const blob = await upstream.getBlob('team/a', a.layerDigests[0] as Digest);
    await readAll(blob.body);
    expect(fake.count({ kind: 'token' })).toBe(1);

    await upstream.getManifest('team/b', 'v1');
    expect(fake.count({ kind: 'token' })).toBe(2);
    // The realm is known by now, so the new scope costs no 401.
    expect(
      fake.requests.filter((r) => r.repo === 'team/b' && r.kind === 'manifest').map((r) => r.status),
    ).toEqual([200]);
  });

  it('sends configured credentials to the token realm', async () => {
    const { fake, upstream } = await setup(
      { auth: 'bearer', username: 'robot', password: 's3cret' },
      { username: 'robot', password: 's3cret' },
    );
    makeImage(fake, 'private/app', 'v1');

    await upstream.getManifest('private/app', 'v1');

    const token = fake.requests.find((r) => r.kind === 'token');
    expect(token?.authorization).toBe(`Basic ${Buffer.from('robot:s3cret').toString('base64')}`);
    // The registry itself only ever sees the bearer token.
    for (const r of fake.requests.filter((x) => x.kind === 'manifest' && x.authorization !== undefined)) {
      expect(r.authorization).toMatch(/^Bearer /);
    }
  });

  it('maps a token service that refuses the credentials to DENIED without echoing them', async () => {
    const { fake, upstream } = await setup(
      { auth: 'bearer', username: 'robot', password: 's3cret' },
      { username: 'robot', password: 'wrong' },
    );
    makeImage(fake, 'private/app', 'v1');

    const err = await failure(upstream.getManifest('private/app', 'v1'));

    expect(err.code).toBe('DENIED');
    expect(err.message).not.toContain('wrong');
  });

  it('answers a basic challenge with credentials and sends them up front afterwards', async () => {
    const { fake, upstream } = await setup({ auth: 'basic' }, { username: 'user', password: 'secret' });
    makeImage(fake, 'app', 'v1');

    await upstream.getManifest('app', 'v1');
    await upstream.headManifest('app', 'v1');

    expect(fake.requests.map((r) => r.status)).toEqual([401, 200, 200]);
  });

  it('maps a basic challenge without configured credentials to DENIED', async () => {
    const { fake, upstream } = await setup({ auth: 'basic' });
    makeImage(fake, 'app', 'v1');

    const err = await failure(upstream.getManifest('app', 'v1'));

    expect(err.code).toBe('DENIED');
    expect(err.message).toContain('refused access to app');
  });
});

describe('UndiciUpstream manifests', () => {
  it('resolves a tag with HEAD without downloading the manifest', async () => {
    const { fake, upstream } = await setup();
    const image = makeImage(fake, 'library/nginx', '1.27');

    const head = await upstream.headManifest('library/nginx', '1.27');

    expect(head).toEqual({
      digest: image.manifestDigest,
      mediaType: image.mediaType,
      size: image.manifestBytes.length,
    });
    expect(fake.count({ kind: 'manifest', method: 'GET' })).toBe(0);
    expect(fake.requests[0]?.accept).toContain('application/vnd.oci.image.index.v1+json');
  });

  it('falls back to GET when HEAD carries no Docker-Content-Digest', async () => {
    const { fake, upstream } = await setup({ omitDigestHeader: true });
    const image = makeImage(fake, 'library/nginx', '1.27');

    const head = await upstream.headManifest('library/nginx', '1.27');

    expect(head.digest).toBe(image.manifestDigest);
    expect(fake.count({ kind: 'manifest', method: 'HEAD' })).toBe(1);
    expect(fake.count({ kind: 'manifest', method: 'GET' })).toBe(1);
  });

  it('serves an index byte-exact with its media type', async () => {
    const { fake, upstream } = await setup();
    const index = makeIndex(fake, 'multi', 'latest');

    const m = await upstream.getManifest('multi', index.indexDigest);

    expect(m.mediaType).toBe('application/vnd.oci.image.index.v1+json');
    expect(m.bytes.equals(index.indexBytes)).toBe(true);
  });

  it('maps 404 to MANIFEST_UNKNOWN, or NAME_UNKNOWN when the upstream says the repository is unknown', async () => {
    const { fake, upstream } = await setup();
    makeImage(fake, 'library/nginx', '1.27');

    expect((await failure(upstream.getManifest('library/nginx', 'nope'))).code).toBe('MANIFEST_UNKNOWN');
    expect((await failure(upstream.headManifest('library/nginx', 'nope'))).code).toBe('MANIFEST_UNKNOWN');
    expect((await failure(upstream.getManifest('missing/repo', 'v1'))).code).toBe('NAME_UNKNOWN');
  });

  it('rejects bytes that do not match the requested digest as UNAVAILABLE', async () => {
    const { fake, upstream } = await setup();
    const image = makeImage(fake, 'app', 'v1');
    fake.fault({ kind: 'manifest' }, 'wrong-bytes');

    const byDigest = await failure(upstream.getManifest('app', image.manifestDigest));
    expect(byDigest.code).toBe('UNAVAILABLE');
    expect(byDigest.message).toContain('do not match digest');

    // For a tag, the upstream's Docker-Content-Digest is the promise the bytes must keep.
    const byTag = await failure(upstream.getManifest('app', 'v1'));
    expect(byTag.code).toBe('UNAVAILABLE');
  });

  it('refuses a manifest larger than 4 MiB', async () => {
    const { fake, upstream } = await setup();
    const big = Buffer.from(JSON.stringify({ schemaVersion: 2, pad: 'x'.repeat(4 * 1024 * 1024) }));
    fake.putManifest('app', 'big', big, 'application/vnd.oci.image.manifest.v1+json');

    const err = await failure(upstream.getManifest('app', 'big'));

    expect(err.code).toBe('MANIFEST_INVALID');
  });

  it('retries a manifest whose connection breaks mid-body', async () => {
    const { fake, upstream } = await setup();
    const image = makeImage(fake, 'app', 'v1');
    fake.fault({ kind: 'manifest' }, 'reset-mid-body', { times: 1 });

    const m = await upstream.getManifest('app', 'v1');

    expect(m.digest).toBe(image.manifestDigest);
    expect(fake.count({ kind: 'manifest' })).toBe(2);
  });
});

describe('UndiciUpstream failures', () => {
  it('maps 429 to TOOMANYREQUESTS with the Retry-After seconds', async () => {
    const { fake, upstream } = await setup();
    makeImage(fake, 'app', 'v1');
    fake.fault({ kind: 'manifest' }, { status: 429, retryAfter: 7 });

    const err = await failure(upstream.headManifest('app', 'v1'));

    expect(err.code).toBe('TOOMANYREQUESTS');
    expect(err.retryAfter).toBe(7);
  });

  it('maps a persistent 500 to UNAVAILABLE after one retry', async () => {
    const { fake, upstream } = await setup();
    makeImage(fake, 'app', 'v1');
    fake.fault({ kind: 'manifest' }, { status: 500 });

    const err = await failure(upstream.getManifest('app', 'v1'));

    expect(err.code).toBe('UNAVAILABLE');
    expect(err.message).toContain(fake.host);
    expect(fake.count({ kind: 'manifest' })).toBe(2);
  });

  it('recovers from a single 500', async () => {
    const { fake, upstream } = await setup();
    makeImage(fake, 'app', 'v1');
    fake.fault({ kind: 'manifest' }, { status: 503 }, { times: 1 });

    await upstream.headManifest('app', 'v1');

    expect(fake.count({ kind: 'manifest' })).toBe(2);
  });

  it('retries a connection reset before headers up to config.retries times', async () => {
    const { fake, upstream, requests } = await setup({}, { retries: 2 });
    const image = makeImage(fake, 'app', 'v1');
    fake.fault({ kind: 'manifest' }, 'reset-before-headers', { times: 2 });

    const head = await upstream.headManifest('app', 'v1');

    expect(head.digest).toBe(image.manifestDigest);
    expect(fake.count({ kind: 'manifest' })).toBe(3);
    expect(requests.map((r) => r.status)).toEqual(['error', 'error', 200]);
  });

  it('gives up on connection resets after config.retries with UNAVAILABLE', async () => {
    const { fake, upstream } = await setup({}, { retries: 1 });
    makeImage(fake, 'app', 'v1');
    fake.fault({ kind: 'manifest' }, 'reset-before-headers');

    const err = await failure(upstream.headManifest('app', 'v1'));

    expect(err.code).toBe('UNAVAILABLE');
    expect(err.cause).toBeDefined();
    expect(fake.count({ kind: 'manifest' })).toBe(2);
  });

  it('fails with UNAVAILABLE when headers do not arrive within headersTimeout', async () => {
    const { fake, upstream } = await setup({}, { headersTimeout: 300 });
    makeImage(fake, 'app', 'v1');
    fake.fault({ kind: 'manifest' }, { delayHeadersMs: 10_000 });

    const started = Date.now();
    const err = await failure(upstream.headManifest('app', 'v1'));

    expect(err.code).toBe('UNAVAILABLE');
    expect(err.message).toContain('no response within 300 ms');
    // Not retried: a slow upstream is alive, and retrying would multiply the wait.
    expect(fake.count({ kind: 'manifest' })).toBe(1);
    expect(Date.now() - started).toBeLessThan(3_000);
  });

  it('maps an unreachable upstream to UNAVAILABLE naming the host', async () => {
    const { fake, upstream } = await setup({}, { retries: 1 });
    await fake.close();

    const err = await failure(upstream.headManifest('app', 'v1'));

    expect(err.code).toBe('UNAVAILABLE');
    expect(err.message).toContain(fake.host);
  });
});

// The fake's CDN listens on 127.0.0.1 like everything in tests: a redirect there must be allowed.
const cdnAllowed: Partial<UndiciUpstreamConfig> = { redirects: { allow: ['127.0.0.1'] } };

describe('UndiciUpstream blobs', () => {
  it('follows a blob redirect to another origin without the Authorization header', async () => {
    const { fake, upstream } = await setup({ auth: 'bearer', redirectBlobs: true }, cdnAllowed);
    const image = makeImage(fake, 'library/nginx', '1.27', { layers: 1, layerSize: 256 * 1024 });
    const digest = image.layerDigests[0] as Digest;

    const blob = await upstream.getBlob('library/nginx', digest);
    const bytes = await readAll(blob.body);

    expect(bytes.equals(image.layers[0] ?? Buffer.alloc(0))).toBe(true);
    expect(blob.size).toBe(256 * 1024);
    const cdn = fake.requests.filter((r) => r.origin === 'cdn');
    expect(cdn).toHaveLength(1);
    expect(cdn[0]?.authorization).toBeUndefined();
    const redirected = fake.requests.find(
      (r) => r.origin === 'registry' && r.kind === 'blob' && r.status === 307,
    );
    expect(redirected?.authorization).toMatch(/^Bearer /);
  });

  it('answers headBlob with the size and no body', async () => {
    const { fake, upstream } = await setup({ redirectBlobs: true }, cdnAllowed);
    const image = makeImage(fake, 'app', 'v1', { layerSize: 4096 });

    expect(await upstream.headBlob('app', image.layerDigests[0] as Digest)).toEqual({ size: 4096 });
    expect(fake.count({ method: 'GET' })).toBe(0);
  });

  it('maps an unknown blob to BLOB_UNKNOWN', async () => {
    const { upstream } = await setup();
    const missing = `sha256:${'0'.repeat(64)}` as Digest;

    expect((await failure(upstream.getBlob('app', missing))).code).toBe('BLOB_UNKNOWN');
    expect((await failure(upstream.headBlob('app', missing))).code).toBe('BLOB_UNKNOWN');
  });

  it('does not retry a blob body that breaks while streaming, and reports UNAVAILABLE', async () => {
    const { fake, upstream } = await setup();
    const image = makeImage(fake, 'app', 'v1', { layerSize: 1024 * 1024 });
    fake.fault({ kind: 'blob' }, 'reset-mid-body', { times: 1 });

    const blob = await upstream.getBlob('app', image.layerDigests[0] as Digest);
    const err = await failure(readAll(blob.body));

    expect(err.code).toBe('UNAVAILABLE');
    expect(fake.count({ kind: 'blob' })).toBe(1);
  });

  it('reports a truncated blob body as UNAVAILABLE', async () => {
    const { fake, upstream } = await setup();
    const image = makeImage(fake, 'app', 'v1', { layerSize: 64 * 1024 });
    fake.fault({ kind: 'blob' }, 'truncate', { times: 1 });

    const blob = await upstream.getBlob('app', image.layerDigests[0] as Digest);

    expect((await failure(readAll(blob.body))).code).toBe('UNAVAILABLE');
  });

  it('reports a blob body that stalls longer than bodyTimeout as UNAVAILABLE', async () => {
    const { fake, upstream } = await setup({}, { bodyTimeout: 300 });
    const image = makeImage(fake, 'app', 'v1', { layerSize: 64 * 1024 });
    fake.fault({ kind: 'blob' }, { delayBodyMs: 5_000, chunkBytes: 1024 });

    const blob = await upstream.getBlob('app', image.layerDigests[0] as Digest);
    const err = await failure(readAll(blob.body));

    expect(err.code).toBe('UNAVAILABLE');
    expect(err.message).toContain('stalled');
  });

  it('passes a caller abort through instead of retrying or mapping it', async () => {
    const { fake, upstream } = await setup();
    const image = makeImage(fake, 'app', 'v1');
    fake.fault({ kind: 'blob' }, { delayHeadersMs: 5_000 });
    const controller = new AbortController();
    setTimeout(() => controller.abort(new Error('client went away')), 100);

    await expect(
      upstream.getBlob('app', image.layerDigests[0] as Digest, { signal: controller.signal }),
    ).rejects.toThrow('client went away');
    expect(fake.count({ kind: 'blob' })).toBe(1);
  });

  it('releases the upstream connection when the consumer destroys the body', async () => {
    const { fake, upstream } = await setup({}, { connections: 1 });
    const image = makeImage(fake, 'app', 'v1', { layerSize: 4 * 1024 * 1024 });
    const digest = image.layerDigests[0] as Digest;

    const first = await upstream.getBlob('app', digest);
    first.body.destroy();
    // With one connection per origin, this only completes if the first body let go of it.
    const second = await upstream.getBlob('app', digest);
    expect((await readAll(second.body)).length).toBe(4 * 1024 * 1024);
  });
});

describe('UndiciUpstream tags and referrers', () => {
  it('passes tag list pages and the Link header through', async () => {
    const { fake, upstream } = await setup();
    const image = makeImage(fake, 'app', 'a');
    for (const t of ['b', 'c', 'd']) fake.tag('app', t, image.manifestDigest);

    const page = await upstream.listTags('app', { n: 2 });
    expect(JSON.parse(page.body.toString())).toEqual({ name: 'app', tags: ['a', 'b'] });
    expect(page.link).toBe('</v2/app/tags/list?last=b&n=2>; rel="next"');

    const next = await upstream.listTags('app', { n: 2, last: 'b' });
    expect(JSON.parse(next.body.toString())).toEqual({ name: 'app', tags: ['c', 'd'] });
    expect(next.link).toBeUndefined();

    expect((await failure(upstream.listTags('nope', {}))).code).toBe('NAME_UNKNOWN');
  });

  it('returns undefined for referrers when the upstream has no referrers API', async () => {
    const { fake, upstream } = await setup();
    const image = makeImage(fake, 'app', 'v1');

    expect(await upstream.getReferrers('app', image.manifestDigest as Digest, undefined)).toBeUndefined();
  });

  it('returns the referrers index with the filter the upstream applied', async () => {
    const { fake, upstream } = await setup({ referrersApi: true });
    const image = makeImage(fake, 'app', 'v1');
    const subject = {
      digest: image.manifestDigest,
      size: image.manifestBytes.length,
      mediaType: image.mediaType,
    };
    const sig = makeReferrer(fake, 'app', subject, 'application/vnd.dev.cosign.artifact.sig.v1+json');
    makeReferrer(fake, 'app', subject, 'application/spdx+json');

    const answer = await upstream.getReferrers(
      'app',
      image.manifestDigest as Digest,
      'application/vnd.dev.cosign.artifact.sig.v1+json',
    );

    expect(answer?.mediaType).toBe('application/vnd.oci.image.index.v1+json');
    expect(answer?.filtersApplied).toBe('artifactType');
    const index = JSON.parse(answer?.body.toString() ?? '{}') as { manifests: { digest: string }[] };
    expect(index.manifests.map((d) => d.digest)).toEqual([sig.digest]);
  });
});

describe('UndiciUpstream request hook', () => {
  it('reports every exchange with kind and status', async () => {
    const { fake, upstream, requests } = await setup({ auth: 'bearer' });
    makeImage(fake, 'app', 'v1');

    await upstream.headManifest('app', 'v1');

    expect(requests.map((r) => [r.method, r.kind, r.status])).toEqual([
      ['HEAD', 'manifest', 401],
      ['GET', 'token', 200],
      ['HEAD', 'manifest', 200],
    ]);
    expect(requests.every((r) => r.host === fake.host && r.durationMs >= 0)).toBe(true);
  });
});
