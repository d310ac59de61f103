/**
 * Shared: the words two modules share, below every other module (it imports nothing from `src/`).
 * Units as operators write them (durations, sizes) and their zod schemas, the did-you-mean hint, and
 * the HTTP byte range.
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
