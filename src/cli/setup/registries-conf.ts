/**
 * containers/image `registries.conf` (podman, CRI-O, skopeo, buildah) that rewrites every pull of a
 * configured upstream to pullwarden's path-prefix route `/v2/<upstream>/<repository>/…`.
 *
 * A `location` replaces the registry; `[[registry.mirror]]` entries would be tried first and then
 * fall back to the real registry, so none are written. containers/image rejects `host:port` inside a
 * location path, so an upstream with a port is named by its first alias (`upstreams.<host>.aliases`).
 */
import type { ProxyEndpoint } from './proxy-url.ts';
import { tomlString } from './toml.ts';

export interface RegistriesConfUpstream {
  host: string;
  aliases: readonly string[];
}

export interface RegistriesConf {
  text: string;
  /** Upstreams left out, each with the reason (also written into `text` as a comment). */
  warnings: string[];
}

/** The path component pullwarden can route for `upstream` in a location, or undefined. */
export function locationName(upstream: RegistriesConfUpstream): string | undefined {
  if (!upstream.host.includes(':')) return upstream.host;
  return upstream.aliases[0];
}

export function renderRegistriesConf(
  upstreams: readonly RegistriesConfUpstream[],
  proxy: ProxyEndpoint,
  opts: { defaultUpstream?: string } = {},
): RegistriesConf {
  const warnings: string[] = [];
  const lines = [
    '# containers/image registries.conf (podman, CRI-O, skopeo, buildah), written by',
    "# `pullwarden registries-conf`. Every pull of these prefixes goes to pullwarden's path-prefix route",
    '# with no fallback to the real registry: a `location`, never a `[[registry.mirror]]`.',
    '# Install as /etc/containers/registries.conf (or ~/.config/containers/registries.conf).',
  ];
  if (proxy.scheme === 'https') {
    lines.push(`# A private CA for pullwarden goes in /etc/containers/certs.d/${proxy.host}/ca.crt.`);
  }
  if (opts.defaultUpstream !== undefined) {
    lines.push('', `unqualified-search-registries = [${tomlString(opts.defaultUpstream)}]`);
  }
  for (const upstream of upstreams) {
    const name = locationName(upstream);
    lines.push('');
    if (name === undefined) {
      const warning =
        `upstream "${upstream.host}" has a port, which containers/image does not accept in a location path, ` +
        `and no alias: add one under upstreams."${upstream.host}".aliases (e.g. aliases: [my-registry]) and run this again`;
      warnings.push(warning);
      lines.push(`# WARNING: ${warning}. Pulls of ${upstream.host} are NOT routed through pullwarden.`);
      continue;
    }
    lines.push(
      '[[registry]]',
      `prefix = ${tomlString(upstream.host)}`,
      `location = ${tomlString(`${proxy.host}/${name}`)}`,
    );
    if (proxy.scheme === 'http') lines.push('insecure = true  # pullwarden serves plain HTTP');
  }
  return { text: `${lines.join('\n')}\n`, warnings };
}
