import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import type { Server, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Keyv } from 'keyv';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { KeyvMetadataStore, NodeSqliteStore, openMetadataStore } from '../../src/metadata/index.ts';
import type { TagRecord } from '../../src/metadata/index.ts';
import { RegistryError, sha256Digest } from '../../src/oci/index.ts';
import type { Digest } from '../../src/oci/index.ts';
import { startRedis } from '../support/redis.ts';
import type { RedisServer } from '../support/redis.ts';

const digest = (s: string): Digest => sha256Digest(new TextEncoder().encode(s));
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';

interface Backend {
  name: string;
  start(): Promise<void>;
  stop(): Promise<void>;
  url(): string;
}

function sqliteBackend(): Backend {
  let dir = '';
  return {
    name: 'sqlite',
    async start() {
      dir = await mkdtemp(join(tmpdir(), 'pullwarden-meta-'));
    },
    async stop() {
      if (dir !== '') await rm(dir, { recursive: true, force: true });
    },
    // A directory that does not exist yet: the factory creates it.
    url: () => `sqlite://${join(dir, 'nested', 'meta.sqlite')}`,
  };
}

function redisBackend(): Backend {
  let server: RedisServer | undefined;
  return {
    name: 'redis',
    async start() {
      server = await startRedis();
    },
    async stop() {
      await server?.stop();
    },
    url: () => {
      if (server === undefined) throw new Error('redis-server did not start');
      return server.url;
    },
  };
}

// Stores opened by a test are closed after it, even when it fails.
// The store as opened (KeyvMetadataStore): its generic get/set/delete are not on the service's port.
type MetadataStore = KeyvMetadataStore;
const opened: MetadataStore[] = [];
async function track(store: Promise<MetadataStore>): Promise<MetadataStore> {
  const s = await store;
  opened.push(s);
  return s;
}
afterEach(async () => {
  await Promise.all(opened.splice(0).map((s) => s.close()));
});

let unique = 0;
/** A fresh key prefix per test, so tests on one backend never see each other's keys. */
const freshNamespace = (): string => `t${process.pid}-${++unique}`;

