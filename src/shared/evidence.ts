/**
 * The evidence words trust produces and policy judges: what was found for a digest, who signed it, how
 * a verification came out. Defined here, below both, so neither imports the other.
 */
import type { Bundle } from '@sigstore/bundle';
import type { Digest } from '../oci/index.ts';

/** Where a signature or attestation was found for a digest. */
export type EvidenceSource = 'referrers' | 'tag-schema' | 'cosign-sig' | 'cosign-att';

/**
 * One signature or attestation found for a subject digest, converted to a Sigstore bundle, not yet
 * verified. Classic cosign signatures are converted (v0.1 bundle + the simplesigning payload as the
 * artifact); referrers bundles are parsed as they are.
 */
export interface FoundSignature {
  source: EvidenceSource;
  kind: 'signature' | 'attestation';
  /** Digest of the manifest that carried it (the `.sig`/`.att` manifest, or the referrer). */
  manifestDigest: Digest;
  /** Digest of the layer (blob) holding the payload or bundle. */
  layerDigest: Digest;
  bundle: Bundle;
  /** The signed bytes for message signatures (the simplesigning payload); absent for DSSE. */
  artifact?: Buffer;
  /** in-toto predicate type for DSSE attestations (and cosign v3 "signatures", which are attestations). */
  predicateType?: string;
  /** Bytes received for the layer (attestation gates compare it with their `maxBytes`; the gate's evidence memo counts it). */
  size?: number;
  /** A problem found while parsing it (then `bundle` may be a placeholder and verification fails). */
  parseError?: string;
}

export interface Evidence {
  subject: Digest;
  items: FoundSignature[];
  /** Upstream requests made to discover (the benchmark prints these). */
  roundTrips: number;
  /** Discovery problems that did not stop discovery (e.g. a malformed `.sig` manifest). */
  problems: string[];
}

/** Who signed, once verified: a configured key, or a certificate identity. */
export type SignerIdentity =
  { kind: 'key'; key: string } | { kind: 'keyless'; issuer: string; subject: string };

/** An attestor from the policy: a named key, or a keyless identity under a named trust root. */
export type Attestor =
  | { key: string; tlog?: boolean }
  | { keyless: { root: string; issuer: string; subject?: string; subjectRegExp?: string } };

export type VerifyOutcome =
  | { ok: true; signer: SignerIdentity }
  | {
      ok: false;
      /** Short machine code: untrusted-root, identity-mismatch, issuer-mismatch, digest-mismatch,
       *  signature-invalid, certificate-expired, no-codesigning-eku, tlog-missing, tlog-invalid,
       *  unknown-key, invalid-attestor, wrong-predicate, malformed. */
      code: string;
      reason: string;
    };

/** Verifies found signatures against attestors. CPU only: no I/O once constructed. */
export interface SignatureVerifier {
  /** Changes whenever keys or trust roots change; part of the decision cache key. */
  readonly version: string;
  verify(found: FoundSignature, attestor: Attestor, subject: Digest): VerifyOutcome;
}
