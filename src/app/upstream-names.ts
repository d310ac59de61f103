import type { LoadedConfig } from '../config/index.ts';
import type { UpstreamNames } from '../service/index.ts';

/** Other names of the configured upstreams (`upstreams.<host>.aliases`): alias → configured host. */
export function upstreamAliases(config: LoadedConfig): Map<string, string> {
  const aliases = new Map<string, string>();
  for (const [host, upstream] of Object.entries(config.upstreams)) {
    for (const alias of upstream.aliases) aliases.set(alias, host);
  }
  return aliases;
}

/** The configured upstreams by name, for resolving references without a running service. */
export function upstreamNames(config: LoadedConfig): UpstreamNames {
  const aliases = upstreamAliases(config);
  return {
    resolveHost: (host) => (host in config.upstreams ? host : aliases.get(host)),
    defaultUpstream: config.defaultUpstream,
  };
}
