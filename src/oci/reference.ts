import { RegistryError } from './errors.ts';
import { isDigest, truncate } from './digest.ts';
import type { Digest } from './digest.ts';

// distribution-spec "Pulling manifests": <name> must match this grammar.
const NAME_COMPONENT = '[a-z0-9]+(?:(?:\\.|_|__|-+)[a-z0-9]+)*';
const NAME_RE = new RegExp(`^${NAME_COMPONENT}(?:/${NAME_COMPONENT})*$`);
const TAG_RE = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;
/** distribution limits the repository name (with the registry host) to 255 characters. */
export const MAX_NAME_LENGTH = 255;

// A registry host as clients name it: DNS name or IPv4 with an optional port, or a bracketed IPv6.
const HOST_RE =
  /^(?:(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?))*|\[[a-fA-F0-9:.]+\])(?::[0-9]{1,5})?$/;

export function isRepositoryName(name: string): boolean {
  return name.length <= MAX_NAME_LENGTH && NAME_RE.test(name);
}

export function parseRepositoryName(name: string): string {
  if (!isRepositoryName(name)) {
    throw new RegistryError('NAME_INVALID', `invalid repository name "${truncate(name)}"`);
  }
  return name;
}

export function isTag(value: string): boolean {
  return TAG_RE.test(value);
}

export function isRegistryHost(value: string): boolean {
  return value.length <= 255 && HOST_RE.test(value);
}

const DOCKER_HUB_ALIASES = new Set(['index.docker.io', 'registry-1.docker.io', 'registry.hub.docker.com']);

/**
 * Canonical name of a registry host (lower case; `docker.io` for Docker Hub's other names): how
 * upstreams are configured, and the directory name containerd's hosts.toml uses.
 */
export function canonicalHost(host: string): string {
  const lower = host.toLowerCase();
  return DOCKER_HUB_ALIASES.has(lower) ? 'docker.io' : lower;
}

/** A manifest reference: a tag or a digest. */
export type ManifestReference = { kind: 'tag'; tag: string } | { kind: 'digest'; digest: Digest };

export function parseManifestReference(value: string): ManifestReference {
  if (isDigest(value)) return { kind: 'digest', digest: value };
  if (value.includes(':')) throw new RegistryError('DIGEST_INVALID', `invalid digest "${truncate(value)}"`);
  if (!isTag(value)) throw new RegistryError('MANIFEST_INVALID', `invalid tag "${truncate(value)}"`);
  return { kind: 'tag', tag: value };
}

export function referenceString(ref: ManifestReference): string {
  return ref.kind === 'tag' ? ref.tag : ref.digest;
}

/**
 * Docker Hub's one-component names live under `library/` (the "official images"). Docker and CRI add it
 * themselves; `ctr` and hand-written references do not, so the proxy normalizes for docker.io only.
 */
export function normalizeRepository(upstreamHost: string, repository: string): string {
  if (upstreamHost === 'docker.io' && !repository.includes('/')) return `library/${repository}`;
  return repository;
}

/** A full image reference as users write it: `[host/]repository[:tag][@digest]`. */
export interface ImageReference {
  host: string;
  repository: string;
  tag?: string;
  digest?: Digest;
}

/** Parse `ghcr.io/acme/app:1.0`, `nginx`, `localhost:5000/a/b@sha256:…` the way Docker does. */
export function parseImageReference(input: string, defaultHost = 'docker.io'): ImageReference {
  let rest = input;
  let digest: Digest | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    const d = rest.slice(at + 1);
    if (!isDigest(d)) throw new RegistryError('DIGEST_INVALID', `invalid digest in "${truncate(input)}"`);
    digest = d;
    rest = rest.slice(0, at);
  }
  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!isTag(tag)) throw new RegistryError('MANIFEST_INVALID', `invalid tag in "${truncate(input)}"`);
  }
  let host = defaultHost;
  const slash = rest.indexOf('/');
  if (slash >= 0) {
    const first = rest.slice(0, slash);
    // Docker's rule: the first component is a host if it has a dot or a port, or is "localhost".
    if (first.includes('.') || first.includes(':') || first === 'localhost' || first.startsWith('[')) {
      host = first;
      rest = rest.slice(slash + 1);
    }
  }
  if (host === 'index.docker.io' || host === 'registry-1.docker.io') host = 'docker.io';
  const repository = normalizeRepository(host, parseRepositoryName(rest));
  const ref: ImageReference = { host, repository };
  if (tag !== undefined) ref.tag = tag;
  if (digest !== undefined) ref.digest = digest;
  if (tag === undefined && digest === undefined) ref.tag = 'latest';
  return ref;
}

// distribution-spec "Referrers Tag Schema": `<alg>-<ref>`, with <alg> limited to 32 characters and
// <ref> to 64 (truncated): a sha512 subject's tag keeps the first 64 hex characters so it stays a tag.
const REFERRERS_TAG_RE = /^(sha256|sha512)-([a-f0-9]{64})$/;
// cosign's classic tags of a subject digest: `<alg>-<hex>.sig` / `.att` / `.sbom`.
const COSIGN_TAG_RE = /^(sha256|sha512)-([a-f0-9]{64}|[a-f0-9]{128})\.(sig|att|sbom)$/;

/** The referrers tag schema tag of a subject digest (the one fallback when the referrers API is absent). */
export function referrersTag(subject: Digest): string {
  const colon = subject.indexOf(':');
  return `${subject.slice(0, colon).slice(0, 32)}-${subject.slice(colon + 1).slice(0, 64)}`;
}

/** cosign's classic tag of a subject digest: `<alg>-<hex>.<suffix>`. */
export function cosignTag(subject: Digest, suffix: 'sig' | 'att' | 'sbom'): string {
  return `${subject.replace(':', '-')}.${suffix}`;
}

/**
 * What a tag is when it names a subject digest: a referrers tag schema index, or a cosign `.sig`/
 * `.att`/`.sbom` tag. Other tags are `undefined`. Only these tags may lead to trust material.
 */
export function subjectTagKind(tag: string): 'referrers' | 'sig' | 'att' | 'sbom' | undefined {
  if (REFERRERS_TAG_RE.test(tag)) return 'referrers';
  const m = COSIGN_TAG_RE.exec(tag);
  if (!m) return undefined;
  // A truncated sha512 hex only exists in the referrers schema; cosign uses the whole digest.
  if ((m[1] === 'sha256') !== (m[2]?.length === 64)) return undefined;
  return m[3] as 'sig' | 'att' | 'sbom';
}
