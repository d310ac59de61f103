import { RegistryError } from './errors.ts';
import { isDigest, truncate } from './digest.ts';
import type { Digest } from './digest.ts';
import { isIndexMediaType, isManifestMediaType, MediaType } from './media-types.ts';

/** distribution caps manifests at 4 MiB; we refuse larger ones before buffering them. */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

export interface Descriptor {
  mediaType: string;
  digest: Digest;
  size: number;
  platform?: { architecture?: string; os?: string; variant?: string };
  artifactType?: string;
  annotations?: Record<string, string>;
}

/** What a manifest points at: child manifests (for an index) or config + layer blobs. */
export interface ParsedManifest {
  mediaType: string;
  kind: 'index' | 'manifest';
  manifests: Descriptor[];
  config?: Descriptor;
  layers: Descriptor[];
  subject?: Descriptor;
  artifactType?: string;
}

/**
 * Deepest nesting of objects and arrays accepted in a manifest. Real ones nest five levels (index →
 * manifests → descriptor → platform → os.features); JSON.parse copes with any depth, but everything
 * that walks the value afterwards (JSON.stringify of a referrers answer, logging, policy evaluation)
 * would overflow the stack on a 4 MiB document of `[[[[…`.
 */
export const MAX_MANIFEST_DEPTH = 32;

/** Whether `bytes` (JSON text) nest objects/arrays deeper than `max`; one pass, strings skipped. */
export function jsonDeeperThan(bytes: Uint8Array, max: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes[i];
    if (inString) {
      if (c === 0x5c)
        i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) {
      inString = true;
    } else if (c === 0x7b || c === 0x5b) {
      if (++depth > max) return true;
    } else if (c === 0x7d || c === 0x5d) {
      depth--;
    }
  }
  return false;
}

/** OCI annotations: a string-to-string map, nothing else. */
function annotationsOf(value: unknown, where: string): Record<string, string> {
  if (
    typeof value !== 'object' ||
    value === null ||
    Array.isArray(value) ||
    !Object.values(value).every((v) => typeof v === 'string')
  ) {
    throw new RegistryError('MANIFEST_INVALID', `${where}: annotations must map strings to strings`, {
      detail: { reason: 'invalid-annotations' },
    });
  }
  return value as Record<string, string>;
}

function asDescriptor(value: unknown, where: string): Descriptor {
  if (typeof value !== 'object' || value === null) {
    throw new RegistryError('MANIFEST_INVALID', `${where}: descriptor is not an object`, {
      detail: { reason: 'invalid-descriptor' },
    });
  }
  const v = value as Record<string, unknown>;
  if (typeof v.digest !== 'string' || !isDigest(v.digest)) {
    throw new RegistryError('MANIFEST_INVALID', `${where}: invalid digest`);
  }
  if (typeof v.size !== 'number' || !Number.isSafeInteger(v.size) || v.size < 0) {
    throw new RegistryError('MANIFEST_INVALID', `${where}: invalid size`);
  }
  const d: Descriptor = {
    mediaType: typeof v.mediaType === 'string' ? v.mediaType : '',
    digest: v.digest,
    size: v.size,
  };
  if (typeof v.platform === 'object' && v.platform !== null) d.platform = v.platform;
  if (typeof v.artifactType === 'string') d.artifactType = v.artifactType;
  if (v.annotations !== undefined) d.annotations = annotationsOf(v.annotations, where);
  return d;
}

function descriptors(value: unknown, where: string): Descriptor[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) throw new RegistryError('MANIFEST_INVALID', `${where} is not an array`);
  return value.map((v, i) => asDescriptor(v, `${where}[${i}]`));
}

/** Why a manifest was refused: names the disagreement so an operator can see what the upstream sent. */
function invalid(reason: string, message: string, mediaType: string): RegistryError {
  return new RegistryError('MANIFEST_INVALID', message, { detail: { reason, mediaType } });
}

/**
 * Parse a manifest exactly the way a client will read it, and refuse it when what it claims to be and
 * what it is disagree. Three things must agree (the class of CVE-2021-41190, where a body that is
 * both an index and an image manifest is read as one by the proxy and as the other by the node):
 *
 * - the media type it is served with (the upstream's `Content-Type`) must be a manifest media type;
 * - the body's own `mediaType`, when present, must equal it;
 * - the shape must be that of the type: an index has `manifests` and neither `config` nor `layers`;
 *   an image manifest has `config` and `layers` and no `manifests`; schema1 has `fsLayers`.
 *
 * The bytes themselves are never re-serialized: callers keep and serve the original buffer. Parse once
 * per request and hand the {@link ParsedManifest} along.
 */
