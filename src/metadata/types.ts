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

/** One digest a tag has pointed at, as the upstream answered. */
export interface TagHistoryEntry {
  digest: Digest;
  mediaType: string;
  size: number;
  /** ms since epoch: first time the proxy saw the tag point here. */
  firstSeen: number;
  /** ms since epoch: last time the upstream answered with this digest. */
  lastSeen: number;
}

/** A tag pinned to a digest: by the proxy at first sight (immutable tags) or by an operator. */
export interface TagPin {
  digest: Digest;
  pinnedAt: number;
  by: 'first-seen' | 'operator';
}

/** A blob of an admitted manifest's closure in one repository (blob gating). */
export interface AdmittedBlob {
  /** The size the admitting manifest's descriptor declares: a download is bounded by it. */
  size?: number;
  /** Largest size served, for blobs admitted only through trust material (signatures, attestations). */
  maxSize?: number;
}

/** A platform manifest admitted with the index that lists it. */
export interface AdmittedChild {
  index: Digest;
  /** The policy that admitted the index (undefined when none matched, e.g. a plain allow). */
  policy: string | undefined;
}

/**
 * The policy and trust material version a gate record was written under (opaque to the store, made
 * by the gate). A policy or trust root change gives a new scope, so old records simply stop matching.
 */
export type GateScope = string;

/** Where one gate record lives: scope, then upstream/repository@digest. */
export interface GateKey {
  scope: GateScope;
  upstream: string;
  repository: string;
  digest: Digest;
}

/**
 * Turns a stored JSON value back into the caller's type, or undefined when it is not one. Decisions
 * are the policy module's words: the store keeps them without knowing their shape, and the caller
 * says how to read them back.
 */
export type RecordParser<T> = (value: unknown) => T | undefined;

/**
 * Shared, durable state. The embedded default is SQLite (node:sqlite); Redis lets several replicas
 * share it. Keys are always scoped by upstream host and repository, and built in one place
 * (`keys.ts`). Every typed read validates what comes back: a cache record (decision, closure,
 * verified tag) that does not parse is a miss; a durable one (history, pin) that does not parse is
 * an UNKNOWN error, never a silent reset. There is deliberately no untyped `get<T>(namespace, key)`
 * here: new state gets a typed method, its key in keys.ts and a reader in records.ts.
 */
export interface MetadataStore {
  getTag(upstream: string, repository: string, tag: string): Promise<TagRecord | undefined>;
  setTag(upstream: string, repository: string, tag: string, record: TagRecord): Promise<void>;
  getManifest(upstream: string, repository: string, digest: Digest): Promise<ManifestRecord | undefined>;
  setManifest(upstream: string, repository: string, digest: Digest, record: ManifestRecord): Promise<void>;
  /** Whether a blob was seen in the repository (served from it before, or referenced by its manifests). */
  hasBlobLink(upstream: string, repository: string, digest: Digest): Promise<boolean>;
  addBlobLinks(upstream: string, repository: string, digests: readonly Digest[]): Promise<void>;

  /** A cached trust decision, read back through `parse` (the policy module owns its shape). */
  getDecision<T>(key: GateKey, parse: RecordParser<T>): Promise<T | undefined>;
  setDecision(key: GateKey, decision: unknown, ttlMs: number): Promise<void>;
  getAdmittedBlob(key: GateKey): Promise<AdmittedBlob | undefined>;
  /** Writes several blobs of one closure at once (one transaction / MULTI). */
  setAdmittedBlobs(
    key: Omit<GateKey, 'digest'>,
    blobs: ReadonlyArray<{ digest: Digest; admission: AdmittedBlob }>,
    ttlMs: number,
  ): Promise<void>;
  getAdmittedChild(key: GateKey): Promise<AdmittedChild | undefined>;
  setAdmittedChildren(
    key: Omit<GateKey, 'digest'>,
    children: readonly Digest[],
    parent: AdmittedChild,
    ttlMs: number,
  ): Promise<void>;
  /** The last digest of a tag that passed the gate (what stale-if-error may serve). */
  getVerifiedTag(upstream: string, repository: string, tag: string): Promise<TagRecord | undefined>;
  setVerifiedTag(upstream: string, repository: string, tag: string, record: TagRecord): Promise<void>;
  /** The digests a tag has pointed at, oldest first ([] when none is recorded). */
  getTagHistory(upstream: string, repository: string, tag: string): Promise<TagHistoryEntry[]>;
  setTagHistory(
    upstream: string,
    repository: string,
    tag: string,
    history: readonly TagHistoryEntry[],
  ): Promise<void>;
  getTagPin(upstream: string, repository: string, tag: string): Promise<TagPin | undefined>;
  setTagPin(upstream: string, repository: string, tag: string, pin: TagPin): Promise<void>;
  deleteTagPin(upstream: string, repository: string, tag: string): Promise<void>;

  /** Round-trip check for /readyz. */
  ping(): Promise<void>;
  close(): Promise<void>;
}
