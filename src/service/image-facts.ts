/**
 * Image config facts for the age gate: `created`, `os`, `architecture`, labels of the manifest being
 * decided, or of every platform manifest of an index. Read only when a policy has an age gate, on the
 * decision path (never on a cached decision). Every byte is checked against its digest; a problem is
 * a fact ("config could not be read"), and the gate fails with it — never a crash, never a pass.
 */
import { readAtMost } from '../shared/index.ts';
import { digestAlgorithm, digestOf, MediaType, parseManifest } from '../oci/index.ts';
import type { Descriptor, Digest, ParsedManifest } from '../oci/index.ts';
import type { ImageFacts } from '../trust/index.ts';
import type { Upstream } from '../upstream/index.ts';

/** Image configs are small JSON documents; anything larger is not read. */
const MAX_CONFIG_BYTES = 4 * 1024 * 1024;
/** Platforms read per index. */
const MAX_PLATFORMS = 32;

function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

async function configFacts(
  upstream: Upstream,
  repository: string,
  digest: Digest,
  config: Descriptor | undefined,
  platformHint: string | undefined,
): Promise<ImageFacts> {
  const base = { digest, platform: platformHint ?? 'unknown', labels: {} };
  if (config === undefined) {
    return {
      ...base,
      created: undefined,
      os: undefined,
      architecture: undefined,
      problem: 'manifest has no config',
    };
  }
  try {
    if (config.size > MAX_CONFIG_BYTES)
      throw new Error(`config blob is ${config.size} bytes, over ${MAX_CONFIG_BYTES}`);
    const blob = await upstream.getBlob(repository, config.digest);
    const bytes = await readAtMost(blob.body, MAX_CONFIG_BYTES);
    if (bytes === undefined) throw new Error(`config blob is larger than ${MAX_CONFIG_BYTES} bytes`);
    if (digestOf(bytes, digestAlgorithm(config.digest)) !== config.digest) {
      throw new Error(`config blob ${config.digest} does not match its digest`);
    }
    const json = JSON.parse(bytes.toString('utf8')) as Record<string, unknown>;
    const labels: Record<string, string> = {};
    const raw = (json.config as { Labels?: unknown } | undefined)?.Labels;
    if (typeof raw === 'object' && raw !== null) {
      for (const [k, v] of Object.entries(raw)) if (typeof v === 'string') labels[k] = v;
    }
    const os = str(json.os);
    const architecture = str(json.architecture);
    const variant = str(json.variant);
    return {
      digest,
      platform: platformHint ?? [os ?? '?', architecture ?? '?', ...(variant ? [variant] : [])].join('/'),
      created: str(json.created),
      os,
      architecture,
      labels,
    };
  } catch (err) {
    return {
      ...base,
      created: undefined,
      os: undefined,
      architecture: undefined,
      problem: `config could not be read: ${err instanceof Error ? err.message : String(err)}`,
    };
  }
}

/** Facts of `digest` (one platform) or of each platform manifest of the index `digest`. */
export async function readImageFacts(
  upstream: Upstream,
  repository: string,
  digest: Digest,
  parsed: ParsedManifest,
): Promise<ImageFacts[]> {
  if (parsed.kind !== 'index')
    return [await configFacts(upstream, repository, digest, parsed.config, undefined)];
  const children = parsed.manifests
    // Attestation manifests of buildx (platform unknown/unknown) are not images.
    .filter((d) => d.platform?.os !== 'unknown')
    .slice(0, MAX_PLATFORMS);
  return Promise.all(
    children.map(async (d): Promise<ImageFacts> => {
      const p = d.platform;
      const hint =
        p === undefined
          ? undefined
          : [p.os ?? '?', p.architecture ?? '?', ...(p.variant ? [p.variant] : [])].join('/');
      try {
        const m = await upstream.getManifest(repository, d.digest, {
          accept: [MediaType.ociManifest, MediaType.dockerManifest],
        });
        if (digestOf(m.bytes, digestAlgorithm(d.digest)) !== d.digest)
          throw new Error('manifest does not match its digest');
        const child = parseManifest(m.bytes, m.mediaType);
        return await configFacts(upstream, repository, d.digest, child.config, hint);
      } catch (err) {
        return {
          digest: d.digest,
          platform: hint ?? 'unknown',
          created: undefined,
          os: undefined,
          architecture: undefined,
          labels: {},
          problem: `platform manifest could not be read: ${err instanceof Error ? err.message : String(err)}`,
        };
      }
    }),
  );
}
