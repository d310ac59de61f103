/**
 * A blob is as large as the admitted manifest that names it declares, and not a byte larger: an
 * upstream that announces or sends more is cut at that size (never hashed up to storage.maxBlobSize,
 * never cached), and says why in the error, the log and a metric. The fake upstream lies with
 * `{ body }` faults and counts what the proxy really took off the socket.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { FsBlobStore } from '../../src/cache/index.ts';
import { loadConfig } from '../../src/config/index.ts';
import { openMetadataStore } from '../../src/metadata/index.ts';
import type { MetadataStore } from '../../src/metadata/index.ts';
import { parseDigest } from '../../src/oci/index.ts';
import { RegistryService } from '../../src/service/index.ts';
import { UndiciUpstream } from '../../src/upstream/index.ts';
import { startTestProxy } from '../support/app.ts';
import type { TestProxy } from '../support/app.ts';
import { makeImage, startFakeUpstream } from '../support/fake-upstream.ts';
import type { FakeImage, FakeUpstream } from '../support/fake-upstream.ts';

/** Far more than any socket buffer between two loopback processes holds. */
const LIE_BYTES = 64 * 1024 * 1024;
const LAYER_BYTES = 4096;

async function metric(p: TestProxy, name: string): Promise<string[]> {
  const text = await (await fetch(`${p.url}/metrics`)).text();
  return text.split('\n').filter((l) => l.startsWith(name));
}

/** The body, or the error reading it ended with. */
async function bodyOf(res: Response): Promise<Buffer | Error> {
  try {
    return Buffer.from(await res.arrayBuffer());
  } catch (err) {
    return err as Error;
  }
}

