import {
  canonicalHost,
  isRegistryHost,
  parseDigest,
  parseManifestReference,
  parseRepositoryName,
  RegistryError,
  truncate,
} from '../oci/index.ts';
import type { Digest, ManifestReference } from '../oci/index.ts';
import { configuredUpstream, targetIn } from '../service/index.ts';
import type { DenyDetail, Target, UpstreamNames } from '../service/index.ts';

export { canonicalHost };

/** What a `/v2/…` request asks for, once the path and `ns=` are parsed. */
export type RegistryRoute =
  | { kind: 'base' }
  | { kind: 'manifest'; target: Target; reference: ManifestReference; name: string }
  | { kind: 'blob'; target: Target; digest: Digest; name: string }
  | { kind: 'upload'; name: string }
  | { kind: 'tags'; target: Target; name: string }
  | { kind: 'referrers'; target: Target; digest: Digest; name: string };

/** What routing needs of the config: the configured upstreams by name and the default one. */
export type RoutingConfig = UpstreamNames;

/** Longest path we look at: distribution's 255-character names plus a host prefix and a reference. */
const MAX_PATH = 1024;

// Order matters: the repository name is greedy, the suffix is matched at the end, as distribution's
// router does (`/v2/{name:…}/manifests/{reference}`).
const PATTERNS: { kind: 'manifest' | 'blob' | 'upload' | 'tags' | 'referrers'; re: RegExp }[] = [
  { kind: 'upload', re: /^\/v2\/(.+)\/blobs\/uploads(?:\/.*)?$/ },
  { kind: 'manifest', re: /^\/v2\/(.+)\/manifests\/([^/]+)$/ },
  { kind: 'blob', re: /^\/v2\/(.+)\/blobs\/([^/]+)$/ },
  { kind: 'tags', re: /^\/v2\/(.+)\/tags\/list$/ },
  { kind: 'referrers', re: /^\/v2\/(.+)\/referrers\/([^/]+)$/ },
];

/**
 * Parse a `/v2/` request path (raw, still percent-encoded) and its `ns` query parameter into a route.
 * Upstream selection, in order: `?ns=<host>` (containerd mirrors), a host prefix `/v2/<host>/<repo>/…`
 * (podman registries.conf locations, explicit references), then the default upstream (Docker
 * `registry-mirrors`). A host that is not configured is refused with DENIED here, before any I/O.
 */
export function parseRegistryPath(
  rawPath: string,
  ns: string | undefined,
  config: RoutingConfig,
): RegistryRoute {
  if (rawPath.length > MAX_PATH) throw new RegistryError('NAME_INVALID', 'request path is too long');
  if (rawPath === '/v2/' || rawPath === '/v2') return { kind: 'base' };
  // Repository names, tags and digests never contain '%': an encoded slash or dot is a path trick.
  if (rawPath.includes('%') || rawPath.includes('\\')) {
    throw new RegistryError('NAME_INVALID', `invalid characters in request path "${truncate(rawPath)}"`);
  }
  for (const { kind, re } of PATTERNS) {
    const m = re.exec(rawPath);
    if (!m) continue;
    const name = m[1] ?? '';
    if (kind === 'upload') return { kind, name };
    const ref = m[2] ?? '';
    let target: Target;
    try {
      target = resolveTarget(name, ns, config);
    } catch (err) {
      if (err instanceof RegistryError && err.code === 'DENIED') {
        refusals.set(err, { kind, ...requested(name, ns, config), reference: ref });
      }
      throw err;
    }
    switch (kind) {
      case 'manifest':
        return { kind, target, reference: parseManifestReference(ref), name };
      case 'blob':
        return { kind, target, digest: parseDigest(ref), name };
      case 'referrers':
        return { kind, target, digest: parseDigest(ref), name };
      case 'tags':
        return { kind, target, name };
    }
  }
  throw new RegistryError('NAME_UNKNOWN', `unknown registry API path "${truncate(rawPath)}"`);
}

/**
 * A request routing refused (an upstream that is not configured, or none named): what it asked for,
 * as data for the audit event. `upstream` is the host as the client named it and is never dialled.
 */
export interface RefusedRoute {
  kind: 'manifest' | 'blob' | 'tags' | 'referrers';
  /** The requested host (canonical form), or `''` when the request named none and there is no default. */
  upstream: string;
  /** The repository as the client wrote it (not normalized: the upstream's rules are unknown). */
  repository: string;
  /** Tag or digest from the path (`''` for tags/list). */
  reference: string;
}

const refusals = new WeakMap<RegistryError, RefusedRoute>();

/** The request a routing refusal (thrown by {@link parseRegistryPath}) was about. */
export function refusedRoute(err: unknown): RefusedRoute | undefined {
  return err instanceof RegistryError ? refusals.get(err) : undefined;
}

/** Host and repository the client named, before checking the host against the config. */
export function requested(
  name: string,
  ns: string | undefined,
  config: RoutingConfig,
): { upstream: string; repository: string } {
  if (ns !== undefined && ns !== '') return { upstream: canonicalHost(ns), repository: name };
  const slash = name.indexOf('/');
  const first = slash > 0 ? name.slice(0, slash) : '';
  if (slash > 0 && (config.resolveHost(first) !== undefined || looksLikeHost(first))) {
    return { upstream: canonicalHost(first), repository: name.slice(slash + 1) };
  }
  return { upstream: config.defaultUpstream ?? '', repository: name };
}

/** Docker's rule for "is the first component a registry host": a dot, a port, or localhost. */
function looksLikeHost(first: string): boolean {
  return first.includes('.') || first.includes(':') || first === 'localhost' || first.startsWith('[');
}

function resolveTarget(name: string, ns: string | undefined, config: RoutingConfig): Target {
  if (ns !== undefined && ns !== '') {
    if (!isRegistryHost(ns))
      throw new RegistryError('NAME_INVALID', `invalid ns parameter "${truncate(ns)}"`);
    return targetIn(configuredUpstream(canonicalHost(ns), config), parseRepositoryName(name));
  }
  const slash = name.indexOf('/');
  if (slash > 0) {
    const first = name.slice(0, slash);
    // Docker's rule for "is the first component a registry host", plus the configured aliases, which
    // may be bare names.
    if (config.resolveHost(first) !== undefined || looksLikeHost(first)) {
      if (!isRegistryHost(first))
        throw new RegistryError('NAME_INVALID', `invalid registry host "${truncate(first)}"`);
      const host = configuredUpstream(canonicalHost(first), config);
      return targetIn(host, parseRepositoryName(name.slice(slash + 1)));
    }
  }
  const host = config.defaultUpstream;
  if (host === undefined) {
    throw new RegistryError('DENIED', 'no upstream named: use ?ns=<host> or a /v2/<host>/<repository> path', {
      detail: { reason: 'no-default-upstream' } satisfies DenyDetail,
    });
  }
  return targetIn(host, parseRepositoryName(name));
}
