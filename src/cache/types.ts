import type { Readable } from 'node:stream';
import type { Digest } from '../oci/index.ts';
import type { BlobCacheState, ByteRange } from '../shared/index.ts';

/**
 * What a fill reads: a blob body whose status is known to be a success, still streaming. The cache
 * hashes and counts it; it trusts neither the bytes nor `size`. (`Upstream.getBlob` answers this
 * shape; the cache does not know who produced it.)
 */
export interface BlobSource {
  body: Readable;
  /** From Content-Length; undefined when the source streams without one. */
  size: number | undefined;
}

/** The detail of a DENIED blob fill: the blob is larger than the cache may hold (see service's DenyDetail). */
export interface BlobTooLargeDetail {
  reason: 'blob-too-large';
  digest: string;
  /** Its announced size; absent when the fill passed the limit while it ran. */
  size?: number;
  limit: number;
}

/**
 * A blob that can be read: complete on disk, or still being filled from upstream. Holding a handle
 * keeps the blob from eviction; call `release()` when the response is done (idempotent).
 */
export interface BlobHandle {
  readonly digest: Digest;
  /** Total size when known (always known for a complete blob; from Content-Length during a fill). */
  readonly size: number | undefined;
  readonly state: BlobCacheState;
  /**
   * Bytes [range.start, range.end] (or all). During a fill the stream follows the file as it grows and
   * is destroyed with an error if the fill fails (digest mismatch, truncated upstream body). It holds
   * back the last byte and does not end until the fill was verified, so a response never completes
   * with unverified bytes. Throws RANGE_INVALID for a range outside a blob of known size.
   */
  createReadStream(range?: ByteRange): Readable;
  /**
   * Hands a chunk of one of this handle's streams back for reuse, once every byte of it was written
   * to the socket (the write's callback, without error). Never for a chunk anything still holds: the
   * buffer is read into again. Optional: a store that does not pool its read buffers has none.
   */
  readonly recycle?: (chunk: Uint8Array) => void;
  release(): void;
}

export interface BlobStoreStats {
  bytes: number;
  blobs: number;
  fillsInFlight: number;
  /** Bytes running fills hold against the size limit. */
  reservedBytes: number;
}

/** Content-addressed blob storage with single-flight fills. Nothing enters it unhashed. */
export interface BlobStore {
  /** Size of a complete blob, or undefined. Does not touch LRU order. */
  stat(digest: Digest): Promise<{ size: number } | undefined>;
  /** A handle on a complete blob, or undefined when it is not cached. */
  open(digest: Digest): Promise<BlobHandle | undefined>;
  /**
   * A handle on the blob: cached, joined to a running fill, or a new fill from `fetch()`. Exactly one
   * `fetch()` runs per digest at a time however many callers ask. Resolves once the upstream answered
   * (so the caller can pick a status before the first byte) and rejects with the upstream's error.
   * The fill goes on when the caller (or every caller) goes away; it is verified (size + digest),
   * fsync'd and renamed into place, or discarded.
   */
  getOrFill(digest: Digest, fetch: () => Promise<BlobSource>): Promise<BlobHandle>;
  /** Store small content (manifests) whose digest the caller has already checked. Idempotent. */
  putBytes(digest: Digest, bytes: Buffer): Promise<void>;
  /** Read small content stored with putBytes (or any complete blob) into memory. */
  readBytes(digest: Digest, maxBytes: number): Promise<Buffer | undefined>;
  stats(): BlobStoreStats;
  /** Wait for running fills to end (used by graceful shutdown and tests). */
  close(): Promise<void>;
}