describe.each([sqliteBackend(), redisBackend()])('metadata store on $name', (backend) => {
  beforeAll(() => backend.start());
  afterAll(() => backend.stop());

  const open = (namespace: string): Promise<MetadataStore> =>
    track(openMetadataStore({ url: backend.url(), namespace }));

  it('round-trips tag records, per upstream, repository and tag', async () => {
    const store = await open(freshNamespace());
    const record: TagRecord = {
      digest: digest('a'),
      mediaType: OCI_INDEX,
      size: 1234,
      checkedAt: 1_700_000_000_000,
    };
    expect(await store.getTag('docker.io', 'library/nginx', '1.27')).toBeUndefined();

    await store.setTag('docker.io', 'library/nginx', '1.27', record);
    expect(await store.getTag('docker.io', 'library/nginx', '1.27')).toEqual(record);
    expect(await store.getTag('docker.io', 'library/nginx', '1.28')).toBeUndefined();
    expect(await store.getTag('ghcr.io', 'library/nginx', '1.27')).toBeUndefined();

    const newer = { ...record, digest: digest('b'), checkedAt: record.checkedAt + 1 };
    await store.setTag('docker.io', 'library/nginx', '1.27', newer);
    expect(await store.getTag('docker.io', 'library/nginx', '1.27')).toEqual(newer);
  });

  it('keeps upstreams with ports and accept-qualified tags apart', async () => {
    const store = await open(freshNamespace());
    const a: TagRecord = { digest: digest('a'), mediaType: OCI_INDEX, size: 1, checkedAt: 1 };
    const b: TagRecord = { digest: digest('b'), mediaType: OCI_MANIFEST, size: 2, checkedAt: 2 };
    const c: TagRecord = { digest: digest('c'), mediaType: OCI_MANIFEST, size: 3, checkedAt: 3 };
    // "127.0.0.1:5000" + "x" must not collide with "127.0.0.1" + a repository that looks like a port.
    await store.setTag('127.0.0.1:5000', 'x', 'latest', a);
    await store.setTag('[::1]:5000', 'x', 'latest', b);
    await store.setTag('127.0.0.1:5000', 'x', 'latest#0123456789abcdef', c);
    expect(await store.getTag('127.0.0.1:5000', 'x', 'latest')).toEqual(a);
    expect(await store.getTag('[::1]:5000', 'x', 'latest')).toEqual(b);
    expect(await store.getTag('127.0.0.1:5000', 'x', 'latest#0123456789abcdef')).toEqual(c);
    expect(await store.getTag('127.0.0.1', '5000/x', 'latest')).toBeUndefined();
  });

  it('round-trips manifest records by digest', async () => {
    const store = await open(freshNamespace());
    const d = digest('manifest');
    expect(await store.getManifest('docker.io', 'library/nginx', d)).toBeUndefined();
    await store.setManifest('docker.io', 'library/nginx', d, { mediaType: OCI_MANIFEST, size: 527 });
    expect(await store.getManifest('docker.io', 'library/nginx', d)).toEqual({
      mediaType: OCI_MANIFEST,
      size: 527,
    });
    expect(await store.getManifest('docker.io', 'library/redis', d)).toBeUndefined();
  });

  it('records blob links per repository', async () => {
    const store = await open(freshNamespace());
    const [config, layer, other] = [digest('config'), digest('layer'), digest('other')];
    await store.addBlobLinks('docker.io', 'library/nginx', [config, layer, layer]);
    await store.addBlobLinks('docker.io', 'library/nginx', []);
    expect(await store.hasBlobLink('docker.io', 'library/nginx', config)).toBe(true);
    expect(await store.hasBlobLink('docker.io', 'library/nginx', layer)).toBe(true);
    expect(await store.hasBlobLink('docker.io', 'library/nginx', other)).toBe(false);
    expect(await store.hasBlobLink('docker.io', 'library/redis', config)).toBe(false);
    expect(await store.hasBlobLink('quay.io', 'library/nginx', config)).toBe(false);
  });

  it('stores generic values, deletes them, and expires them after their TTL', async () => {
    const store = await open(freshNamespace());
    const decision = { allow: true, rule: 'sig', signers: ['ci@example.com'] };
    await store.set('decision', 'policy-1/sha256:abc', decision);
    expect(await store.get('decision', 'policy-1/sha256:abc')).toEqual(decision);
    expect(await store.get('history', 'policy-1/sha256:abc')).toBeUndefined();

    await store.delete('decision', 'policy-1/sha256:abc');
    expect(await store.get('decision', 'policy-1/sha256:abc')).toBeUndefined();

    await store.set('decision', 'short', 'soon gone', 50);
    await store.set('decision', 'long', 'stays', 60_000);
    expect(await store.get('decision', 'short')).toBe('soon gone');
    await vi.waitFor(async () => expect(await store.get('decision', 'short')).toBeUndefined(), {
      timeout: 3000,
      interval: 20,
    });
    expect(await store.get('decision', 'long')).toBe('stays');
  });

  it('rejects a non-positive TTL instead of storing forever', async () => {
    const store = await open(freshNamespace());
    await expect(store.set('decision', 'k', 1, 0)).rejects.toThrow(RangeError);
    await expect(store.set('decision', 'k', 1, -5)).rejects.toThrow(RangeError);
  });

  it('keeps values across a reopen', async () => {
    const namespace = freshNamespace();
    const record: TagRecord = { digest: digest('persist'), mediaType: OCI_INDEX, size: 9, checkedAt: 42 };
    const first = await openMetadataStore({ url: backend.url(), namespace });
    await first.setTag('docker.io', 'library/alpine', '3', record);
    await first.addBlobLinks('docker.io', 'library/alpine', [digest('blob')]);
    await first.set('history', 'k', [1, 2, 3]);
    await first.close();

    const second = await open(namespace);
    expect(await second.getTag('docker.io', 'library/alpine', '3')).toEqual(record);
    expect(await second.hasBlobLink('docker.io', 'library/alpine', digest('blob'))).toBe(true);
    expect(await second.get('history', 'k')).toEqual([1, 2, 3]);
  });

  it("lets two store instances on the same backend see each other's writes", async () => {
    const namespace = freshNamespace();
    const [a, b] = await Promise.all([open(namespace), open(namespace)]);
    const record: TagRecord = { digest: digest('shared'), mediaType: OCI_INDEX, size: 5, checkedAt: 7 };

    await a.setTag('docker.io', 'library/nginx', 'stable', record);
    expect(await b.getTag('docker.io', 'library/nginx', 'stable')).toEqual(record);

    await b.addBlobLinks('docker.io', 'library/nginx', [digest('l1')]);
    expect(await a.hasBlobLink('docker.io', 'library/nginx', digest('l1'))).toBe(true);

    await a.set('decision', 'd', { allow: false });
    expect(await b.get('decision', 'd')).toEqual({ allow: false });
    await b.delete('decision', 'd');
    expect(await a.get('decision', 'd')).toBeUndefined();
  });

  it('isolates namespaces that share one backend', async () => {
    const [one, two] = await Promise.all([open(freshNamespace()), open(freshNamespace())]);
    const record: TagRecord = { digest: digest('one'), mediaType: OCI_INDEX, size: 1, checkedAt: 1 };
    await one.setTag('docker.io', 'library/nginx', 'latest', record);
    await one.addBlobLinks('docker.io', 'library/nginx', [digest('x')]);
    await one.set('decision', 'k', 'one');
    expect(await two.getTag('docker.io', 'library/nginx', 'latest')).toBeUndefined();
    expect(await two.hasBlobLink('docker.io', 'library/nginx', digest('x'))).toBe(false);
    expect(await two.get('decision', 'k')).toBeUndefined();
  });

  describe('the gate state', () => {
    const scope = '0123456789abcdef.fedcba9876543210';
    const where = { scope, upstream: '127.0.0.1:5000', repository: 'library/nginx' };
    const allow = {
      result: 'allow',
      policy: 'signed',
      reasons: ['signed by ci'],
      signers: [{ kind: 'key', key: 'ci' }],
      checks: [],
    };
    const asDecision = (v: unknown): typeof allow | undefined =>
      typeof v === 'object' && v !== null && (v as { result?: unknown }).result === 'allow'
        ? (v as typeof allow)
        : undefined;

    it('round-trips decisions per scope, upstream, repository and digest, and expires them', async () => {
      const store = await open(freshNamespace());
      const key = { ...where, digest: digest('m') };
      expect(await store.getDecision(key, asDecision)).toBeUndefined();
      await store.setDecision(key, allow, 60_000);
      expect(await store.getDecision(key, asDecision)).toEqual(allow);
      expect(await store.getDecision({ ...key, scope: 'other' }, asDecision)).toBeUndefined();
      expect(await store.getDecision({ ...key, repository: 'library/redis' }, asDecision)).toBeUndefined();
      expect(await store.getDecision({ ...key, upstream: '127.0.0.1:5001' }, asDecision)).toBeUndefined();
      expect(await store.getDecision({ ...key, digest: digest('n') }, asDecision)).toBeUndefined();
      // What the parser refuses is a miss, never the stored value.
      expect(await store.getDecision(key, () => undefined)).toBeUndefined();

      const short = { ...key, digest: digest('short') };
      await store.setDecision(short, allow, 50);
      await vi.waitFor(async () => expect(await store.getDecision(short, asDecision)).toBeUndefined(), {
        timeout: 3000,
        interval: 20,
      });
      await expect(store.setDecision(key, allow, 0)).rejects.toThrow(RangeError);
    });

    it('keeps scopes that contain separators apart', async () => {
      const store = await open(freshNamespace());
      // Unescaped, "a:b" + "c:5000" and "a:b:c" + "5000" would be the same key.
      const one = { scope: 'a:b', upstream: 'c:5000', repository: 'x', digest: digest('d') };
      const two = { scope: 'a:b:c', upstream: '5000', repository: 'x', digest: digest('d') };
      await store.setDecision(one, allow, 60_000);
      expect(await store.getDecision(two, asDecision)).toBeUndefined();
      expect(await store.getDecision(one, asDecision)).toEqual(allow);
    });

    it('round-trips admitted blobs with their declared size and cap', async () => {
      const store = await open(freshNamespace());
      const [config, layer, sig] = [digest('config'), digest('layer'), digest('sig')];
      await store.setAdmittedBlobs(
        where,
        [
          { digest: config, admission: { size: 527 } },
          { digest: layer, admission: { size: 31_000_000 } },
          { digest: sig, admission: { size: 300, maxSize: 1024 } },
        ],
        60_000,
      );
      await store.setAdmittedBlobs(where, [], 60_000);
      expect(await store.getAdmittedBlob({ ...where, digest: config })).toEqual({ size: 527 });
      expect(await store.getAdmittedBlob({ ...where, digest: layer })).toEqual({ size: 31_000_000 });
      expect(await store.getAdmittedBlob({ ...where, digest: sig })).toEqual({ size: 300, maxSize: 1024 });
      expect(await store.getAdmittedBlob({ ...where, digest: digest('other') })).toBeUndefined();
      expect(
        await store.getAdmittedBlob({ ...where, repository: 'library/redis', digest: config }),
      ).toBeUndefined();
      expect(await store.getAdmittedBlob({ ...where, scope: 'next', digest: config })).toBeUndefined();
      await expect(
        store.setAdmittedBlobs(where, [{ digest: config, admission: { size: -1 } }], 60_000),
      ).rejects.toThrow(TypeError);
    });

    it('round-trips admitted children with the index that admitted them', async () => {
      const store = await open(freshNamespace());
      const [index, amd64, arm64] = [digest('index'), digest('amd64'), digest('arm64')];
      await store.setAdmittedChildren(where, [amd64, arm64, amd64], { index, policy: 'signed' }, 60_000);
      expect(await store.getAdmittedChild({ ...where, digest: amd64 })).toEqual({ index, policy: 'signed' });
      expect(await store.getAdmittedChild({ ...where, digest: arm64 })).toEqual({ index, policy: 'signed' });
      expect(await store.getAdmittedChild({ ...where, digest: index })).toBeUndefined();
      // No policy matched (a plain allow): stored without one, read back as undefined.
      await store.setAdmittedChildren(where, [arm64], { index, policy: undefined }, 60_000);
      expect(await store.getAdmittedChild({ ...where, digest: arm64 })).toEqual({ index, policy: undefined });
    });

    it('round-trips verified tags, tag history and pins, and deletes pins', async () => {
      const store = await open(freshNamespace());
      const up = '127.0.0.1:5000';
      const record: TagRecord = { digest: digest('v'), mediaType: OCI_INDEX, size: 10, checkedAt: 5 };
      expect(await store.getVerifiedTag(up, 'library/nginx', '1.27')).toBeUndefined();
      await store.setVerifiedTag(up, 'library/nginx', '1.27', record);
      expect(await store.getVerifiedTag(up, 'library/nginx', '1.27')).toEqual(record);
      // A verified tag is not the resolved tag: they are separate records.
      expect(await store.getTag(up, 'library/nginx', '1.27')).toBeUndefined();

      const history = [
        { digest: digest('h1'), mediaType: OCI_INDEX, size: 1, firstSeen: 1, lastSeen: 2 },
        { digest: digest('h2'), mediaType: OCI_MANIFEST, size: 2, firstSeen: 3, lastSeen: 4 },
      ];
      expect(await store.getTagHistory(up, 'library/nginx', '1.27')).toEqual([]);
      await store.setTagHistory(up, 'library/nginx', '1.27', history);
      expect(await store.getTagHistory(up, 'library/nginx', '1.27')).toEqual(history);
      expect(await store.getTagHistory(up, 'library/nginx', '1.28')).toEqual([]);

      const pin = { digest: digest('h1'), pinnedAt: 9, by: 'operator' as const };
      expect(await store.getTagPin(up, 'library/nginx', '1.27')).toBeUndefined();
      await store.setTagPin(up, 'library/nginx', '1.27', pin);
      expect(await store.getTagPin(up, 'library/nginx', '1.27')).toEqual(pin);
      expect(await store.getTagPin('[::1]:5000', 'library/nginx', '1.27')).toBeUndefined();
      await store.deleteTagPin(up, 'library/nginx', '1.27');
      expect(await store.getTagPin(up, 'library/nginx', '1.27')).toBeUndefined();
    });

    it('reads tag state written by the generic methods before the typed ones existed (upgrade)', async () => {
      const store = await open(freshNamespace());
      const up = '127.0.0.1:5000';
      // Exactly what the previous release wrote: generic values under "<upstream>/<repository>:<tag>".
      const old = `${up}/library/nginx:stable`;
      const pin = { digest: digest('pinned'), pinnedAt: 1, by: 'first-seen' };
      const history = [
        { digest: digest('pinned'), mediaType: OCI_INDEX, size: 3, firstSeen: 1, lastSeen: 2 },
      ];
      const verified = { digest: digest('pinned'), mediaType: OCI_INDEX, size: 3, checkedAt: 2 };
      await store.set('tag-pin', old, pin);
      await store.set('tag-history', old, history);
      await store.set('tag-verified', old, verified);
      expect(await store.getTagPin(up, 'library/nginx', 'stable')).toEqual(pin);
      expect(await store.getTagHistory(up, 'library/nginx', 'stable')).toEqual(history);
      expect(await store.getVerifiedTag(up, 'library/nginx', 'stable')).toEqual(verified);
    });

    it('treats a corrupt cache record as a miss and a corrupt pin or history as an error', async () => {
      const store = await open(freshNamespace());
      const up = '127.0.0.1:5000';
      const old = `${up}/library/nginx:stable`;
      await store.set('tag-verified', old, { digest: 'sha256:nothex', mediaType: OCI_INDEX });
      expect(await store.getVerifiedTag(up, 'library/nginx', 'stable')).toBeUndefined();

      await store.set('tag-pin', old, { digest: digest('x'), pinnedAt: 1, by: 'someone' });
      await expect(store.getTagPin(up, 'library/nginx', 'stable')).rejects.toMatchObject({
        code: 'UNKNOWN',
        detail: { reason: 'metadata-record-corrupt', kind: 'tag-pin' },
      });
      await store.set('tag-history', old, [{ digest: digest('x') }]);
      await expect(store.getTagHistory(up, 'library/nginx', 'stable')).rejects.toMatchObject({
        code: 'UNKNOWN',
        detail: { reason: 'metadata-record-corrupt', kind: 'tag-history' },
      });
      await expect(
        store.setTagPin(up, 'library/nginx', 'stable', {
          digest: digest('x'),
          pinnedAt: 1,
          by: 'x' as 'operator',
        }),
      ).rejects.toThrow(TypeError);
    });

    it("lets two store instances see each other's gate state", async () => {
      const namespace = freshNamespace();
      const [a, b] = await Promise.all([open(namespace), open(namespace)]);
      const layer = digest('shared-layer');
      await a.setAdmittedBlobs(where, [{ digest: layer, admission: { size: 42 } }], 60_000);
      expect(await b.getAdmittedBlob({ ...where, digest: layer })).toEqual({ size: 42 });
      await b.setTagPin('docker.io', 'library/nginx', 'latest', {
        digest: layer,
        pinnedAt: 1,
        by: 'operator',
      });
      expect(await a.getTagPin('docker.io', 'library/nginx', 'latest')).toMatchObject({ digest: layer });
    });
  });

  it('answers ping with a round trip', async () => {
    const store = await open(freshNamespace());
    await expect(store.ping()).resolves.toBeUndefined();
  });

  it('rejects calls after close', async () => {
    const store = await openMetadataStore({ url: backend.url(), namespace: freshNamespace() });
    await store.close();
    await expect(store.ping()).rejects.toMatchObject({ code: 'UNAVAILABLE' });
  });
});

