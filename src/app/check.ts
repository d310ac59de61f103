import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { LoadedConfig } from '../config/index.ts';
import { checkReference } from '../service/index.ts';
import type { CheckResult } from '../service/index.ts';
import { buildApp } from './compose.ts';
import { silentLogger } from './logger.ts';

/**
 * `pullwarden check`: the service's `check` use case ({@link checkReference}) on an app built from
 * the config in a private temporary store, so that it never disturbs the cache or metadata of a proxy
 * running from the same config.
 */
export async function checkImage(config: LoadedConfig, reference: string): Promise<CheckResult> {
  const dir = await mkdtemp(join(tmpdir(), 'pullwarden-check-'));
  const isolated: LoadedConfig = {
    ...config,
    storage: { ...config.storage, dir },
    metadata: { ...config.metadata, url: 'sqlite://:memory:' },
    // A dry run is not a pull: its events go to the private directory, not the proxy's trail.
    audit: { ...config.audit, dir: join(dir, 'audit') },
    trust: { ...config.trust, refresh: 0 },
  };
  const app = await buildApp(isolated, { logger: silentLogger(), defaultMetrics: false });
  try {
    return await checkReference(app.service, reference, config.defaultUpstream);
  } finally {
    await app.close();
    await rm(dir, { recursive: true, force: true });
  }
}
