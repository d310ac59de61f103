import { pipeline, Transform } from 'node:stream';
import { RegistryError } from '../oci/index.ts';
import type { Digest } from '../oci/index.ts';
import type { UpstreamBlob } from '../upstream/index.ts';

/** Why an upstream's blob answer was refused for its size (the metric's `reason` label). */
export type BlobSizeRefusal = 'size-mismatch' | 'larger-than-declared' | 'shorter-than-declared';

/** What a refusal names: the reason, and the bytes the upstream claimed or had sent by then. */
export interface BlobSizeProblem {
  reason: BlobSizeRefusal;
  digest: Digest;
  /** The size the admitted manifest's descriptor declares. */
  declared: number;
  /**
   * Content-Length (size-mismatch), bytes received when the body passed `declared`, or bytes received
   * when a body ended short of it.
   */
  received: number;
}

/**
 * An upstream blob answer bounded by the size its admitted manifest declares: a Content-Length that
 * differs is refused before one byte of the body is read, and a body without one is cut the moment it
 * passes the declared size (the bytes of a digest have exactly one length, so more can never match;
 * without the bound a lying upstream is hashed up to storage.maxBlobSize and then discarded), and a
 * body that ends short of it is refused as well (with a reason, not as a bare cache mismatch). The
 * answer carries the declared size, so the cache checks it to the byte and clients get it as
 * Content-Length. `refuse` turns the problem into the error (and logs and counts it).
 */
export function boundToDeclaredSize(
  blob: UpstreamBlob,
  digest: Digest,
  declared: number,
  refuse: (problem: BlobSizeProblem) => RegistryError,
): UpstreamBlob {
  if (blob.size !== undefined && blob.size !== declared) {
    blob.body.destroy();
    throw refuse({ reason: 'size-mismatch', digest, declared, received: blob.size });
  }
  let received = 0;
  const bounded = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      received += chunk.length;
      if (received > declared) {
        callback(refuse({ reason: 'larger-than-declared', digest, declared, received }));
        return;
      }
      callback(null, chunk);
    },
    flush(callback) {
      if (received < declared) {
        callback(refuse({ reason: 'shorter-than-declared', digest, declared, received }));
        return;
      }
      callback();
    },
  });
  // Either side failing ends both: a cut body closes the upstream connection, a fill that stops
  // reading (abandoned, refused) destroys the upstream body. Errors reach the reader of `bounded`.
  pipeline(blob.body, bounded, () => undefined);
  return { body: bounded, size: declared };
}

/** The message and detail of a size refusal, as the client and the log see it. */
export function sizeRefusalError(upstream: string, repository: string, p: BlobSizeProblem): RegistryError {
  const said =
    p.reason === 'size-mismatch'
      ? `announced ${p.received} bytes (Content-Length)`
      : p.reason === 'larger-than-declared'
        ? `sent more than ${p.declared} bytes`
        : `sent only ${p.received} bytes`;
  return new RegistryError(
    'UNAVAILABLE',
    `upstream ${upstream} ${said} for ${repository}@${p.digest}, whose admitted manifest declares ${p.declared}; not cached`,
    {
      detail: {
        reason: `blob-${p.reason}`,
        upstream,
        repository,
        digest: p.digest,
        size: p.declared,
        received: p.received,
      },
    },
  );
}
