import type { LoadedConfig } from '../../config/index.ts';
import { loadCommandConfig } from '../commands/config.ts';
import type { CliContext } from '../types.ts';

/**
 * The config node set-up is generated from (--config, else $PULLWARDEN_CONFIG, else the embedded
 * defaults), or undefined after printing why it is invalid.
 */
export function loadSetupConfig(
  command: string,
  flag: string | undefined,
  ctx: CliContext,
): Promise<LoadedConfig | undefined> {
  // Only upstream names and aliases matter here: a node need not hold the upstream secrets.
  return loadCommandConfig(flag, ctx, { command, resolveSecrets: false });
}
