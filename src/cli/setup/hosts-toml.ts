/**
 * containerd `certs.d/<host>/hosts.toml` (containerd 1.5+, "registry host namespace"), as containerd
 * 1.6/1.7 read it (remotes/docker/config/hosts.go):
 *
 * - The directory for a pull of `<host>/<repository>` is the first that exists of `<h>_<port>_`
 *   (only for a host with a port), `<host>` itself (`127.0.0.1:5000`, `docker.io`) and `_default`.
 *   All three observed with containerd 1.6.20 (test/e2e/node-setup.test.ts); we write `host:port`,
 *   the name containerd's docs use, and doctor reports a `<h>_<port>_` that would shadow it.
 *   A directory without hosts.toml means: the real registry, with any `*.crt` found there.
 * - `[host."URL"]` entries are tried in file order, then `server`; containerd moves on to the next
 *   one when a host answers 4xx/5xx or cannot be reached. `server` defaults to `https://<host>`
 *   (`https://registry-1.docker.io` for docker.io). So only `server` = pullwarden leaves no way
 *   around a refusal.
 * - A URL without a scheme is https; `/v2` is appended to the path unless `override_path = true`.
 * - `capabilities` default to pull, resolve and push.
 */
import { canonicalHost } from '../../oci/index.ts';
import type { ProxyEndpoint } from './proxy-url.ts';
import { isTable, parseToml, tomlString } from './toml.ts';
import type { TomlTable, TomlValue } from './toml.ts';

/**
 * The directory containerd reads for a registry that has none of its own (containerd 1.5+, and 2.x).
 * Written by `hosts-toml` so that unconfigured registries reach pullwarden (and its 403) instead of
 * the internet.
 */
export const DEFAULT_HOST_DIR = '_default';

/**
 * The name containerd uses for `host` (its certs.d directory is this name, see the module doc): the
 * canonical host, since clients that normalize references (CRI, nerdctl, Docker) pull Docker Hub's
 * other names as `docker.io`.
 */
export function containerdHostName(host: string): string {
  return canonicalHost(host);
}

/**
 * Directories containerd tries for `host`, in order (the first that exists wins). `_default` is
 * left out: it is reported separately.
 */
export function containerdHostDirs(host: string): string[] {
  const name = containerdHostName(host);
  const colon = name.lastIndexOf(':');
  return colon > 0 ? [`${name.slice(0, colon)}_${name.slice(colon + 1)}_`, name] : [name];
}

export interface HostsTomlOptions {
  /** PEM CA bundle that signed pullwarden's certificate (an https proxy). */
  ca?: string;
  /** Client certificate and key presented to pullwarden (an https proxy that asks for one). */
  client?: { cert: string; key: string };
  /** `skip_verify = true`: accept any certificate. Only when asked for explicitly. */
  skipVerify?: boolean;
}

/**
 * The hosts.toml that sends every pull of `upstream` to pullwarden: `server` and the one mirror
 * host are both the proxy, so a refusal (403) has nothing to fall back to.
 */
export function renderHostsToml(upstream: string, proxy: ProxyEndpoint, opts: HostsTomlOptions = {}): string {
  const tls: string[] = [];
  if (opts.ca !== undefined) tls.push(`ca = ${tomlString(opts.ca)}`);
  if (opts.client !== undefined) {
    tls.push(`client = [[${tomlString(opts.client.cert)}, ${tomlString(opts.client.key)}]]`);
  }
  if (opts.skipVerify === true) tls.push('skip_verify = true');
  const caps = 'capabilities = ["pull", "resolve"]';
  const head =
    upstream === DEFAULT_HOST_DIR
      ? [
          '# containerd hosts.toml for every registry without a directory of its own (_default), written by',
          '# `pullwarden hosts-toml`. Pulls of registries that are not pullwarden upstreams reach pullwarden',
          '# too, which refuses them (403, upstream-not-configured) and audits them: no direct path.',
        ]
      : [
          `# containerd hosts.toml for ${containerdHostName(upstream)}, written by \`pullwarden hosts-toml\`.`,
        ];
  return [
    ...head,
    '# Both the mirror host and `server` are pullwarden: containerd falls back to the next host and',
    '# finally to `server` when a host refuses (4xx/5xx) or is down, so the real registry must not be',
    '# `server` here, or every refusal would become a direct pull. Check with `pullwarden doctor`.',
    `server = ${tomlString(proxy.url)}`,
    caps,
    ...tls,
    '',
    `[host.${tomlString(proxy.url)}]`,
    ...[caps, ...tls].map((l) => `  ${l}`),
    '',
  ].join('\n');
}