describe('sqlite metadata store files', () => {
  let dir = '';
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pullwarden-meta-'));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('creates the database directory', async () => {
    const path = join(dir, 'a', 'b', 'meta.sqlite');
    await track(openMetadataStore({ url: `sqlite://${path}`, namespace: 'pullwarden' }));
    expect(existsSync(path)).toBe(true);
  });

  it('fails at open with the path when the database cannot be created', async () => {
    const blocker = join(dir, 'file');
    await track(openMetadataStore({ url: `sqlite://${blocker}`, namespace: 'pullwarden' }));
    // "file" is a database file now, so it cannot be a directory.
    await expect(
      openMetadataStore({ url: `sqlite://${join(blocker, 'meta.sqlite')}`, namespace: 'x' }),
    ).rejects.toThrow(/cannot open the metadata database .*file\/meta\.sqlite/);
  });

  it('rejects with UNAVAILABLE when the database fails at run time', async () => {
    const store = new NodeSqliteStore({ path: join(dir, 'broken.sqlite') });
    const keyv = new Keyv({ store, throwOnErrors: true });
    const metadata = new KeyvMetadataStore({ keyv, namespace: 'pullwarden' });
    await store.disconnect(); // the database goes away under the store
    const err: unknown = await metadata
      .getTag('docker.io', 'library/nginx', 'latest')
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RegistryError);
    expect(err).toMatchObject({ code: 'UNAVAILABLE' });
    expect((err as Error).cause).toBeInstanceOf(Error);
    await expect(metadata.hasBlobLink('docker.io', 'library/nginx', digest('x'))).rejects.toMatchObject({
      code: 'UNAVAILABLE',
    });
  });

  it('rejects a call the backend never answers, after operationTimeoutMs', async () => {
    // A backend that accepts the call and never replies (a half-open connection, a wedged server).
    const never = new Promise<never>(() => undefined);
    const hung = { opts: {}, get: () => never, set: () => never, delete: () => never, clear: () => never };
    const keyv = new Keyv({ store: hung, throwOnErrors: true });
    const metadata = new KeyvMetadataStore({
      keyv,
      namespace: 'p',
      operationTimeoutMs: 100,
      close: async () => {},
    });
    await expect(metadata.ping()).rejects.toMatchObject({
      code: 'UNAVAILABLE',
      message: expect.stringContaining('did not answer within 100ms'),
    });
    await expect(metadata.getTag('docker.io', 'library/nginx', 'latest')).rejects.toMatchObject({
      code: 'UNAVAILABLE',
    });
    await metadata.close();
  });

  it('refuses a keyv that would hide store errors', () => {
    const keyv = new Keyv({ store: new NodeSqliteStore({ path: ':memory:' }) });
    expect(() => new KeyvMetadataStore({ keyv, namespace: 'p' })).toThrow(/throwOnErrors/);
  });
});

