import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { pooledChunks } from '../../../src/cache/blob-read-stream.ts';
import { FsBlobStore } from '../../../src/cache/index.ts';
import type { BlobHandle } from '../../../src/cache/index.ts';
import { digestOf } from '../../../src/oci/index.ts';
import type { Digest } from '../../../src/oci/index.ts';
import type { UpstreamBlob } from '../../../src/upstream/index.ts';

let dir: string;
const stores: FsBlobStore[] = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pullwarden-cache-'));
});

afterEach(async () => {
  for (const store of stores.splice(0)) await store.close();
  await rm(dir, { recursive: true, force: true });
});

async function openStore(maxBytes = 1024 ** 3): Promise<FsBlobStore> {
  const store = await FsBlobStore.open({ dir, maxBytes });
  stores.push(store);
  return store;
}

function sha256(bytes: Buffer): Digest {
  return digestOf(bytes, 'sha256');
}

/** An upstream that answers with `bytes` in small chunks and counts its fetches. */
function upstreamOf(bytes: Buffer, size: number | undefined = bytes.length) {
  const fetch = vi.fn(() => {
    const chunks: Buffer[] = [];
    for (let i = 0; i < bytes.length; i += 1000) chunks.push(bytes.subarray(i, i + 1000));
    return Promise.resolve<UpstreamBlob>({ body: Readable.from(chunks), size });
  });
  return fetch;
}

