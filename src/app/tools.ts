/**
 * The app's surface for the commands that start no server: the audit trail's offline tools, the
 * inventory, the tag rules' state, the file checks of `config validate`, and the logger set-up.
 * Commands reach every module below the app through here or through src/app.ts (the lint fences it).
 */
export {
  auditChains,
  parseTimeBound,
  queryAuditTrail,
  readChainTail,
  verifyAuditTrail,
  verifyingKey,
} from '../audit/index.ts';
export type { AuditQuery, AuditRecord, AuditVerifyOptions, AuditVerifyResult } from '../audit/index.ts';
export { buildInventory } from '../service/index.ts';
export type { CheckResult, InventoryEntry, InventoryOptions, InventorySources } from '../service/index.ts';
export type { GateResult, SignatureCheck } from '../policy/index.ts';
export type { SignerIdentity } from '../trust/index.ts';
export { fileParsers } from './file-parsers.ts';
export { inventorySources } from './inventory.ts';
export { createLogger } from './logger.ts';
export type { LogTimestamp } from './logger.ts';
export { openTagAdmin } from './tags.ts';
export type { TagAdmin, TagRef } from './tags.ts';
export { upstreamNames } from './upstream-names.ts';
