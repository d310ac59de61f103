import type { Readable } from 'node:stream';
import type { Digest } from '../oci/index.ts';

/** A manifest as the upstream describes it on HEAD: enough to resolve a tag without a body. */
export interface ManifestHead {
  digest: Digest;
  mediaType: string;
  size: number;
}

/** A manifest body, byte-exact, with the digest checked against the bytes by the upstream client. */
export interface FetchedManifest extends ManifestHead {
  bytes: Buffer;
}

/** An upstream blob response whose status is known to be 200: the body is still streaming. */
export interface UpstreamBlob {
  body: Readable;
  /** From Content-Length; undefined when the upstream streams without one. */
  size: number | undefined;
}

export interface TagList {
  /** The upstream JSON body, passed through byte-exact. */
  body: Buffer;
  /** The `Link` header for the next page, rewritten by the http layer. */
  link?: string;
}

export interface ReferrersAnswer {
  body: Buffer;
  mediaType: string;
  /** `OCI-Filters-Applied` from the upstream, when it applied the artifactType filter. */
  filtersApplied?: string;
}

export interface RequestOptions {
  /** Media types the client accepts, most preferred first (manifests only). */
  accept?: readonly string[];
  signal?: AbortSignal;
}

/**
 * One configured upstream registry. Implementations throw `RegistryError`: MANIFEST_UNKNOWN /
 * BLOB_UNKNOWN / NAME_UNKNOWN for 404, TOOMANYREQUESTS (with retryAfter) for 429, DENIED for an upstream
 * that refuses our credentials, UNAVAILABLE for 5xx, timeouts and connection failures, and also
 * UNAVAILABLE when the bytes do not match the digest that was promised (a bad upstream is an outage,
 * never a success); MANIFEST_INVALID for a manifest over the size limit.
 */
export interface Upstream {
  /** The registry host clients name (config key), e.g. `docker.io`. */
  readonly host: string;
  /** Resolve a tag (or check a digest) with HEAD; falls back to GET when the upstream sends no digest. */
  headManifest(repository: string, reference: string, options?: RequestOptions): Promise<ManifestHead>;
  /** GET a manifest; the digest is computed over the bytes (and checked when `reference` is a digest). */
  getManifest(repository: string, reference: string, options?: RequestOptions): Promise<FetchedManifest>;
  /** GET a blob, following redirects (credentials are stripped when the redirect leaves the origin). */
  getBlob(repository: string, digest: Digest, options?: RequestOptions): Promise<UpstreamBlob>;
  /** HEAD a blob: its size, or BLOB_UNKNOWN. */
  headBlob(repository: string, digest: Digest, options?: RequestOptions): Promise<{ size: number }>;
  listTags(
    repository: string,
    query: { n?: number; last?: string },
    options?: RequestOptions,
  ): Promise<TagList>;
  /** The referrers API answer, or `undefined` when the upstream does not implement it (404 on the API). */
  getReferrers(
    repository: string,
    digest: Digest,
    artifactType: string | undefined,
    options?: RequestOptions,
  ): Promise<ReferrersAnswer | undefined>;
  close(): Promise<void>;
}