describe('NodeSqliteStore as a keyv adapter', () => {
  let dir = '';
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pullwarden-keyv-'));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('scopes clear() and iteration to the keyv namespace, exactly', async () => {
    const path = join(dir, 'ns.sqlite');
    const a = new Keyv({ store: new NodeSqliteStore({ path }), namespace: 'a', throwOnErrors: true });
    // "A" differs from "a" only in case and "a_" looks like a LIKE pattern: neither may be touched.
    const upper = new Keyv({ store: new NodeSqliteStore({ path }), namespace: 'A', throwOnErrors: true });
    const pattern = new Keyv({ store: new NodeSqliteStore({ path }), namespace: 'a_', throwOnErrors: true });
    await a.set('k1', 1);
    await a.set('k2', { two: 2 });
    await upper.set('k1', 'upper');
    await pattern.set('k1', 'pattern');

    const seen: Array<[string, unknown]> = [];
    for await (const [key, value] of a.iterator!(undefined)) seen.push([key as string, value]);
    expect(seen).toEqual([
      ['k1', 1],
      ['k2', { two: 2 }],
    ]);
    expect(await a.getMany(['k1', 'missing', 'k2'])).toEqual([1, undefined, { two: 2 }]);
    expect(await a.has('k1')).toBe(true);
    expect(await a.hasMany(['k1', 'nope'])).toEqual([true, false]);

    await a.clear();
    expect(await a.get('k1')).toBeUndefined();
    expect(await upper.get('k1')).toBe('upper');
    expect(await pattern.get('k1')).toBe('pattern');
    await Promise.all([a.disconnect(), upper.disconnect(), pattern.disconnect()]);
  });

  it('hides expired rows from reads and purges them', async () => {
    const store = new NodeSqliteStore({ path: join(dir, 'ttl.sqlite'), purgeIntervalMs: 0 });
    await store.set('gone', 'v', 30);
    await store.set('kept', 'v');
    expect(await store.get('gone')).toBe('v');
    await vi.waitFor(async () => expect(await store.has('gone')).toBe(false), {
      timeout: 3000,
      interval: 10,
    });
    expect(await store.get('gone')).toBeUndefined();
    expect(await store.getMany(['gone', 'kept'])).toEqual([undefined, 'v']);
    await store.set('trigger', 'v'); // a write past the purge interval deletes expired rows
    expect(store.purgeExpired()).toBe(0);
    expect(await store.delete('gone')).toBe(false);
    expect(await store.delete('kept')).toBe(true);
    await store.disconnect();
  });
});

