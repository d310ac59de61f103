/**
 * The cache is bounded by its configuration, not by what an upstream says: blob size, cache size
 * while fills run, fills nobody waits for, and free disk space.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { DiskHeadroom, FsBlobStore } from '../../../src/cache/index.ts';
import type { FsBlobStoreOptions } from '../../../src/cache/index.ts';
import { digestOf, RegistryError } from '../../../src/oci/index.ts';
import type { Digest } from '../../../src/oci/index.ts';
import type { UpstreamBlob } from '../../../src/upstream/index.ts';

let dir: string;
const stores: FsBlobStore[] = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pullwarden-limits-'));
});

afterEach(async () => {
  for (const store of stores.splice(0)) await store.close();
  await rm(dir, { recursive: true, force: true });
});

async function openStore(options: Partial<FsBlobStoreOptions> = {}): Promise<FsBlobStore> {
  const store = await FsBlobStore.open({ dir, maxBytes: 1024 ** 3, ...options });
  stores.push(store);
  return store;
}

/**
 * An upstream body the test writes by hand. `untouched()`: nobody ever started reading it (no pipe,
 * no data listener, no read), i.e. a refusal came before the first byte.
 */
function controlled(size: number | undefined) {
  const body = new PassThrough();
  let read = false;
  const original = body.read.bind(body);
  body.read = (n?: number) => {
    read = true;
    return original(n) as unknown;
  };
  const fetch = vi.fn(() => Promise.resolve<UpstreamBlob>({ body, size }));
  return { body, fetch, untouched: () => !read && body.readableFlowing !== true };
}

async function refusal(promise: Promise<unknown>): Promise<RegistryError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(RegistryError);
  return err as RegistryError;
}

async function nothingStored(): Promise<void> {
  await vi.waitFor(async () => expect(await readdir(join(dir, 'tmp'))).toEqual([]));
  const blobs = await readdir(join(dir, 'blobs'), { recursive: true, withFileTypes: true });
  expect(blobs.filter((e) => e.isFile())).toEqual([]);
}

const digest = (bytes: Buffer): Digest => digestOf(bytes, 'sha256');

describe('blob size limits', () => {
  it('refuses a Content-Length above maxBlobSize before reading a byte', async () => {
    const store = await openStore({ maxBlobSize: 1000 });
    const up = controlled(1001);

    const err = await refusal(store.getOrFill(digest(randomBytes(8)), up.fetch));

    expect(err.code).toBe('DENIED');
    expect(err.message).toContain('storage.maxBlobSize');
    expect(up.untouched()).toBe(true);
    expect(up.body.destroyed).toBe(true);
    await nothingStored();
  });

  it('refuses a 10 GiB Content-Length when the whole cache is 64 MiB, before reading a byte', async () => {
    const store = await openStore({ maxBytes: 64 * 1024 ** 2, maxBlobSize: 20 * 1024 ** 3 });
    const up = controlled(10 * 1024 ** 3);

    const err = await refusal(store.getOrFill(digest(randomBytes(8)), up.fetch));

    expect(err.code).toBe('DENIED');
    expect(err.message).toContain('storage.maxBytes');
    expect(up.untouched()).toBe(true);
    expect(store.stats().reservedBytes).toBe(0);
    await nothingStored();
  });

  it('cuts a blob without Content-Length once its bytes pass maxBlobSize', async () => {
    const store = await openStore({ maxBlobSize: 1000 });
    const bytes = randomBytes(3000);
    const up = controlled(undefined);
    const handle = await (async () => {
      const p = store.getOrFill(digest(bytes), up.fetch);
      up.body.write(bytes.subarray(0, 600));
      return p;
    })();
    const stream = handle.createReadStream();
    const ended = new Promise<Error | undefined>((resolve) => {
      stream.on('error', resolve);
      stream.on('end', () => resolve(undefined));
      stream.resume();
    });
    up.body.write(bytes.subarray(600));

    const err = await ended;
    handle.release();
    expect(err).toBeInstanceOf(RegistryError);
    expect((err as RegistryError).message).toContain('storage.maxBlobSize');
    await nothingStored();
  });
});

