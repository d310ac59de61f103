import type { Keyv } from 'keyv';
import { RegistryError, isDigest } from '../oci/index.ts';
import type { Digest } from '../oci/index.ts';
import { MetadataKeys } from './keys.ts';
import type { ManifestRecord, MetadataStore, TagRecord } from './types.ts';

export interface KeyvMetadataStoreOptions {
  /**
   * The keyv instance. It must be built with `throwOnErrors: true` (and an adapter that throws too):
   * otherwise keyv turns a failed read into `undefined`, i.e. a store outage into a cache miss.
   * {@link openMetadataStore} does this; the constructor enforces it.
   */
  keyv: Keyv;
  /** Key prefix shared by every key of this store (config `metadata.namespace`). */
  namespace: string;
  /** Longest a single call may take before it rejects with UNAVAILABLE. Default 5000. */
  operationTimeoutMs?: number;
  /** Releases the backend; default `keyv.disconnect()`. */
  close?: () => Promise<void>;
}

const BLOB_LINK = 1;

/**
 * {@link MetadataStore} on keyv: SQLite ({@link NodeSqliteStore}) embedded, Redis (@keyv/redis) for
 * several replicas. Keys are built by {@link MetadataKeys} (the scheme is documented there) and
 * are identical across backends, so keyv's own namespace prefixing is switched off.
 *
 * Every backend failure rejects with `RegistryError('UNAVAILABLE')` carrying the original error as
 * `cause`; a call that does not finish within `operationTimeoutMs` rejects the same way. Nothing is
 * turned into a miss: a miss would make the proxy re-resolve tags (or forget pins) while the store is
 * down, which is worse than an honest 503.
 */
export class KeyvMetadataStore implements MetadataStore {
  readonly #keyv: Keyv;
  readonly #keys: MetadataKeys;
  readonly #timeoutMs: number;
  readonly #close: () => Promise<void>;
  #closed = false;

  constructor(options: KeyvMetadataStoreOptions) {
    if (!options.keyv.throwOnErrors) {
      throw new TypeError(
        'KeyvMetadataStore needs a Keyv with throwOnErrors: true (keyv hides store errors)',
      );
    }
    this.#keyv = options.keyv;
    // Keys carry their full prefix (see keys.ts); keyv must not add "<namespace>:" of its own.
    this.#keyv.useKeyPrefix = false;
    this.#keyv.namespace = undefined;
    this.#keys = new MetadataKeys(options.namespace);
    this.#timeoutMs = options.operationTimeoutMs ?? 5000;
    this.#close = options.close ?? (() => this.#keyv.disconnect());
  }

  async getTag(upstream: string, repository: string, tag: string): Promise<TagRecord | undefined> {
    const key = this.#keys.tag(upstream, repository, tag);
    const value = await this.#run('getTag', () => this.#keyv.get<unknown>(key));
    return isTagRecord(value) ? value : undefined;
  }

  async setTag(upstream: string, repository: string, tag: string, record: TagRecord): Promise<void> {
    const key = this.#keys.tag(upstream, repository, tag);
    const value: TagRecord = {
      digest: record.digest,
      mediaType: record.mediaType,
      size: record.size,
      checkedAt: record.checkedAt,
    };
    await this.#run('setTag', () => this.#keyv.set(key, value));
  }

  async getManifest(
    upstream: string,
    repository: string,
    digest: Digest,
  ): Promise<ManifestRecord | undefined> {
    const key = this.#keys.manifest(upstream, repository, digest);
    const value = await this.#run('getManifest', () => this.#keyv.get<unknown>(key));
    return isManifestRecord(value) ? value : undefined;
  }

  async setManifest(
    upstream: string,
    repository: string,
    digest: Digest,
    record: ManifestRecord,
  ): Promise<void> {
    const key = this.#keys.manifest(upstream, repository, digest);
    const value: ManifestRecord = { mediaType: record.mediaType, size: record.size };
    await this.#run('setManifest', () => this.#keyv.set(key, value));
  }

  async hasBlobLink(upstream: string, repository: string, digest: Digest): Promise<boolean> {
    const key = this.#keys.blobLink(upstream, repository, digest);
    return this.#run('hasBlobLink', () => this.#keyv.has(key));
  }

  async addBlobLinks(upstream: string, repository: string, digests: readonly Digest[]): Promise<void> {
    const entries = [...new Set(digests)].map((digest) => ({
      key: this.#keys.blobLink(upstream, repository, digest),
      value: BLOB_LINK,
    }));
    if (entries.length === 0) return;
    // One transaction in SQLite, one MULTI in Redis.
    await this.#run('addBlobLinks', () => this.#keyv.setMany(entries));
  }

  async get<T>(namespace: string, key: string): Promise<T | undefined> {
    const k = this.#keys.generic(namespace, key);
    return this.#run('get', () => this.#keyv.get<T>(k));
  }

  async set(namespace: string, key: string, value: unknown, ttlMs?: number): Promise<void> {
    if (ttlMs !== undefined && !(Number.isFinite(ttlMs) && ttlMs > 0)) {
      throw new RangeError(`metadata set: ttlMs must be a positive number of milliseconds (got ${ttlMs})`);
    }
    const k = this.#keys.generic(namespace, key);
    await this.#run('set', () => this.#keyv.set(k, value, ttlMs));
  }

  async delete(namespace: string, key: string): Promise<void> {
    const k = this.#keys.generic(namespace, key);
    await this.#run('delete', () => this.#keyv.delete(k));
  }

  /** Reads one key through the same path as every other call: a real round trip to the backend. */
  async ping(): Promise<void> {
    const k = this.#keys.ping();
    await this.#run('ping', () => this.#keyv.get(k));
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#close();
  }

  async #run<T>(operation: string, work: () => Promise<T>): Promise<T> {
    if (this.#closed) throw new RegistryError('UNAVAILABLE', `metadata store is closed (${operation})`);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        reject(
          new RegistryError(
            'UNAVAILABLE',
            `metadata store did not answer within ${this.#timeoutMs}ms (${operation})`,
          ),
        );
      }, this.#timeoutMs);
    });
    try {
      return await Promise.race([work(), timeout]);
    } catch (err) {
      if (err instanceof RegistryError) throw err;
      throw new RegistryError('UNAVAILABLE', `metadata store unavailable (${operation})`, { cause: err });
    } finally {
      clearTimeout(timer);
    }
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null;
}

// Values come back from JSON written by this or an older version: a malformed one is a miss (the
// service re-resolves from upstream), never a crash or a wrong digest.
function isTagRecord(value: unknown): value is TagRecord {
  return (
    isRecord(value) &&
    typeof value['digest'] === 'string' &&
    isDigest(value['digest']) &&
    typeof value['mediaType'] === 'string' &&
    typeof value['size'] === 'number' &&
    typeof value['checkedAt'] === 'number'
  );
}

function isManifestRecord(value: unknown): value is ManifestRecord {
  return isRecord(value) && typeof value['mediaType'] === 'string' && typeof value['size'] === 'number';
}
