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
