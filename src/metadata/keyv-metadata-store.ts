import type { Keyv } from 'keyv';
import type { Logger } from 'pino';
import { RegistryError, truncate } from '../oci/index.ts';
import type { Digest } from '../oci/index.ts';
import { MetadataKeys } from './keys.ts';
import type { GateKind, TagStateKind } from './keys.ts';
import {
  readAdmittedBlob,
  readAdmittedChild,
  readManifestRecord,
  readTagHistory,
  readTagPin,
  readTagRecord,
} from './records.ts';
import type {
  AdmittedBlob,
  AdmittedChild,
  GateKey,
  ManifestRecord,
  MetadataStore,
  RecordParser,
  TagHistoryEntry,
  TagPin,
  TagRecord,
} from './types.ts';

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
  /** Told about records that do not parse (each is a miss or an error, see {@link MetadataStore}). */
  logger?: Logger;
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
  readonly #log: Logger | undefined;
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
    this.#log = options.logger?.child({ module: 'metadata' });
  }

  async getTag(upstream: string, repository: string, tag: string): Promise<TagRecord | undefined> {
    const key = this.#keys.tag(upstream, repository, tag);
    const value = await this.#run('getTag', () => this.#keyv.get<unknown>(key));
    return readTagRecord(value);
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
    return readManifestRecord(value);
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

  async getDecision<T>(key: GateKey, parse: RecordParser<T>): Promise<T | undefined> {
    return this.#readCache('decision', key, parse);
  }

  async setDecision(key: GateKey, decision: unknown, ttlMs: number): Promise<void> {
    const k = this.#gateKey('decision', key);
    const ttl = positiveTtl(ttlMs);
    await this.#run('setDecision', () => this.#keyv.set(k, decision, ttl));
  }

  async getAdmittedBlob(key: GateKey): Promise<AdmittedBlob | undefined> {
    return this.#readCache('admitted-blob', key, readAdmittedBlob);
  }

  async setAdmittedBlobs(
    key: Omit<GateKey, 'digest'>,
    blobs: ReadonlyArray<{ digest: Digest; admission: AdmittedBlob }>,
    ttlMs: number,
  ): Promise<void> {
    const ttl = positiveTtl(ttlMs);
    const entries = blobs.map(({ digest, admission }) => ({
      key: this.#gateKey('admitted-blob', { ...key, digest }),
      value: readAdmittedBlob(admission) ?? invalid('admitted blob', admission),
      ttl,
    }));
    await this.#setMany('setAdmittedBlobs', entries);
  }

  async getAdmittedChild(key: GateKey): Promise<AdmittedChild | undefined> {
    return this.#readCache('admitted-child', key, readAdmittedChild);
  }

  async setAdmittedChildren(
    key: Omit<GateKey, 'digest'>,
    children: readonly Digest[],
    parent: AdmittedChild,
    ttlMs: number,
  ): Promise<void> {
    const ttl = positiveTtl(ttlMs);
    const value = readAdmittedChild(parent) ?? invalid('admitted child', parent);
    const entries = [...new Set(children)].map((digest) => ({
      key: this.#gateKey('admitted-child', { ...key, digest }),
      value,
      ttl,
    }));
    await this.#setMany('setAdmittedChildren', entries);
  }

  async getVerifiedTag(upstream: string, repository: string, tag: string): Promise<TagRecord | undefined> {
    const k = this.#keys.tagState('tag-verified', upstream, repository, tag);
    const value = await this.#run('getVerifiedTag', () => this.#keyv.get<unknown>(k));
    if (value === undefined) return undefined;
    const record = readTagRecord(value);
    // A miss: stale-if-error then serves nothing, which is the safe side.
    if (record === undefined) this.#corrupt('tag-verified', k, 'treated as a miss');
    return record;
  }

  async setVerifiedTag(upstream: string, repository: string, tag: string, record: TagRecord): Promise<void> {
    const k = this.#keys.tagState('tag-verified', upstream, repository, tag);
    const value = readTagRecord(record) ?? invalid('verified tag', record);
    await this.#run('setVerifiedTag', () => this.#keyv.set(k, value));
  }

  async getTagHistory(upstream: string, repository: string, tag: string): Promise<TagHistoryEntry[]> {
    const value = await this.#readDurable('tag-history', upstream, repository, tag);
    if (value === undefined) return [];
    return readTagHistory(value) ?? this.#durableCorrupt('tag-history', upstream, repository, tag);
  }

  async setTagHistory(
    upstream: string,
    repository: string,
    tag: string,
    history: readonly TagHistoryEntry[],
  ): Promise<void> {
    const k = this.#keys.tagState('tag-history', upstream, repository, tag);
    const value = readTagHistory(history) ?? invalid('tag history', history);
    await this.#run('setTagHistory', () => this.#keyv.set(k, value));
  }

  async getTagPin(upstream: string, repository: string, tag: string): Promise<TagPin | undefined> {
    const value = await this.#readDurable('tag-pin', upstream, repository, tag);
    if (value === undefined) return undefined;
    // Never a miss: a missing pin is re-pinned to whatever the tag points at now.
    return readTagPin(value) ?? this.#durableCorrupt('tag-pin', upstream, repository, tag);
  }

  async setTagPin(upstream: string, repository: string, tag: string, pin: TagPin): Promise<void> {
    const k = this.#keys.tagState('tag-pin', upstream, repository, tag);
    const value = readTagPin(pin) ?? invalid('tag pin', pin);
    await this.#run('setTagPin', () => this.#keyv.set(k, value));
  }

  async deleteTagPin(upstream: string, repository: string, tag: string): Promise<void> {
    const k = this.#keys.tagState('tag-pin', upstream, repository, tag);
    await this.#run('deleteTagPin', () => this.#keyv.delete(k));
  }

  /*
   * Generic namespaced values, outside the MetadataStore port: the service reads and writes only
   * typed records. Kept for tools and tests that inspect the store (and for keys written by older
   * releases, see keys.ts); a value read here is whatever JSON the key holds.
   */
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

  #gateKey(kind: GateKind, key: GateKey): string {
    return this.#keys.gate(kind, key.scope, key.upstream, key.repository, key.digest);
  }

  /** A gate record, or a miss: absent, expired, or not what it should be (logged). */
  async #readCache<T>(kind: GateKind, key: GateKey, parse: RecordParser<T>): Promise<T | undefined> {
    const k = this.#gateKey(kind, key);
    const value = await this.#run(`get ${kind}`, () => this.#keyv.get<unknown>(k));
    if (value === undefined) return undefined;
    const record = parse(value);
    // A miss re-decides (decision) or refuses the blob until its manifest is admitted again
    // (closure): both fail closed.
    if (record === undefined) this.#corrupt(kind, k, 'treated as a miss');
    return record;
  }

  #readDurable(kind: TagStateKind, upstream: string, repository: string, tag: string): Promise<unknown> {
    const k = this.#keys.tagState(kind, upstream, repository, tag);
    return this.#run(`get ${kind}`, () => this.#keyv.get<unknown>(k));
  }

  #durableCorrupt(kind: TagStateKind, upstream: string, repository: string, tag: string): never {
    const k = this.#keys.tagState(kind, upstream, repository, tag);
    this.#corrupt(kind, k, 'refusing to guess');
    throw new RegistryError(
      'UNKNOWN',
      `metadata record ${kind} of ${upstream}/${repository}:${tag} is corrupt; fix or delete key "${truncate(k, 512)}"`,
      { detail: { reason: 'metadata-record-corrupt', kind, upstream, repository, tag } },
    );
  }

  #corrupt(kind: string, key: string, outcome: string): void {
    this.#log?.warn({ kind, key: truncate(key, 512) }, `metadata record does not parse: ${outcome}`);
  }

  async #setMany(
    operation: string,
    entries: Array<{ key: string; value: unknown; ttl: number }>,
  ): Promise<void> {
    if (entries.length === 0) return;
    // One transaction in SQLite, one MULTI in Redis.
    await this.#run(operation, () => this.#keyv.setMany(entries));
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

function positiveTtl(ttlMs: number): number {
  if (!(Number.isFinite(ttlMs) && ttlMs > 0)) {
    throw new RangeError(`metadata: ttlMs must be a positive number of milliseconds (got ${ttlMs})`);
  }
  return ttlMs;
}

/** A write of a value that is not what its method says: a bug in the caller, caught before it is stored. */
function invalid(what: string, value: unknown): never {
  throw new TypeError(`metadata: not a valid ${what}: ${truncate(JSON.stringify(value) ?? String(value))}`);
}
