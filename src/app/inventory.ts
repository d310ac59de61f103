import { dirname } from 'node:path';
import { auditChainDirs } from '../audit/index.ts';
import { readCachedBlob } from '../cache/index.ts';
import type { LoadedConfig } from '../config/index.ts';
import type { InventorySources } from '../service/index.ts';

/**
 * The audit chains an inventory reads: this deployment's, or on a shared storage directory every
 * replica's, not only this one's (the admin page and `pullwarden inventory` alike).
 */
export async function auditTrailDirs(config: LoadedConfig): Promise<string | string[]> {
  return config.storage.shared ? auditChainDirs(dirname(config.audit.dir)) : config.audit.dir;
}

/** What `pullwarden inventory` reads for a config: its audit chains and its blob cache, read-only. */
export async function inventorySources(config: LoadedConfig): Promise<InventorySources> {
  const storage = config.storage.dir;
  return {
    auditDir: await auditTrailDirs(config),
    readBlob: (digest, max) => readCachedBlob(storage, digest, max),
  };
}
