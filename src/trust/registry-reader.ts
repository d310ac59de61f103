import type { Readable } from 'node:stream';
import type { Digest } from '../oci/index.ts';

/** Per-request options discovery passes through to the registry it reads. */
export interface ReadOptions {
  /** Media types accepted, most preferred first (manifests only). */
  accept?: readonly string[];
  signal?: AbortSignal;
}

/** A manifest body, byte-exact, its digest checked against the bytes by the reader. */
export interface ReadManifest {
  digest: Digest;
  mediaType: string;
  bytes: Buffer;
}

/**
 * The slice of a registry that signature discovery and referrers listing read: trust's own port, so
 * trust does not depend on the upstream module. The service passes its `Upstream` in (it has these
 * methods with these meanings); not-found answers throw `RegistryError` MANIFEST_UNKNOWN /
 * BLOB_UNKNOWN / NAME_UNKNOWN, outages UNAVAILABLE or TOOMANYREQUESTS.
 */
export interface RegistryReader {
  getManifest(repository: string, reference: string, options?: ReadOptions): Promise<ReadManifest>;
  /** A blob body still streaming, with its Content-Length when sent; the caller checks the digest. */
  getBlob(
    repository: string,
    digest: Digest,
    options?: ReadOptions,
  ): Promise<{ body: Readable; size: number | undefined }>;
  /** The referrers API answer, or `undefined` when the registry does not implement the API. */
  getReferrers(
    repository: string,
    digest: Digest,
    artifactType: string | undefined,
    options?: ReadOptions,
  ): Promise<{ body: Buffer; mediaType: string; filtersApplied?: string } | undefined>;
}
