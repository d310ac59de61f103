import type { Digest } from '../oci/index.ts';

/** A tag resolution: what the tag pointed at, and when we last heard it from the upstream. */
export interface TagRecord {
  digest: Digest;
  mediaType: string;
  size: number;
  /** ms since epoch of the last successful upstream answer. */
  checkedAt: number;
}

/** A manifest known in a repository (the bytes live in the blob store under `digest`). */
export interface ManifestRecord {
  mediaType: string;
  size: number;
}

/**
 * Shared, durable state. The embedded default is SQLite (node:sqlite); Redis lets several replicas
 * share it. Keys are always scoped by upstream host and repository.
 */
export interface MetadataStore {
  getTag(upstream: string, repository: string, tag: string): Promise<TagRecord | undefined>;
  setTag(upstream: string, repository: string, tag: string, record: TagRecord): Promise<void>;
  getManifest(upstream: string, repository: string, digest: Digest): Promise<ManifestRecord | undefined>;
  setManifest(upstream: string, repository: string, digest: Digest, record: ManifestRecord): Promise<void>;
  /** Whether a blob was seen in the repository (served from it before, or referenced by its manifests). */
  hasBlobLink(upstream: string, repository: string, digest: Digest): Promise<boolean>;
  addBlobLinks(upstream: string, repository: string, digests: readonly Digest[]): Promise<void>;
  /** Generic namespaced values with an optional TTL, for later features (decisions, tag history). */
  get<T>(namespace: string, key: string): Promise<T | undefined>;
  set(namespace: string, key: string, value: unknown, ttlMs?: number): Promise<void>;
  delete(namespace: string, key: string): Promise<void>;
  /** Round-trip check for /readyz. */
  ping(): Promise<void>;
  close(): Promise<void>;
}