describe('running fills count against maxBytes', () => {
  it('holds the Content-Length of a running fill, so a second fill that does not fit is refused', async () => {
    const store = await openStore({ maxBytes: 1000 });
    const a = controlled(700);
    const first = await store.getOrFill(digest(randomBytes(8)), a.fetch);
    expect(store.stats().reservedBytes).toBe(700);

    const b = controlled(600);
    const err = await refusal(store.getOrFill(digest(randomBytes(9)), b.fetch));

    expect(err.code).toBe('UNAVAILABLE');
    expect(err.message).toContain('storage.maxBytes');
    expect(err.retryAfter).toBeGreaterThan(0);
    expect(b.untouched()).toBe(true);
    first.release();
    a.body.destroy();
  });

  it('evicts unused blobs to make room for a fill before it starts', async () => {
    const store = await openStore({ maxBytes: 1000 });
    const old = randomBytes(600);
    await store.putBytes(digest(old), old);
    const bytes = randomBytes(700);
    const up = controlled(700);

    const handle = await store.getOrFill(digest(bytes), up.fetch);

    expect(await store.stat(digest(old))).toBeUndefined();
    up.body.end(bytes);
    await store.close();
    handle.release();
    expect(store.stats()).toMatchObject({ bytes: 700, reservedBytes: 0 });
  });
});

describe('abandoned fills', () => {
  it('stops a fill after the grace once every reader left, and caches nothing', async () => {
    const store = await openStore({ abandonedFillGraceMs: 50 });
    const bytes = randomBytes(4000);
    const up = controlled(bytes.length);
    const handle = await store.getOrFill(digest(bytes), up.fetch);
    up.body.write(bytes.subarray(0, 1000));
    handle.release();

    await vi.waitFor(() => expect(up.body.destroyed).toBe(true));

    expect(store.stats()).toMatchObject({ fillsInFlight: 0, reservedBytes: 0 });
    await nothingStored();
  });

  it('keeps a fill that someone joined within the grace', async () => {
    const store = await openStore({ abandonedFillGraceMs: 100 });
    const bytes = randomBytes(4000);
    const d = digest(bytes);
    const up = controlled(bytes.length);
    const first = await store.getOrFill(d, up.fetch);
    first.release();
    const second = await store.getOrFill(d, up.fetch);
    expect(second.state).toBe('joined');
    // Well past the grace of the first reader: the second one still holds the fill.
    await new Promise((r) => setTimeout(r, 300));
    expect(up.body.destroyed).toBe(false);
    up.body.end(bytes);
    await store.close();
    second.release();
    expect(await store.stat(d)).toEqual({ size: bytes.length });
    expect(up.fetch).toHaveBeenCalledTimes(1);
  });
});

describe('disk headroom', () => {
  function headroom(free: { value: number }, reserve = 1000) {
    return new DiskHeadroom({
      path: dir,
      reserve: { bytes: reserve },
      measure: () => Promise.resolve({ free: free.value, total: 100_000 }),
    });
  }

  it('refuses fills while free space is below storage.reserve, with the reason', async () => {
    const free = { value: 500 };
    const h = headroom(free);
    await h.refresh();
    const store = await openStore({ headroom: h });
    const up = controlled(10);

    const err = await refusal(store.getOrFill(digest(randomBytes(8)), up.fetch));

    expect(err.code).toBe('UNAVAILABLE');
    expect(err.message).toContain('storage.reserve');
    expect(up.untouched()).toBe(true);
    expect(h.state()).toEqual({ free: 500, reserve: 1000, low: true });
  });

  it('refuses a fill whose Content-Length would eat into the reserve, and counts bytes between reads', async () => {
    const free = { value: 5000 };
    const h = headroom(free);
    await h.refresh();
    const store = await openStore({ headroom: h });

    const big = controlled(4500);
    expect((await refusal(store.getOrFill(digest(randomBytes(8)), big.fetch))).message).toContain(
      'storage.reserve',
    );

    // Unknown size: bytes written are subtracted from the last reading, so the fill stops at the reserve.
    const bytes = randomBytes(6000);
    const up = controlled(undefined);
    const handle = await store.getOrFill(digest(bytes), up.fetch);
    const stream = handle.createReadStream();
    const ended = new Promise<Error | undefined>((resolve) => {
      stream.on('error', resolve);
      stream.on('end', () => resolve(undefined));
      stream.resume();
    });
    up.body.write(bytes);
    const err = await ended;
    handle.release();
    expect((err as RegistryError).message).toContain('storage.reserve');
    await nothingStored();
  });

  it('reads a reserve given as a fraction of the filesystem', async () => {
    const h = new DiskHeadroom({
      path: dir,
      reserve: { fraction: 0.05 },
      measure: () => Promise.resolve({ free: 4000, total: 100_000 }),
    });
    await h.refresh();
    expect(h.state()).toEqual({ free: 4000, reserve: 5000, low: true });
  });
});