describe('blob downloads bounded by the admitted descriptor size', () => {
  let fake: FakeUpstream;
  let proxy: TestProxy;
  let img: FakeImage;
  let layer: string;
  const lie = randomBytes(LIE_BYTES);

  beforeAll(async () => {
    fake = await startFakeUpstream();
    proxy = await startTestProxy({
      upstreams: { [fake.host]: { url: fake.url, retries: 0 } },
      policies: [{ name: 'allow-all', match: ['**'], action: 'allow' }],
    });
  });
  afterAll(async () => {
    await proxy?.close();
    await fake?.close();
  });
  afterEach(() => {
    fake.clearFaults();
  });

  async function admitted(repo: string): Promise<void> {
    img = makeImage(fake, repo, '1.0', { layerSize: LAYER_BYTES });
    layer = img.layerDigests[0]!;
    const pulled = await fetch(`${proxy.url}/v2/${repo}/manifests/1.0?ns=${fake.host}`);
    expect(pulled.status).toBe(200);
    await pulled.arrayBuffer();
  }

  const blobGets = (repo: string) => fake.requests.filter((r) => r.kind === 'blob' && r.repo === repo);

  /** Nothing of the lie was cached: the honest answer is fetched from upstream and served. */
  async function expectFetchedAgain(repo: string): Promise<void> {
    const before = blobGets(repo).length;
    const again = await fetch(`${proxy.url}/v2/${repo}/blobs/${layer}?ns=${fake.host}`);
    expect(again.status).toBe(200);
    expect(Buffer.from(await again.arrayBuffer()).equals(img.layers[0]!)).toBe(true);
    expect(blobGets(repo).length).toBe(before + 1);
  }

  it('refuses a Content-Length other than the declared size before reading the body', async () => {
    await admitted('acme/announced');
    fake.fault({ kind: 'blob', method: 'GET', repo: 'acme/announced' }, { body: lie }, { times: 1 });

    const res = await fetch(`${proxy.url}/v2/acme/announced/blobs/${layer}?ns=${fake.host}`);

    expect(res.status).toBe(503);
    const body = (await res.json()) as { errors: { code: string; message: string; detail: unknown }[] };
    expect(body.errors[0]).toMatchObject({
      code: 'UNAVAILABLE',
      message: expect.stringContaining(`announced ${LIE_BYTES} bytes`),
      detail: { reason: 'blob-size-mismatch', size: LAYER_BYTES, received: LIE_BYTES },
    });
    const sent = blobGets('acme/announced').at(-1)?.sentBytes ?? 0;
    expect(sent).toBeLessThan(LIE_BYTES / 2);
    expect(await metric(proxy, 'pullwarden_upstream_blobs_refused_total')).toContainEqual(
      `pullwarden_upstream_blobs_refused_total{upstream="${fake.host}",reason="size-mismatch"} 1`,
    );

    await expectFetchedAgain('acme/announced');
  });

  it('cuts a body without Content-Length at the declared size and caches nothing', async () => {
    await admitted('acme/streamed');
    fake.fault(
      { kind: 'blob', method: 'GET', repo: 'acme/streamed' },
      { body: lie, chunked: true },
      { times: 1 },
    );

    const res = await fetch(`${proxy.url}/v2/acme/streamed/blobs/${layer}?ns=${fake.host}`);

    if (res.status === 200) {
      // Headers went out before the first byte arrived: the declared size, then a cut connection.
      expect(res.headers.get('content-length')).toBe(String(LAYER_BYTES));
      const got = await bodyOf(res);
      expect(got instanceof Error || !got.equals(img.layers[0]!)).toBe(true);
    } else {
      // The first chunk was already too many bytes when the status was chosen.
      expect(res.status).toBe(503);
      const body = (await res.json()) as { errors: { code: string; detail: unknown }[] };
      expect(body.errors[0]).toMatchObject({
        code: 'UNAVAILABLE',
        detail: { reason: 'blob-larger-than-declared', size: LAYER_BYTES },
      });
    }
    // The proxy stopped reading: the rest of the 64 MiB never left the fake (bar socket buffers).
    const sent = blobGets('acme/streamed').at(-1)?.sentBytes ?? 0;
    expect(sent).toBeLessThan(LIE_BYTES / 2);
    expect(await metric(proxy, 'pullwarden_upstream_blobs_refused_total')).toContainEqual(
      `pullwarden_upstream_blobs_refused_total{upstream="${fake.host}",reason="larger-than-declared"} 1`,
    );

    await expectFetchedAgain('acme/streamed');
  });

  it('refuses a body without Content-Length that ends short of the declared size, with its reason', async () => {
    await admitted('acme/short');
    const short = img.layers[0]!.subarray(0, LAYER_BYTES / 2);
    fake.fault(
      { kind: 'blob', method: 'GET', repo: 'acme/short' },
      { body: short, chunked: true },
      { times: 1 },
    );

    const res = await fetch(`${proxy.url}/v2/acme/short/blobs/${layer}?ns=${fake.host}`);

    if (res.status === 200) {
      // Headers went out with the declared size; the body then ends short and the connection is cut.
      const got = await bodyOf(res);
      expect(got instanceof Error || !got.equals(img.layers[0]!)).toBe(true);
    } else {
      expect(res.status).toBe(503);
      expect(await res.json()).toMatchObject({
        errors: [
          { code: 'UNAVAILABLE', detail: { reason: 'blob-shorter-than-declared', size: LAYER_BYTES } },
        ],
      });
    }
    expect(await metric(proxy, 'pullwarden_upstream_blobs_refused_total')).toContainEqual(
      `pullwarden_upstream_blobs_refused_total{upstream="${fake.host}",reason="shorter-than-declared"} 1`,
    );

    await expectFetchedAgain('acme/short');
  });

  it('refuses a blob HEAD whose size is not the declared one', async () => {
    await admitted('acme/headed');
    fake.fault(
      { kind: 'blob', method: 'HEAD', repo: 'acme/headed' },
      { headers: { 'content-length': LAYER_BYTES + 1 } },
      { times: 1 },
    );
    const res = await fetch(`${proxy.url}/v2/acme/headed/blobs/${layer}?ns=${fake.host}`, {
      method: 'HEAD',
    });
    expect(res.status).toBe(503);
    const honest = await fetch(`${proxy.url}/v2/acme/headed/blobs/${layer}?ns=${fake.host}`, {
      method: 'HEAD',
    });
    expect(honest.status).toBe(200);
    expect(honest.headers.get('content-length')).toBe(String(LAYER_BYTES));
  });

  it('serves an honest blob of exactly the declared size', async () => {
    await admitted('acme/honest');
    const res = await fetch(`${proxy.url}/v2/acme/honest/blobs/${layer}?ns=${fake.host}`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-length')).toBe(String(LAYER_BYTES));
    expect(Buffer.from(await res.arrayBuffer()).equals(img.layers[0]!)).toBe(true);
  });
});

describe('confirming a blob link while the blob is still being filled', () => {
  let fake: FakeUpstream;
  let dir: string;
  let metadata: MetadataStore;
  let blobs: FsBlobStore;
  let upstream: UndiciUpstream;

  beforeAll(async () => {
    fake = await startFakeUpstream();
    dir = await mkdtemp(join(tmpdir(), 'pw-declared-'));
    const file = join(dir, 'pullwarden.yaml');
    await writeFile(file, `upstreams:\n  "${fake.host}":\n    url: ${fake.url}\n    retries: 0\n`);
    const config = await loadConfig(file, {});
    upstream = new UndiciUpstream({
      host: fake.host,
      config: config.upstreams[fake.host]!,
      maxManifestBytes: 4 * 1024 * 1024,
    });
    blobs = new FsBlobStore({ dir: join(dir, 'data'), maxBytes: 1 << 30 });
    await blobs.init();
    metadata = await openMetadataStore({ url: 'sqlite://:memory:', namespace: 'test' });
  });
  afterAll(async () => {
    await upstream?.close();
    await blobs?.close();
    await metadata?.close();
    await fake?.close();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  it('reads the other repository’s answer no further than the running fill’s size', async () => {
    const bytes = randomBytes(LAYER_BYTES);
    const digest = parseDigest(fake.putBlob(undefined, bytes));
    const service = new RegistryService({
      upstreams: new Map([[fake.host, { upstream, tagTTL: 60_000, staleIfError: 0 }]]),
      blobs,
      metadata,
      logger: pino({ level: 'silent' }),
      maxManifestBytes: 4 * 1024 * 1024,
    });
    // Repository a fills slowly; repository b joins the fill and must show the bytes itself.
    fake.fault({ kind: 'blob', method: 'GET', repo: 'acme/a' }, { delayBodyMs: 100, chunkBytes: 1024 });
    fake.fault(
      { kind: 'blob', method: 'GET', repo: 'acme/b' },
      { body: randomBytes(LIE_BYTES), chunked: true },
    );
    const filling = await service.getBlob({ upstream: fake.host, repository: 'acme/a' }, digest);
    try {
      await expect(
        service.getBlob({ upstream: fake.host, repository: 'acme/b' }, digest),
      ).rejects.toMatchObject({ code: 'UNAVAILABLE' });
      const sent = fake.requests.find((r) => r.kind === 'blob' && r.repo === 'acme/b')?.sentBytes ?? 0;
      expect(sent).toBeGreaterThan(0);
      expect(sent).toBeLessThan(LIE_BYTES / 2);
    } finally {
      filling.release();
    }
  });
});