/** An upstream whose body the test writes by hand. */
function controlledUpstream(size: number | undefined) {
  const body = new PassThrough();
  const fetch = vi.fn(() => Promise.resolve<UpstreamBlob>({ body, size }));
  return { body, fetch };
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** Collects a stream's bytes as they arrive, and how it ended. */
function collect(stream: Readable) {
  const seen = { bytes: Buffer.alloc(0), ended: false, error: undefined as Error | undefined };
  stream.on('data', (chunk: Buffer) => {
    seen.bytes = Buffer.concat([seen.bytes, chunk]);
  });
  stream.on('end', () => {
    seen.ended = true;
  });
  stream.on('error', (err) => {
    seen.error = err;
  });
  return seen;
}

/** Unmounts `path` once nothing holds a file in it open (a descriptor still closing: retried for 5 s). */
async function unmount(path: string): Promise<void> {
  for (let i = 0; ; i++) {
    try {
      execFileSync('umount', [path], { stdio: 'pipe' });
      return;
    } catch (err) {
      if (i >= 50) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

async function filesUnder(path: string): Promise<string[]> {
  const entries = await readdir(path, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
}

async function expectNothingStored(): Promise<void> {
  await vi.waitFor(async () => {
    expect(await filesUnder(join(dir, 'tmp'))).toEqual([]);
  });
  expect(await filesUnder(join(dir, 'blobs'))).toEqual([]);
}

describe('FsBlobStore hits and misses', () => {
  it('fills a missing blob once and serves it from disk afterwards', async () => {
    const store = await openStore();
    const bytes = randomBytes(10_000);
    const digest = sha256(bytes);
    const fetch = upstreamOf(bytes);

    expect(await store.stat(digest)).toBeUndefined();
    expect(await store.open(digest)).toBeUndefined();

    const first = await store.getOrFill(digest, fetch);
    expect(first.state).toBe('miss');
    expect(first.size).toBe(bytes.length);
    expect(await readAll(first.createReadStream())).toEqual(bytes);
    first.release();
    await store.close();

    const second = await store.getOrFill(digest, fetch);
    expect(second.state).toBe('hit');
    expect(await readAll(second.createReadStream())).toEqual(bytes);
    second.release();
    expect(fetch).toHaveBeenCalledTimes(1);
    expect(await store.stat(digest)).toEqual({ size: bytes.length });
    expect(store.stats()).toEqual({ bytes: bytes.length, blobs: 1, fillsInFlight: 0, reservedBytes: 0 });
    const hex = digest.slice('sha256:'.length);
    expect(await filesUnder(join(dir, 'blobs'))).toEqual([
      join(dir, 'blobs', 'sha256', hex.slice(0, 2), hex),
    ]);
  });

  it('stores sha512 blobs and an empty blob', async () => {
    const store = await openStore();
    const bytes = randomBytes(3000);
    const digest = digestOf(bytes, 'sha512');
    const handle = await store.getOrFill(digest, upstreamOf(bytes));
    expect(await readAll(handle.createReadStream())).toEqual(bytes);
    handle.release();

    const empty = sha256(Buffer.alloc(0));
    const emptyHandle = await store.getOrFill(empty, upstreamOf(Buffer.alloc(0)));
    expect(await readAll(emptyHandle.createReadStream())).toEqual(Buffer.alloc(0));
    emptyHandle.release();
    await store.close();
    expect(await store.stat(digest)).toEqual({ size: 3000 });
    expect(await store.stat(empty)).toEqual({ size: 0 });
  });

  it('fills a blob whose upstream sent no Content-Length', async () => {
    const store = await openStore();
    const bytes = randomBytes(5000);
    const digest = sha256(bytes);
    const { body, fetch } = controlledUpstream(undefined);
    const handle = await store.getOrFill(digest, fetch);
    expect(handle.size).toBeUndefined();
    const reading = readAll(handle.createReadStream());
    body.end(bytes);
    expect(await reading).toEqual(bytes);
    handle.release();
    await store.close();
    expect(await store.stat(digest)).toEqual({ size: 5000 });
  });
});

describe('FsBlobStore single flight', () => {
  it('makes one upstream fetch for 16 concurrent requests and gives all of them the whole blob', async () => {
    const store = await openStore();
    const bytes = randomBytes(200_000);
    const digest = sha256(bytes);
    const fetch = upstreamOf(bytes);

    const handles = await Promise.all(Array.from({ length: 16 }, () => store.getOrFill(digest, fetch)));
    expect(fetch).toHaveBeenCalledTimes(1);
    expect(handles.filter((h) => h.state === 'miss')).toHaveLength(1);
    expect(handles.filter((h) => h.state === 'joined')).toHaveLength(15);
    const bodies = await Promise.all(handles.map((h) => readAll(h.createReadStream())));
    for (const body of bodies) expect(body.equals(bytes)).toBe(true);
    for (const h of handles) h.release();
    await store.close();
    expect(await store.stat(digest)).toEqual({ size: bytes.length });
  });

  it('rejects every caller with the upstream error and fetches again next time', async () => {
    const store = await openStore();
    const bytes = randomBytes(100);
    const digest = sha256(bytes);
    const failure = new Error('upstream said 503');
    const failing = vi.fn(() => Promise.reject(failure));

    const results = await Promise.allSettled(
      Array.from({ length: 4 }, () => store.getOrFill(digest, failing)),
    );
    expect(failing).toHaveBeenCalledTimes(1);
    for (const r of results) expect(r).toEqual({ status: 'rejected', reason: failure });
    await expectNothingStored();

    const fetch = upstreamOf(bytes);
    const handle = await store.getOrFill(digest, fetch);
    expect(handle.state).toBe('miss');
    expect(await readAll(handle.createReadStream())).toEqual(bytes);
    handle.release();
    expect(fetch).toHaveBeenCalledTimes(1);
  });
});

describe('FsBlobStore reads during a fill', () => {
  it('delivers bytes to a reader before the fill completes', async () => {
    const store = await openStore();
    const bytes = randomBytes(300_000);
    const digest = sha256(bytes);
    const { body, fetch } = controlledUpstream(bytes.length);

    const handle = await store.getOrFill(digest, fetch);
    const seen = collect(handle.createReadStream());
    body.write(bytes.subarray(0, 100_000));
    await vi.waitFor(() => {
      expect(seen.bytes.length).toBe(100_000);
    });
    expect(seen.ended).toBe(false);
    expect(store.stats().fillsInFlight).toBe(1);

    // A late joiner reads from the start while the fill is still running.
    const joined = await store.getOrFill(digest, fetch);
    expect(joined.state).toBe('joined');
    const late = collect(joined.createReadStream());
    await vi.waitFor(() => {
      expect(late.bytes.length).toBe(100_000);
    });

    body.end(bytes.subarray(100_000));
    await vi.waitFor(() => {
      expect(seen.ended && late.ended).toBe(true);
    });
    expect(seen.bytes.equals(bytes)).toBe(true);
    expect(late.bytes.equals(bytes)).toBe(true);
    expect(fetch).toHaveBeenCalledTimes(1);
    handle.release();
    joined.release();
  });

  it('holds back the end of the body until the digest is verified', async () => {
    const store = await openStore();
    const bytes = randomBytes(1000);
    const digest = sha256(bytes);
    const { body, fetch } = controlledUpstream(bytes.length);
    const handle = await store.getOrFill(digest, fetch);
    const seen = collect(handle.createReadStream());
    const ranged = collect(handle.createReadStream({ start: 0, end: 9 }));
    // All bytes are written but the upstream stream has not ended: nothing is verified yet.
    body.write(bytes);
    await vi.waitFor(() => {
      expect(seen.bytes.length).toBe(999);
      expect(ranged.bytes.length).toBe(9);
    });
    expect(seen.ended || ranged.ended).toBe(false);
    body.end();
    await vi.waitFor(() => {
      expect(seen.ended && ranged.ended).toBe(true);
    });
    expect(seen.bytes.equals(bytes)).toBe(true);
    expect(ranged.bytes.equals(bytes.subarray(0, 10))).toBe(true);
    handle.release();
  });

  it('serves ranges during a fill and after it', async () => {
    const store = await openStore();
    const bytes = randomBytes(500_000);
    const digest = sha256(bytes);
    const { body, fetch } = controlledUpstream(undefined);

    const handle = await store.getOrFill(digest, fetch);
    const during = collect(handle.createReadStream({ start: 123_456, end: 400_000 }));
    const tail = collect(handle.createReadStream({ start: 499_990, end: 499_999 }));
    body.write(bytes.subarray(0, 200_000));
    await vi.waitFor(() => {
      expect(during.bytes.length).toBe(200_000 - 123_456);
    });
    expect(tail.bytes.length).toBe(0);
    body.end(bytes.subarray(200_000));
    await vi.waitFor(() => {
      expect(during.ended && tail.ended).toBe(true);
    });
    expect(during.bytes.equals(bytes.subarray(123_456, 400_001))).toBe(true);
    expect(tail.bytes.equals(bytes.subarray(499_990))).toBe(true);
    handle.release();
    await store.close();

    const hit = await store.open(digest);
    expect(hit?.state).toBe('hit');
    expect(await readAll(hit!.createReadStream({ start: 1, end: 1 }))).toEqual(bytes.subarray(1, 2));
    expect(await readAll(hit!.createReadStream({ start: 499_000, end: 499_999 }))).toEqual(
      bytes.subarray(499_000),
    );
    expect(() => hit!.createReadStream({ start: 0, end: 500_000 })).toThrow(
      expect.objectContaining({ code: 'RANGE_INVALID' }),
    );
    expect(() => hit!.createReadStream({ start: 5, end: 4 })).toThrow(
      expect.objectContaining({ code: 'RANGE_INVALID' }),
    );
    hit!.release();
  });

  it('fails a range that ends after a blob of unknown size', async () => {
    const store = await openStore();
    const bytes = randomBytes(100);
    const digest = sha256(bytes);
    const { body, fetch } = controlledUpstream(undefined);
    const handle = await store.getOrFill(digest, fetch);
    const reading = readAll(handle.createReadStream({ start: 50, end: 100 }));
    body.end(bytes);
    await expect(reading).rejects.toMatchObject({ code: 'RANGE_INVALID' });
    handle.release();
  });

  it('keeps filling when a reader goes away early', async () => {
    const store = await openStore();
    const bytes = randomBytes(300_000);
    const digest = sha256(bytes);
    const { body, fetch } = controlledUpstream(bytes.length);

    const quitter = await store.getOrFill(digest, fetch);
    const stayer = await store.getOrFill(digest, fetch);
    const quitting = quitter.createReadStream();
    const quitSeen = collect(quitting);
    const staySeen = collect(stayer.createReadStream());
    body.write(bytes.subarray(0, 50_000));
    await vi.waitFor(() => {
      expect(quitSeen.bytes.length).toBe(50_000);
    });
    quitting.destroy();
    quitter.release();
    quitter.release(); // idempotent
    body.end(bytes.subarray(50_000));
    await vi.waitFor(() => {
      expect(staySeen.ended).toBe(true);
    });
    expect(staySeen.bytes.equals(bytes)).toBe(true);
    stayer.release();
    await store.close();
    expect(await store.stat(digest)).toEqual({ size: bytes.length });
  });

  it('finishes the fill while a reader does not read', async () => {
    const store = await openStore();
    const bytes = randomBytes(1024 * 1024);
    const digest = sha256(bytes);
    const handle = await store.getOrFill(digest, upstreamOf(bytes));
    const stalled = handle.createReadStream();
    stalled.pause();
    await store.close(); // resolves only when the fill is complete
    expect(await store.stat(digest)).toEqual({ size: bytes.length });
    expect(await readAll(stalled)).toEqual(bytes);
    handle.release();
  });

  it('keeps filling when every caller goes away', async () => {
    const store = await openStore();
    const bytes = randomBytes(100_000);
    const digest = sha256(bytes);
    const handle = await store.getOrFill(digest, upstreamOf(bytes));
    handle.release();
    await store.close();
    expect(await store.stat(digest)).toEqual({ size: bytes.length });
    // A closed store serves what it has and starts no new fills.
    const other = randomBytes(10);
    await expect(store.getOrFill(sha256(other), upstreamOf(other))).rejects.toMatchObject({
      code: 'UNAVAILABLE',
    });
  });
});

describe('FsBlobStore failed fills', () => {
  it('never caches or completes a body that does not match its digest', async () => {
    const store = await openStore();
    const bytes = randomBytes(50_000);
    const digest = sha256(bytes);
    const wrong = Buffer.from(bytes);
    wrong[20_000] = (wrong[20_000]! + 1) % 256;
    const bad = upstreamOf(wrong);

    const handles = await Promise.all([store.getOrFill(digest, bad), store.getOrFill(digest, bad)]);
    const results = await Promise.allSettled(handles.map((h) => readAll(h.createReadStream())));
    for (const r of results) {
      expect(r.status).toBe('rejected');
      expect((r as PromiseRejectedResult).reason).toMatchObject({
        code: 'UNAVAILABLE',
        message: 'upstream blob did not match its digest',
      });
    }
    for (const h of handles) h.release();
    expect(bad).toHaveBeenCalledTimes(1);
    await expectNothingStored();
    expect(await store.stat(digest)).toBeUndefined();

    const good = upstreamOf(bytes);
    const retry = await store.getOrFill(digest, good);
    expect(retry.state).toBe('miss');
    expect(await readAll(retry.createReadStream())).toEqual(bytes);
    retry.release();
    expect(good).toHaveBeenCalledTimes(1);
  });

  it('fails readers that are waiting when the upstream body breaks', async () => {
    const store = await openStore();
    const bytes = randomBytes(100_000);
    const digest = sha256(bytes);
    const { body, fetch } = controlledUpstream(bytes.length);

    const handle = await store.getOrFill(digest, fetch);
    const seen = collect(handle.createReadStream());
    body.write(bytes.subarray(0, 40_000));
    await vi.waitFor(() => {
      expect(seen.bytes.length).toBe(40_000);
    });
    body.destroy(new Error('connection reset'));
    await vi.waitFor(() => {
      expect(seen.error).toBeDefined();
    });
    expect(seen.error).toMatchObject({ code: 'UNAVAILABLE', message: 'upstream blob body failed' });
    expect(seen.ended).toBe(false);
    // A reader created on the failed handle fails too.
    await expect(readAll(handle.createReadStream())).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    handle.release();
    await expectNothingStored();

    const fetchAgain = upstreamOf(bytes);
    const retry = await store.getOrFill(digest, fetchAgain);
    expect(retry.state).toBe('miss');
    expect(await readAll(retry.createReadStream())).toEqual(bytes);
    retry.release();
    expect(fetchAgain).toHaveBeenCalledTimes(1);
  });

  // A real full disk: a 2 MiB tmpfs (root only; CI runs as root and must not skip it).
  it.skipIf(process.getuid?.() !== 0 && process.env['CI'] === undefined)(
    'fails the fill and its readers when the disk fills mid-fill (ENOSPC), and caches nothing',
    async () => {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', dir]);
      try {
        const store = await openStore();
        const bytes = randomBytes(4 * 1024 * 1024);
        const digest = sha256(bytes);
        const handle = await store.getOrFill(digest, upstreamOf(bytes));
        const seen = collect(handle.createReadStream());
        await vi.waitFor(
          () => {
            expect(seen.error).toBeDefined();
          },
          { timeout: 10_000 },
        );
        expect(seen.error).toMatchObject({ code: 'UNAVAILABLE', message: 'blob cache write failed' });
        expect((seen.error?.cause as NodeJS.ErrnoException | undefined)?.code).toBe('ENOSPC');
        expect(seen.ended).toBe(false);
        expect(seen.bytes.length).toBeLessThan(bytes.length);
        handle.release();
        await expectNothingStored();

        // The space came back with the temp file: a blob that fits is stored.
        const small = randomBytes(512 * 1024);
        const fits = await store.getOrFill(sha256(small), upstreamOf(small));
        expect(await readAll(fits.createReadStream())).toEqual(small);
        fits.release();
        await store.close();
        stores.splice(stores.indexOf(store), 1);
      } finally {
        await unmount(dir);
      }
    },
  );

  it('rejects a body shorter or longer than its Content-Length', async () => {
    const store = await openStore();
    const bytes = randomBytes(10_000);
    const digest = sha256(bytes);
    for (const size of [bytes.length + 1, bytes.length - 1]) {
      const handle = await store.getOrFill(digest, upstreamOf(bytes, size));
      await expect(readAll(handle.createReadStream())).rejects.toMatchObject({
        code: 'UNAVAILABLE',
        message: 'upstream blob size did not match its Content-Length',
      });
      handle.release();
      await expectNothingStored();
    }
  });
});

describe('FsBlobStore eviction', () => {
  const blobs = Array.from({ length: 5 }, () => randomBytes(100));
  const digests = blobs.map(sha256);
  const put = (store: FsBlobStore, i: number) => store.putBytes(digests[i]!, blobs[i]!);
  const cached = async (store: FsBlobStore) => {
    const present: number[] = [];
    for (const [i, d] of digests.entries()) if (await store.stat(d)) present.push(i);
    return present;
  };

  it('evicts the least recently used blob when over the limit', async () => {
    const store = await openStore(250);
    await put(store, 0);
    await put(store, 1);
    (await store.open(digests[0]!))!.release(); // 0 is now more recent than 1
    await put(store, 2);
    await store.close();
    expect(await cached(store)).toEqual([0, 2]);
    expect(store.stats()).toMatchObject({ bytes: 200, blobs: 2 });
    expect(await filesUnder(join(dir, 'blobs'))).toHaveLength(2);
  });

  it('never evicts a blob with an open handle', async () => {
    const store = await openStore(250);
    await put(store, 0);
    await put(store, 1);
    const held = (await store.open(digests[0]!))!;
    const heldTwice = (await store.open(digests[0]!))!;
    (await store.open(digests[1]!))!.release(); // 0 is the least recently used
    heldTwice.release();
    heldTwice.release(); // idempotent: `held` still protects blob 0
    await put(store, 2);
    await store.close();
    expect(await cached(store)).toEqual([0, 2]);
    expect(await readAll(held.createReadStream())).toEqual(blobs[0]);
    held.release();
  });

  it('evicts what became evictable once a handle is released', async () => {
    const store = await openStore(150);
    await put(store, 0);
    const held = (await store.open(digests[0]!))!;
    await put(store, 1);
    expect(await cached(store)).toEqual([0, 1]);
    held.release();
    await store.close();
    expect(await cached(store)).toEqual([1]);
  });

  it('refills an evicted blob', async () => {
    const store = await openStore(150);
    await put(store, 0);
    await put(store, 1);
    expect(await cached(store)).toEqual([1]);
    const fetch = upstreamOf(blobs[0]!);
    const handle = await store.getOrFill(digests[0]!, fetch);
    expect(handle.state).toBe('miss');
    expect(await readAll(handle.createReadStream())).toEqual(blobs[0]);
    handle.release();
    await store.close();
    expect(await cached(store)).toEqual([0]);
  });
});

describe('FsBlobStore small content', () => {
  it('stores and reads bytes, idempotently', async () => {
    const store = await openStore();
    const bytes = Buffer.from('{"schemaVersion":2}');
    const digest = sha256(bytes);
    await store.putBytes(digest, bytes);
    await store.putBytes(digest, bytes);
    expect(await store.readBytes(digest, 1024)).toEqual(bytes);
    expect(await store.readBytes(sha256(Buffer.from('other')), 1024)).toBeUndefined();
    await expect(store.readBytes(digest, 4)).rejects.toMatchObject({ code: 'SIZE_INVALID' });
    expect(store.stats()).toMatchObject({ bytes: bytes.length, blobs: 1 });
  });

  it('refuses bytes that do not match the digest', async () => {
    const store = await openStore();
    const digest = sha256(Buffer.from('right'));
    await expect(store.putBytes(digest, Buffer.from('wrong'))).rejects.toMatchObject({
      code: 'DIGEST_INVALID',
    });
    expect(await store.stat(digest)).toBeUndefined();
    await expectNothingStored();
  });
});

describe('FsBlobStore restart', () => {
  it('reuses complete blobs and deletes what a crash left behind', async () => {
    const first = await openStore();
    const bytes = randomBytes(4096);
    const digest = sha256(bytes);
    await first.putBytes(digest, bytes);
    await first.close();

    // What a SIGKILL mid-fill leaves, and files that are not blobs.
    await writeFile(join(dir, 'tmp', 'deadbeef'), randomBytes(1000));
    await mkdir(join(dir, 'blobs', 'sha256', 'ab'), { recursive: true });
    await writeFile(join(dir, 'blobs', 'sha256', 'ab', 'not-a-digest'), 'x');
    await writeFile(join(dir, 'blobs', 'sha256', 'ab', 'cd'.repeat(32)), 'wrong shard');
    await writeFile(join(dir, 'blobs', 'stray'), 'x');

    const second = await openStore();
    expect(await second.stat(digest)).toEqual({ size: bytes.length });
    expect(second.stats()).toEqual({ bytes: bytes.length, blobs: 1, fillsInFlight: 0, reservedBytes: 0 });
    const fetch = upstreamOf(bytes);
    const handle = await second.getOrFill(digest, fetch);
    expect(handle.state).toBe('hit');
    expect(await readAll(handle.createReadStream())).toEqual(bytes);
    handle.release();
    expect(fetch).not.toHaveBeenCalled();
    expect(await readdir(join(dir, 'tmp'))).toEqual([]);
    expect(await filesUnder(join(dir, 'blobs'))).toHaveLength(1);
  });
});

describe('FsBlobStore memory', () => {
  it('fills 256 MiB for 8 readers without buffering the blob', async () => {
    const store = await openStore();
    const piece = randomBytes(1024 * 1024);
    const pieces = 256;
    const expected = createHash('sha256');
    for (let i = 0; i < pieces; i++) expected.update(piece);
    const digest = `sha256:${expected.digest('hex')}` as Digest;
    const fetch = vi.fn(() => {
      function* body() {
        for (let i = 0; i < pieces; i++) {
          for (let off = 0; off < piece.length; off += 64 * 1024) yield piece.subarray(off, off + 64 * 1024);
        }
      }
      return Promise.resolve<UpstreamBlob>({ body: Readable.from(body()), size: pieces * piece.length });
    });

    // Buffers (not rss, which the test runner moves too): a buffered copy of the blob would show here.
    const before = process.memoryUsage().arrayBuffers;
    let peak = before;
    const handles: BlobHandle[] = await Promise.all(
      Array.from({ length: 8 }, () => store.getOrFill(digest, fetch)),
    );
    const hashes = await Promise.all(
      handles.map(async (h) => {
        const hash = createHash('sha256');
        for await (const chunk of h.createReadStream()) {
          hash.update(chunk as Buffer);
          peak = Math.max(peak, process.memoryUsage().arrayBuffers);
          // Done with the chunk, as the blob route is once the socket wrote it.
          h.recycle?.(chunk as Buffer);
        }
        return `sha256:${hash.digest('hex')}`;
      }),
    );
    for (const h of handles) h.release();
    expect(fetch).toHaveBeenCalledTimes(1);
    for (const hash of hashes) expect(hash).toBe(digest);
    // One buffered copy would be 256 MiB. Readers read into pooled 1 MiB buffers; the upstream's
    // 64 KiB chunks are garbage that V8 collects only after tens of MiB of external memory, so the
    // bound is loose on purpose. (Without the recycle call above, 1 MiB reads peak near 300 MiB here.)
    expect(peak - before).toBeLessThan(128 * 1024 * 1024);
    expect(pooledChunks()).toBeGreaterThan(0);
  });
});