export function parseManifest(bytes: Uint8Array, mediaType: string): ParsedManifest {
  if (!isManifestMediaType(mediaType)) {
    throw invalid(
      'not-a-manifest-media-type',
      `"${truncate(mediaType)}" is not a manifest media type`,
      mediaType,
    );
  }
  if (jsonDeeperThan(bytes, MAX_MANIFEST_DEPTH)) {
    throw invalid(
      'too-deep',
      `manifest nests objects or arrays deeper than ${MAX_MANIFEST_DEPTH} levels`,
      mediaType,
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (cause) {
    throw new RegistryError('MANIFEST_INVALID', 'manifest is not valid JSON', {
      cause,
      detail: { reason: 'not-json', mediaType },
    });
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw invalid('not-an-object', 'manifest is not a JSON object', mediaType);
  }
  const m = json as Record<string, unknown>;
  if (m.mediaType !== undefined && m.mediaType !== mediaType) {
    throw invalid(
      'media-type-mismatch',
      `manifest served as ${mediaType} says it is ${typeof m.mediaType === 'string' ? truncate(m.mediaType) : 'not a string'}`,
      mediaType,
    );
  }
  const has = (field: string): boolean => m[field] !== undefined;
  if (mediaType === MediaType.dockerManifestV1Signed || mediaType === MediaType.dockerManifestV1) {
    if (m.schemaVersion !== 1 || !Array.isArray(m.fsLayers) || has('manifests') || has('layers')) {
      throw invalid('shape-mismatch', `manifest served as ${mediaType} is not a schema1 manifest`, mediaType);
    }
    // Docker schema1 manifests carry fsLayers with blobSum instead of descriptors; nothing else counts.
    const layers = (m.fsLayers as unknown[]).map((l, i) => {
      const sum = typeof l === 'object' && l !== null ? (l as { blobSum?: unknown }).blobSum : undefined;
      if (typeof sum !== 'string' || !isDigest(sum)) {
        throw invalid('invalid-descriptor', `fsLayers[${i}]: invalid blobSum`, mediaType);
      }
      return { mediaType: '', digest: sum, size: -1 };
    });
    return { mediaType, kind: 'manifest', manifests: [], layers };
  }
  if (m.schemaVersion !== 2) {
    throw invalid(
      'shape-mismatch',
      `manifest served as ${mediaType} does not have schemaVersion 2`,
      mediaType,
    );
  }
  const out: ParsedManifest = isIndexMediaType(mediaType)
    ? indexShape(m, mediaType)
    : imageShape(m, mediaType);
  if (has('subject')) out.subject = asDescriptor(m.subject, 'subject');
  if (has('artifactType')) {
    if (typeof m.artifactType !== 'string') {
      throw invalid('invalid-field', 'artifactType is not a string', mediaType);
    }
    out.artifactType = m.artifactType;
  }
  return out;
}

function indexShape(m: Record<string, unknown>, mediaType: string): ParsedManifest {
  if (!Array.isArray(m.manifests) || m.config !== undefined || m.layers !== undefined) {
    throw invalid(
      'shape-mismatch',
      `manifest served as ${mediaType} must have "manifests" and neither "config" nor "layers"`,
      mediaType,
    );
  }
  return { mediaType, kind: 'index', manifests: descriptors(m.manifests, 'manifests'), layers: [] };
}

function imageShape(m: Record<string, unknown>, mediaType: string): ParsedManifest {
  if (m.config === undefined || !Array.isArray(m.layers) || m.manifests !== undefined) {
    throw invalid(
      'shape-mismatch',
      `manifest served as ${mediaType} must have "config" and "layers" and no "manifests"`,
      mediaType,
    );
  }
  return {
    mediaType,
    kind: 'manifest',
    manifests: [],
    config: asDescriptor(m.config, 'config'),
    layers: descriptors(m.layers, 'layers'),
  };
}

/** Every blob and child manifest digest a manifest refers to. */
export function referencedDigests(m: ParsedManifest): Digest[] {
  const out: Digest[] = m.manifests.map((d) => d.digest);
  if (m.config) out.push(m.config.digest);
  for (const l of m.layers) out.push(l.digest);
  return out;
}
