import { ConfigError, loadConfig } from '../../config/index.ts';
import type { LoadedConfig } from '../../config/index.ts';
import { configPath } from '../commands/config.ts';
import type { CliContext } from '../types.ts';

/**
 * The config node set-up is generated from (--config, else $PULLWARDEN_CONFIG, else the embedded
 * defaults), or undefined after printing why it is invalid.
 */
export async function loadSetupConfig(
  command: string,
  flag: string | undefined,
  ctx: CliContext,
): Promise<LoadedConfig | undefined> {
  try {
    // Only upstream names and aliases matter here: a node need not hold the upstream secrets.
    return await loadConfig(configPath(flag, ctx.env), ctx.env, { cwd: ctx.cwd, resolveSecrets: false });
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    ctx.stderr.write(`pullwarden ${command}: invalid configuration\n${error.message}\n`);
    return undefined;
  }
}
