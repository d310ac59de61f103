import { RegistryError } from '../oci/index.ts';
import type { BlobTooLargeDetail } from '../cache/index.ts';
import type { DecisionDetail } from '../policy/index.ts';

/**
 * The `detail` of every DENIED refusal, as the OCI error body carries it and as the metrics and the
 * audit trail read it. A rule's refusal names itself in `reason`; a policy decision carries the
 * decision (policy, reasons, every signature checked) and no `reason`.
 */
export type DenyDetail =
  | PolicyDenial
  | UpstreamNotConfigured
  | NoDefaultUpstream
  | NotAuthorized
  | RepositoryDenied
  | TagDenied
  | TagMoved
  | TagCooldown
  | BlobNotAdmitted
  | TrustMaterialBlobTooLarge
  | BlobTooLargeDetail;

/** Why a refusal happened, one word per rule (the `reason` label of `pullwarden_denials_total`). */
export type DenyReason = Exclude<DenyDetail['reason'], undefined>;

/** The policy decided deny (service/trust-gate.ts). */
export interface PolicyDenial extends DecisionDetail {
  reason?: undefined;
  upstream: string;
  repository: string;
  digest: string;
  tag?: string;
}

/** The host the client named is not an upstream of this proxy (http/routing.ts, the service). */
export interface UpstreamNotConfigured {
  reason: 'upstream-not-configured';
  upstream: string;
}

/** No upstream named and no `defaultUpstream` (http/routing.ts). */
export interface NoDefaultUpstream {
  reason: 'no-default-upstream';
}

/** Authenticated, but not allowed to pull this repository (http/auth.ts). */
export interface NotAuthorized {
  reason: 'not-authorized';
  identity: string;
  upstream: string;
  repository: string;
}

/** Tags and referrers of a repository whose policy refuses every pull (the service). */
export interface RepositoryDenied {
  reason: 'repository-denied';
  policy: string | null;
  result: 'deny';
  reasons: string[];
  upstream: string;
  repository: string;
}

/** Tag rules (service/tag-guard.ts). */
export interface TagDenied {
  reason: 'tag-denied';
  policy: string | undefined;
  tag: string;
  rule: string;
}

export interface TagMoved {
  reason: 'tag-moved';
  policy: string | undefined;
  tag: string;
  pinned: string;
  digest: string;
}

export interface TagCooldown {
  reason: 'tag-cooldown';
  policy: string | undefined;
  tag: string;
  digest: string;
  ageMs: number;
  minAgeMs: number;
}

/** Blob gating (service/trust-gate.ts). */
export interface BlobNotAdmitted {
  reason: 'blob-not-admitted';
  upstream: string;
  repository: string;
  digest: string;
}

export interface TrustMaterialBlobTooLarge {
  reason: 'trust-material-blob-too-large';
  digest: string;
  size: number | undefined;
  maxSize: number;
}

/**
 * The deny detail of a refusal, or undefined (not a DENIED error, or an upstream's own refusal, which
 * carries none). Every DENIED this proxy throws builds its detail `satisfies DenyDetail`.
 */
export function denyDetail(err: unknown): DenyDetail | undefined {
  if (!(err instanceof RegistryError) || err.code !== 'DENIED') return undefined;
  return err.detail as DenyDetail | undefined;
}

/** The labels of `pullwarden_denials_total`: the rule's own reason, or the first signature failure. */
export function denialLabels(detail: DenyDetail | undefined): { policy: string; reason: string } {
  if (detail === undefined) return { policy: '(none)', reason: 'policy' };
  const policy = 'policy' in detail ? (detail.policy ?? '(none)') : '(none)';
  if (detail.reason !== undefined) return { policy, reason: detail.reason };
  const failure = detail.signatures.flatMap((s) => s.failures ?? [])[0]?.code;
  const unsigned = detail.signatures.length === 0 && detail.reasons.some((r) => r.includes('no signature'));
  return { policy, reason: failure ?? (unsigned ? 'no-signature' : 'policy') };
}
