import type { Digest } from '../oci/index.ts';
import type { Attestor, DecisionResult, EvidenceSource, SignerIdentity } from '../shared/index.ts';
import type { Gate, GateResult } from './gates/types.ts';

export type PolicyAction = 'allow' | 'deny' | 'verify';
export type PolicyMode = 'enforce' | 'warn';

export interface Policy {
  name: string;
  /** Globs over `<upstream host>/<repository>`: `*` within one path component, `**` across. */
  match: string[];
  action: PolicyAction;
  mode: PolicyMode;
  signatures?: { threshold: number; attestors: Attestor[] };
  attestations?: { predicateType: string; attestors: Attestor[] }[];
  tags?: TagRules;
  /**
   * Where signatures and attestations of this policy's repositories are stored, in the same upstream
   * (cosign's `COSIGN_REPOSITORY`, Kyverno's `repository`); default: the repository itself.
   */
  signatureRepository?: string;
  /** Conditions on what was attested (verify only), each with its own mode. */
  gates?: Gate[];
}

/** Per-policy tag rules (tag drift control). */
export interface TagRules {
  onMove: 'allow' | 'warn' | 'deny';
  /** Pin the first digest seen; moves are denied until an operator pins or unpins. */
  immutable: boolean;
  /** ms a newly seen digest must have been known before it is served by tag. */
  minAge: number;
  /** Tag globs that are never served. */
  deny: string[];
}

/** How one signature fared against the policy: the detail a 403 lists. */
export interface SignatureCheck {
  source: EvidenceSource;
  kind: 'signature' | 'attestation';
  manifestDigest: Digest;
  predicateType?: string;
  ok: boolean;
  /** The attestor it satisfied (ok) — or, when failed, the reason from each attestor tried. */
  attestor?: string;
  failures?: { attestor: string; code: string; reason: string }[];
  signer?: SignerIdentity;
}

export type { DecisionResult };

export interface Decision {
  result: DecisionResult;
  /** Name of the matched policy; undefined when no policy matched (that is a deny). */
  policy: string | undefined;
  /** Human-readable reasons, most important first. */
  reasons: string[];
  /** Verified signer identities that counted. */
  signers: SignerIdentity[];
  checks: SignatureCheck[];
  /** Each gate's outcome, in policy order (verify policies with gates). */
  gates?: GateResult[];
}
