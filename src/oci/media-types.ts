/** Media types the proxy needs to know by name (OCI image-spec and Docker distribution). */
export const MediaType = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociEmpty: 'application/vnd.oci.empty.v1+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerManifestV1Signed: 'application/vnd.docker.distribution.manifest.v1+prettyjws',
  dockerManifestV1: 'application/vnd.docker.distribution.manifest.v1+json',
} as const;

/** What we ask upstream for when the client did not say: every manifest kind we can serve byte-exact. */
export const defaultManifestAccept: readonly string[] = [
  MediaType.ociIndex,
  MediaType.ociManifest,
  MediaType.dockerManifestList,
  MediaType.dockerManifest,
];

/** RFC 6838 section 4.2 `type-name "/" subtype-name`, each a restricted-name of at most 127 characters. */
const MEDIA_TYPE_RE = /^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}\/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$/;

/** Whether `value` is one bare media type (no parameters, no list): what `artifactType` must be. */
export function isMediaType(value: string): boolean {
  return MEDIA_TYPE_RE.test(value);
}

export function isIndexMediaType(mediaType: string): boolean {
  return mediaType === MediaType.ociIndex || mediaType === MediaType.dockerManifestList;
}

export function isManifestMediaType(mediaType: string): boolean {
  return (
    mediaType === MediaType.ociManifest ||
    mediaType === MediaType.ociIndex ||
    mediaType === MediaType.dockerManifest ||
    mediaType === MediaType.dockerManifestList ||
    mediaType === MediaType.dockerManifestV1 ||
    mediaType === MediaType.dockerManifestV1Signed
  );
}

/** Parse an `Accept` header (possibly repeated) into bare media types, dropping parameters and q=0. */
export function parseAccept(header: string | string[] | undefined): string[] {
  if (header === undefined) return [];
  const values = Array.isArray(header) ? header : [header];
  const out: string[] = [];
  for (const value of values) {
    for (const part of value.split(',')) {
      const [type, ...params] = part.split(';').map((s) => s.trim());
      if (!type) continue;
      if (params.some((p) => /^q=0(\.0*)?$/.test(p))) continue;
      if (!out.includes(type)) out.push(type);
    }
  }
  return out;
}

/**
 * Whether a client with this Accept list can take a manifest of `mediaType` when it asked by tag. No
 * Accept, `*\/*` or a matching `type/*` take anything. OCI and Docker schema2 are one structure under
 * two names (image manifest: config + layers; index: manifests), and every client that reads one reads
 * the other, so a client that accepts the OCI image manifest also takes a Docker schema2 manifest and
 * vice versa (and likewise for index and manifest list): pullwarden serves what the upstream has,
 * byte-exact, never a conversion. An index is never served to a client that accepts no index type.
 */
export function acceptsManifest(accept: readonly string[], mediaType: string): boolean {
  if (accept.length === 0) return true;
  const family = manifestFamily(mediaType);
  return accept.some(
    (a) =>
      a === '*/*' ||
      a === mediaType ||
      (a.endsWith('/*') && mediaType.startsWith(a.slice(0, -1))) ||
      (family !== undefined && manifestFamily(a) === family),
  );
}

function manifestFamily(mediaType: string): 'index' | 'image' | undefined {
  if (isIndexMediaType(mediaType)) return 'index';
  if (mediaType === MediaType.ociManifest || mediaType === MediaType.dockerManifest) return 'image';
  return undefined;
}
