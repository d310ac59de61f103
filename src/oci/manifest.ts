import { RegistryError } from './errors.ts';
import { isDigest } from './digest.ts';
import type { Digest } from './digest.ts';
import { isIndexMediaType, MediaType } from './media-types.ts';

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
  kind: 'index' | 'manifest' | 'other';
  manifests: Descriptor[];
  config?: Descriptor;
  layers: Descriptor[];
  subject?: Descriptor;
  artifactType?: string;
}

function asDescriptor(value: unknown, where: string): Descriptor {
  if (typeof value !== 'object' || value === null) {
    throw new RegistryError('MANIFEST_INVALID', `${where}: descriptor is not an object`);
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
  if (typeof v.annotations === 'object' && v.annotations !== null) {
    d.annotations = v.annotations as Record<string, string>;
  }
  return d;
}

function descriptors(value: unknown, where: string): Descriptor[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) throw new RegistryError('MANIFEST_INVALID', `${where} is not an array`);
  return value.map((v, i) => asDescriptor(v, `${where}[${i}]`));
}

/**
 * Parse the parts of a manifest the proxy follows. The bytes themselves are never re-serialized:
 * callers keep and serve the original buffer.
 */
export function parseManifest(bytes: Uint8Array, mediaType: string): ParsedManifest {
  let json: unknown;
  try {
    json = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (cause) {
    throw new RegistryError('MANIFEST_INVALID', 'manifest is not valid JSON', { cause });
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new RegistryError('MANIFEST_INVALID', 'manifest is not a JSON object');
  }
  const m = json as Record<string, unknown>;
  const effective = typeof m.mediaType === 'string' && m.mediaType !== '' ? m.mediaType : mediaType;
  const isIndex = isIndexMediaType(effective) || (Array.isArray(m.manifests) && m.layers === undefined);
  const out: ParsedManifest = {
    mediaType: effective,
    kind: isIndex ? 'index' : m.config !== undefined || Array.isArray(m.layers) ? 'manifest' : 'other',
    manifests: isIndex ? descriptors(m.manifests, 'manifests') : [],
    layers: isIndex ? [] : descriptors(m.layers, 'layers'),
  };
  if (!isIndex && m.config !== undefined) out.config = asDescriptor(m.config, 'config');
  if (m.subject !== undefined) out.subject = asDescriptor(m.subject, 'subject');
  if (typeof m.artifactType === 'string') out.artifactType = m.artifactType;
  // Docker schema1 manifests carry fsLayers with blobSum instead of descriptors.
  if (effective === MediaType.dockerManifestV1Signed || effective === MediaType.dockerManifestV1) {
    const fs = Array.isArray(m.fsLayers) ? (m.fsLayers as { blobSum?: unknown }[]) : [];
    out.kind = 'manifest';
    out.layers = fs
      .filter((l): l is { blobSum: Digest } => typeof l.blobSum === 'string' && isDigest(l.blobSum))
      .map((l) => ({ mediaType: '', digest: l.blobSum, size: -1 }));
  }
  return out;
}

/** Every blob and child manifest digest a manifest refers to. */
export function referencedDigests(m: ParsedManifest): Digest[] {
  const out: Digest[] = m.manifests.map((d) => d.digest);
  if (m.config) out.push(m.config.digest);
  for (const l of m.layers) out.push(l.digest);
  return out;
}
