// The evidence words live in the shared leaf (policy and audit use them too); trust's surface keeps them.
export type {
  Attestor,
  Evidence,
  EvidenceSource,
  FoundSignature,
  SignatureVerifier,
  SignerIdentity,
  VerifyOutcome,
} from '../shared/index.ts';
export type * from './predicates/types.ts';
