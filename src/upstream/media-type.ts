import { MediaType } from '../oci/index.ts';
import { bareMediaType } from './http-util.ts';

// Content types registries put on manifests when they do not know better (schema1, old Quay, S3
// backed mirrors); for these the JSON `mediaType` field is the better witness.
const GENERIC_CONTENT_TYPES: ReadonlySet<string> = new Set([
  '',
  'application/json',
  'text/plain',
  'application/octet-stream',
]);

/** Whether a bare `Content-Type` says nothing about what a manifest is (none, JSON, text, bytes). */
export function isGenericContentType(bare: string): boolean {
  return GENERIC_CONTENT_TYPES.has(bare);
}

/**
 * The media type of a manifest: the `Content-Type` the upstream served, unless that is a generic type,
 * then the JSON `mediaType` field, then a guess from the shape (OCI manifests may omit `mediaType`).
 */
export function manifestMediaType(contentType: string | string[] | undefined, bytes: Buffer): string {
  const served = bareMediaType(contentType);
  if (!isGenericContentType(served)) return served;
  let json: unknown;
  try {
    json = JSON.parse(bytes.toString('utf8'));
  } catch {
    return served === '' ? 'application/octet-stream' : served;
  }
  const m = typeof json === 'object' && json !== null ? (json as Record<string, unknown>) : {};
  if (typeof m.mediaType === 'string' && m.mediaType !== '') return m.mediaType;
  if (m.schemaVersion === 1) {
    return 'signatures' in m ? MediaType.dockerManifestV1Signed : MediaType.dockerManifestV1;
  }
  // OCI manifests may omit `mediaType`; only a schemaVersion 2 document is taken for one (a config
  // blob or any other JSON with a `config` field is not a manifest, and is refused as such).
  if (m.schemaVersion === 2 && Array.isArray(m.manifests)) return MediaType.ociIndex;
  if (m.schemaVersion === 2 && (m.config !== undefined || Array.isArray(m.layers)))
    return MediaType.ociManifest;
  return served === '' ? 'application/octet-stream' : served;
}
