export { RegistryService } from './registry-service.ts';
export type {
  BlobHeadResult,
  ManifestCacheState,
  ManifestResult,
  RegistryServiceOptions,
  UpstreamEntry,
} from './registry-service.ts';
export { Metrics } from './metrics.ts';
export { SingleFlight } from './single-flight.ts';
export { TrustGate, isTrustMaterial } from './trust-gate.ts';
export type { GateManifest, ManifestContent, TrustContext } from './trust-gate.ts';
export type { Target } from './target.ts';
export { TagGuard } from './tag-guard.ts';
export type { TagHistoryEntry, TagMove, TagPin } from './tag-guard.ts';
export { buildInventory, signerLabel } from './inventory.ts';
export type {
  Inventory,
  InventoryDenial,
  InventoryEntry,
  InventoryOptions,
  InventorySources,
} from './inventory.ts';
export { configuredUpstream, resolveImageReference, targetIn } from './resolve-target.ts';
export type { ResolvedReference, UpstreamNames } from './resolve-target.ts';
export { checkReference } from './check.ts';
export type { CheckResult } from './check.ts';
export { denialLabels, denyDetail } from './deny-detail.ts';
export type { DenyDetail, DenyReason, PolicyDenial } from './deny-detail.ts';
export { PullAudit, pullFacts } from './pull-audit.ts';
export type {
  PullAuditOptions,
  PullFacts,
  PullKind,
  PullOutcome,
  PullRequest,
  PullVerdict,
} from './pull-audit.ts';
