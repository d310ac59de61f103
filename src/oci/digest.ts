import { createHash } from 'node:crypto';
import { RegistryError } from './errors.ts';

/** A validated `sha256:<64 lowercase hex>` (or sha512) digest string. */
export type Digest = string & { readonly __brand: 'Digest' };

// OCI image-spec "Digests": registered algorithms with their exact encoded lengths. We only accept the
// registered ones because an unregistered algorithm cannot be checked, and unchecked bytes never enter
// the cache.
const DIGEST_RE = /^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$/;

export function isDigest(value: string): value is Digest {
  return DIGEST_RE.test(value);
}

/** Parse a digest or throw DIGEST_INVALID. */
export function parseDigest(value: string): Digest {
  if (!isDigest(value)) throw new RegistryError('DIGEST_INVALID', `invalid digest "${truncate(value)}"`);
  return value;
}

export function digestAlgorithm(d: Digest): 'sha256' | 'sha512' {
  return d.startsWith('sha512:') ? 'sha512' : 'sha256';
}

export function digestHex(d: Digest): string {
  return d.slice(d.indexOf(':') + 1);
}

export function sha256Digest(bytes: Uint8Array): Digest {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}` as Digest;
}

/** Digest of `bytes` computed with the algorithm of `expected`, for verification. */
export function digestOf(bytes: Uint8Array, algorithm: 'sha256' | 'sha512'): Digest {
  return `${algorithm}:${createHash(algorithm).update(bytes).digest('hex')}` as Digest;
}

export function truncate(s: string, max = 80): string {
  return s.length <= max ? s : `${s.slice(0, max)}…`;
}