/** One endpoint of a hosts.toml, as containerd will use it. */
export interface HostsEndpoint {
  /** As written (`server`, or the key of `[host."…"]`). */
  raw: string;
  /** `scheme://host[:port]/path` with containerd's defaults applied (https, `/v2`). */
  effective: string;
  capabilities: string[];
  skipVerify: boolean;
}

/** What a hosts.toml routes to, in the order containerd tries it. */
export interface HostsRoute {
  /** `[host."…"]` entries in file order. */
  hosts: HostsEndpoint[];
  /** The `server` entry (containerd's default when the file has none). */
  server: HostsEndpoint;
  /** Whether `server` was written in the file. */
  serverExplicit: boolean;
}

/** containerd's default `server` for a host. */
export function defaultServer(host: string): string {
  const name = containerdHostName(host);
  return name === 'docker.io' ? 'https://registry-1.docker.io' : `https://${name}`;
}

/**
 * `url` as containerd resolves it: https when no scheme, `/v2` appended unless override_path, lower
 * case host, default port dropped. Returns undefined for a URL containerd would reject.
 */
export function effectiveEndpoint(url: string, overridePath = false): string | undefined {
  const withScheme = /^https?:\/\//i.test(url) ? url : `https://${url}`;
  if (!URL.canParse(withScheme)) return undefined;
  const u = new URL(withScheme);
  let path = u.pathname.replace(/\/+$/, '');
  if (!overridePath && !path.endsWith('/v2')) path = `${path}/v2`;
  return `${u.protocol}//${u.host}${path}`;
}

function strings(v: TomlValue | undefined): string[] | undefined {
  if (!Array.isArray(v)) return undefined;
  return v.filter((x): x is string => typeof x === 'string');
}

function endpoint(raw: string, table: TomlTable): HostsEndpoint | string {
  const override = table['override_path'] === true;
  const effective = effectiveEndpoint(raw, override);
  if (effective === undefined) return `"${raw}" is not a URL containerd can use`;
  const caps = table['capabilities'];
  let capabilities = ['pull', 'resolve', 'push'];
  if (caps !== undefined) {
    const list = strings(caps);
    if (list === undefined) return `capabilities of "${raw}" must be an array of strings`;
    capabilities = list;
  }
  return { raw, effective, capabilities, skipVerify: table['skip_verify'] === true };
}

/**
 * Parse a hosts.toml into the endpoints containerd will try for `upstream`. Throws TomlError on a
 * syntax error and Error on a file containerd would reject.
 */
export function readHostsToml(text: string, upstream: string): HostsRoute {
  const doc = parseToml(text);
  const hosts: HostsEndpoint[] = [];
  const hostTables = doc['host'];
  if (hostTables !== undefined) {
    if (!isTable(hostTables)) throw new Error('"host" must be a table of [host."URL"] entries');
    for (const [raw, table] of Object.entries(hostTables)) {
      if (!isTable(table)) throw new Error(`host."${raw}" must be a table`);
      const e = endpoint(raw, table);
      if (typeof e === 'string') throw new Error(e);
      hosts.push(e);
    }
  }
  const serverValue = doc['server'];
  if (serverValue !== undefined && typeof serverValue !== 'string')
    throw new Error('server must be a string');
  const server = endpoint(serverValue ?? defaultServer(upstream), doc);
  if (typeof server === 'string') throw new Error(server);
  return { hosts, server, serverExplicit: serverValue !== undefined };
}
