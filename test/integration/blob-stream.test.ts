import { get } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { queryAuditDir } from '../../src/audit/index.ts';
import type { AuditRecord } from '../../src/audit/index.ts';
import { pooledChunks } from '../../src/cache/blob-read-stream.ts';
import { startTestProxy } from '../support/app.ts';
import type { TestProxy } from '../support/app.ts';
import { makeImage, sha256, startFakeUpstream } from '../support/fake-upstream.ts';
import type { FakeUpstream } from '../support/fake-upstream.ts';

let fake: FakeUpstream | undefined;
let proxy: TestProxy | undefined;

afterEach(async () => {
  await proxy?.close();
  await fake?.close();
});

const LAYER_SIZE = 4 * 1024 * 1024;

/** A fake upstream and a proxy in front of it that allows everything (both closed after each test). */
async function start(): Promise<{ fake: FakeUpstream; proxy: TestProxy }> {
  const upstream = (fake = await startFakeUpstream());
  proxy = await startTestProxy({
    upstreams: { [upstream.host]: { url: upstream.url } },
    defaultUpstream: upstream.host,
    policies: [{ name: 'allow-all', match: ['**'], action: 'allow' }],
  });
  return { fake: upstream, proxy };
}

describe('blob bodies', () => {
  it('keeps filling a blob when the client that started the fill goes away: the others get it, the cache keeps it', async () => {
    ({ fake, proxy } = await start());
    const img = makeImage(fake, 'acme/app', '1.0', { layerSize: LAYER_SIZE });
    const layer = img.layerDigests[0]!;
    const base = `${proxy.url}/v2/acme/app`;
    expect((await fetch(`${base}/manifests/1.0`)).status).toBe(200);
    fake.resetCounts();
    // A slow upstream body, so that the first client leaves while the fill runs.
    fake.fault({ kind: 'blob', method: 'GET' }, { delayBodyMs: 10, chunkBytes: 128 * 1024 });

    const leaver = new AbortController();
    const first = await fetch(`${base}/blobs/${layer}`, { signal: leaver.signal });
    expect(first.status).toBe(200);
    const reader = first.body!.getReader();
    const chunk = await reader.read();
    expect(chunk.done).toBe(false);
    const follower = fetch(`${base}/blobs/${layer}`).then(async (res) => ({
      status: res.status,
      cache: res.headers.get('x-pullwarden-cache'),
      body: Buffer.from(await res.arrayBuffer()),
    }));
    leaver.abort();
    await reader.cancel().catch(() => undefined);

    const followed = await follower;
    expect(followed.status).toBe(200);
    expect(followed.cache).toBe('joined');
    expect(followed.body.length).toBe(LAYER_SIZE);
    expect(sha256(followed.body)).toBe(layer);
    fake.clearFaults();
    const again = await fetch(`${base}/blobs/${layer}`);
    expect(again.headers.get('x-pullwarden-cache')).toBe('hit');
    expect(sha256(Buffer.from(await again.arrayBuffer()))).toBe(layer);
    expect(fake.count({ kind: 'blob', method: 'GET' })).toBe(1);

    // The client that left has its event too, with the bytes it was sent (less than the blob).
    const events: AuditRecord[] = [];
    for await (const r of queryAuditDir(proxy.config.audit.dir, {})) events.push(r);
    const blobs = events.filter((e) => e.type === 'blob' && e.digest === layer);
    expect(blobs).toHaveLength(3);
    expect(blobs.map((e) => e.cache)).toEqual(expect.arrayContaining(['miss', 'hit']));
    expect(blobs.some((e) => e.bytes < LAYER_SIZE)).toBe(true);
    expect(blobs.filter((e) => e.bytes === LAYER_SIZE)).toHaveLength(2);
  });

  it('reads into a buffer again only once the socket wrote it: a stalled reader and fast ones all get exact bytes', async () => {
    ({ fake, proxy } = await start());
    const size = 24 * 1024 * 1024;
    const slowImg = makeImage(fake, 'acme/slow', '1.0', { layerSize: size });
    const fastImg = makeImage(fake, 'acme/fast', '1.0', { layerSize: 1024 * 1024 });
    const slowLayer = slowImg.layerDigests[0]!;
    const fastLayer = fastImg.layerDigests[0]!;
    const slowUrl = `${proxy.url}/v2/acme/slow/blobs/${slowLayer}`;
    const fastUrl = `${proxy.url}/v2/acme/fast/blobs/${fastLayer}`;
    for (const [repo, layer] of [
      ['acme/slow', slowLayer],
      ['acme/fast', fastLayer],
    ] as const) {
      expect((await fetch(`${proxy.url}/v2/${repo}/manifests/1.0`)).status).toBe(200);
      const warm = await fetch(`${proxy.url}/v2/${repo}/blobs/${layer}`);
      expect(sha256(Buffer.from(await warm.arrayBuffer()))).toBe(layer);
    }

    // A client that reads a little at a time: the socket's buffers fill, and chunks the proxy has
    // read stay queued in it, unwritten, while fast clients keep taking read buffers.
    let slowDone = false;
    const slow = new Promise<Buffer>((resolve, reject) => {
      get(slowUrl, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => {
          chunks.push(chunk);
          res.pause();
          setTimeout(() => res.resume(), 3);
        });
        res.on('end', () => {
          slowDone = true;
          resolve(Buffer.concat(chunks));
        });
        res.on('error', reject);
      }).on('error', reject);
    });
    const fast = async (): Promise<number> => {
      let n = 0;
      while (!slowDone) {
        const res = await fetch(fastUrl);
        expect(sha256(Buffer.from(await res.arrayBuffer()))).toBe(fastLayer);
        n++;
      }
      return n;
    };
    const [slowBody, ...fastCounts] = await Promise.all([slow, fast(), fast(), fast(), fast()]);
    expect(slowBody.length).toBe(size);
    expect(sha256(slowBody)).toBe(slowLayer);
    expect(fastCounts.reduce((a, b) => a + b, 0)).toBeGreaterThan(8);
    // The buffers came back: the next reads reuse them.
    expect(pooledChunks()).toBeGreaterThan(0);
  });
});
