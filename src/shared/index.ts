/**
 * Shared: the words two modules share, below the adapters (it imports only oci). Units as operators
 * write them (durations, sizes) and their zod schemas, the one glob compiler, the evidence words
 * (signer identity, found signature, attestation content), the decision result, the did-you-mean
 * hint, the HTTP byte range, and the cache states of an answer.
 */
// The one logger interface (object first, then a lower-case message).
export { noopLogger } from './logger.ts';
export type { Logger } from './logger.ts';
export {
  DURATION_PATTERN,
  SIZE_PATTERN,
  formatDuration,
  formatSize,
  parseDuration,
  parseSize,
} from './units.ts';
export { UNIT_SCHEMAS, duration, size, unitSchema } from './zod-units.ts';
export { didYouMean, suggest } from './suggest.ts';
export type { ByteRange } from './byte-range.ts';
export { readAtMost } from './read-at-most.ts';
export type {
  Attestor,
  Evidence,
  EvidenceSource,
  FoundSignature,
  SignatureVerifier,
  SignerIdentity,
  VerifyOutcome,
} from './evidence.ts';
export type * from './attestation.ts';
export { SEVERITIES } from './attestation.ts';
export type { DecisionResult } from './decision.ts';
export type { TrustKeyConfig, TrustRootConfig } from './trust-material.ts';
export { anyGlobToRegExp, globSource, globToRegExp, PATH_GLOB, pathGlobProblem } from './glob.ts';
export type { GlobOptions } from './glob.ts';
export type { BlobCacheState, CacheState, ManifestCacheState, RecordedCacheState } from './cache-state.ts';
export { recordedCacheState } from './cache-state.ts';
