import { canonicalHost, normalizeRepository, parseImageReference, RegistryError } from '../oci/index.ts';
import type { ManifestReference } from '../oci/index.ts';
import type { Target } from './target.ts';
import type { DenyDetail } from './deny-detail.ts';

/** The configured upstreams by name: what turns a host a client or an operator wrote into one. */
export interface UpstreamNames {
  /** The configured upstream a client-given host (or alias) names, or undefined when none does. */
  resolveHost(host: string): string | undefined;
  defaultUpstream: string | undefined;
}

/**
 * The configured upstream a host (already in canonical form) names, or DENIED: nothing a client or an
 * operator writes can make the proxy connect to a host that is not in the config.
 */
export function configuredUpstream(host: string, names: Pick<UpstreamNames, 'resolveHost'>): string {
  const configured = names.resolveHost(host);
  if (configured === undefined) {
    throw new RegistryError('DENIED', `upstream registry "${host}" is not configured on this proxy`, {
      detail: { upstream: host, reason: 'upstream-not-configured' } satisfies DenyDetail,
    });
  }
  return configured;
}

/** The target for a repository (as the client named it) on a configured upstream. */
export function targetIn(upstream: string, repository: string): Target {
  return { upstream, repository: normalizeRepository(upstream, repository) };
}

/** An image reference as users write it, resolved against the configured upstreams. */
export interface ResolvedReference {
  target: Target;
  /** The digest when the text names one, else the tag (`latest` when it names neither). */
  reference: ManifestReference;
  /** The tag the text names (also beside a digest), if any. */
  tag: string | undefined;
}

/**
 * Resolve an image reference as users write it (`ghcr.io/acme/app:1.0`, `nginx`, `host:5000/a/b@sha256:…`)
 * to a target on a configured upstream (aliases and Docker Hub's other names included); DENIED when
 * its host is not configured. The one "reference → target" resolver of the command-line use cases;
 * request paths are resolved by http's router with the same {@link configuredUpstream}.
 */
export function resolveImageReference(input: string, names: UpstreamNames): ResolvedReference {
  // Docker's rule for "is the first component a registry host", plus the configured aliases, which
  // may be bare names (`corp/acme/app`), as the router reads request paths.
  const slash = input.indexOf('/');
  const first = slash > 0 ? input.slice(0, slash) : '';
  const alias = first !== '' && names.resolveHost(canonicalHost(first)) !== undefined;
  const ref = alias
    ? parseImageReference(input.slice(slash + 1), first)
    : parseImageReference(input, names.defaultUpstream ?? 'docker.io');
  const upstream = configuredUpstream(canonicalHost(ref.host), names);
  const reference: ManifestReference =
    ref.digest !== undefined
      ? { kind: 'digest', digest: ref.digest }
      : { kind: 'tag', tag: ref.tag ?? 'latest' };
  return { target: targetIn(upstream, ref.repository), reference, tag: ref.tag };
}