describe('redis metadata store failures', () => {
  it('fails at open with a clear error when nothing listens', async () => {
    const port = await closedPort();
    const started = Date.now();
    await expect(
      openMetadataStore({ url: `redis://127.0.0.1:${port}`, namespace: 'p', connectTimeoutMs: 2000 }),
    ).rejects.toThrow(new RegExp(`cannot connect to the metadata store at redis://127\\.0\\.0\\.1:${port}`));
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it('fails at open when the server never answers', async () => {
    const blackhole = await silentServer();
    try {
      await expect(
        openMetadataStore({
          url: `redis://127.0.0.1:${blackhole.port}`,
          namespace: 'p',
          connectTimeoutMs: 500,
        }),
      ).rejects.toThrow(
        /cannot connect to the metadata store .*within 500ms|cannot connect to the metadata store/,
      );
    } finally {
      await blackhole.close();
    }
  });

  it('uses the password, and names a wrong one without echoing it', async () => {
    const server = await startRedis({ password: 's3cret-pw' });
    try {
      const store = await track(
        openMetadataStore({ url: server.url, namespace: 'p', password: 's3cret-pw' }),
      );
      await store.ping();
      const err: unknown = await openMetadataStore({
        url: server.url,
        namespace: 'p',
        password: 'wrong-pw',
      }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(Error);
      expect((err as Error).message).toMatch(
        /cannot connect to the metadata store at redis:\/\/127\.0\.0\.1:\d+/,
      );
      expect((err as Error).message).not.toContain('wrong-pw');
    } finally {
      await server.stop();
    }
  });

  it('does not echo credentials from the URL', async () => {
    const port = await closedPort();
    const err: unknown = await openMetadataStore({
      url: `redis://user:hunter2@127.0.0.1:${port}`,
      namespace: 'p',
      connectTimeoutMs: 1000,
    }).catch((e: unknown) => e);
    expect((err as Error).message).toContain(`redis://127.0.0.1:${port}`);
    expect((err as Error).message).not.toContain('hunter2');
  });

  it('rejects every call within seconds once Redis is gone, and recovers when it is back', async () => {
    const server = await startRedis();
    const store = await track(
      openMetadataStore({ url: server.url, namespace: 'p', operationTimeoutMs: 2000 }),
    );
    const record: TagRecord = { digest: digest('x'), mediaType: OCI_INDEX, size: 1, checkedAt: 1 };
    await store.setTag('docker.io', 'library/nginx', 'latest', record);
    await server.stop();

    const calls: Array<[string, () => Promise<unknown>]> = [
      ['ping', () => store.ping()],
      ['getTag', () => store.getTag('docker.io', 'library/nginx', 'latest')],
      ['setTag', () => store.setTag('docker.io', 'library/nginx', 'latest', record)],
      ['getManifest', () => store.getManifest('docker.io', 'library/nginx', digest('m'))],
      ['hasBlobLink', () => store.hasBlobLink('docker.io', 'library/nginx', digest('b'))],
      ['addBlobLinks', () => store.addBlobLinks('docker.io', 'library/nginx', [digest('b')])],
      ['get', () => store.get('decision', 'k')],
      ['set', () => store.set('decision', 'k', 1, 1000)],
      ['delete', () => store.delete('decision', 'k')],
    ];
    for (const [name, call] of calls) {
      const started = Date.now();
      const outcome = await call().then(
        (value: unknown) => ({ resolved: value }),
        (err: unknown) => ({ rejected: err }),
      );
      expect(outcome, name).toHaveProperty('rejected');
      expect((outcome as { rejected: unknown }).rejected, name).toMatchObject({ code: 'UNAVAILABLE' });
      expect(Date.now() - started, name).toBeLessThan(3000);
    }

    // The same address again (an empty Redis, as after a restart without persistence).
    const restarted = await startRedis({ port: server.port });
    try {
      await vi.waitFor(() => store.ping(), { timeout: 10_000, interval: 100 });
      await store.setTag('docker.io', 'library/nginx', 'latest', record);
      expect(await store.getTag('docker.io', 'library/nginx', 'latest')).toEqual(record);
    } finally {
      await restarted.stop();
    }
  }, 30_000);
});

/** A port that was free a moment ago: connections to it are refused. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('no TCP address');
  return address.port;
}

/** Accepts connections and never answers: a hung Redis, or a network path that drops replies. */
async function silentServer(): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no TCP address');
  return {
    port: address.port,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
