/**
 * containers/image `registries.conf` (podman, CRI-O, skopeo, buildah) that rewrites every pull of a
 * configured upstream to pullwarden's path-prefix route `/v2/<upstream>/<repository>/…`.
 *
 * A `location` replaces the registry; `[[registry.mirror]]` entries would be tried first and then
 * fall back to the real registry, so none are written. containers/image rejects `host:port` inside a
 * location path, so an upstream with a port is named by its first alias (`upstreams.<host>.aliases`).
 *
 * What registries.conf cannot do: route a registry it does not list. A `prefix` names a host, a
 * repository, or `*.domain` (subdomains of one domain); there is no catch-all like containerd's
 * `_default`, so a pull of any other registry goes straight to it. The catch-all containers/image
 * has is its signature policy (`policy.json`, `containers-policy.json(5)`): a `default` of `reject`
 * with the routed prefixes (and the proxy itself) accepted refuses every image of any other registry.
 * It is not a network block: containers/image reads the manifest (`GET /v2/`, the manifest, any
 * signatures) to evaluate the policy and then stops; no layer is fetched, nothing is stored
 * (podman 4.3 observed, test/e2e/node-setup.test.ts). {@link renderPolicyJson} writes that file.
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
  lines.push(
    '#',
    '# NOT covered here: registries that are not listed below. registries.conf has no catch-all prefix',
    '# (a prefix names a host, a repository or *.domain), so containers/image pulls any other registry',
    '# directly. Refuse their images on the node with the policy.json that `pullwarden registries-conf',
    '# --policy-json /etc/containers/policy.json` writes (default: reject; these prefixes: accepted):',
    '# containers/image still reads their manifest to apply it, but fetches no layer. Close egress too.',
  );
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

/**
 * containers/image `policy.json` that is the catch-all registries.conf lacks: every `docker://`
 * reference is rejected unless it names a routed upstream (which registries.conf rewrites to the
 * proxy) or the proxy itself. Local transports (archives, containers-storage, …) stay accepted, so
 * `podman load` and local builds keep working. The signature checks are pullwarden's; this file only
 * closes the direct path.
 */
export function renderPolicyJson(upstreams: readonly RegistriesConfUpstream[], proxy: ProxyEndpoint): string {
  const accept = [{ type: 'insecureAcceptAnything' }];
  const docker: Record<string, typeof accept> = { [proxy.host]: accept };
  for (const upstream of upstreams) if (locationName(upstream) !== undefined) docker[upstream.host] = accept;
  const local = { '': accept };
  const policy = {
    default: [{ type: 'reject' }],
    transports: {
      docker,
      'docker-archive': local,
      'oci-archive': local,
      oci: local,
      dir: local,
      'containers-storage': local,
      tarball: local,
    },
  };
  return `${JSON.stringify(policy, null, 2)}\n`;
}
