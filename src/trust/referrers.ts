import { isNotFoundError, MediaType, parseManifest, referrersTag, RegistryError } from '../oci/index.ts';
import type { Digest, ParsedManifest } from '../oci/index.ts';
import type { ReadOptions, RegistryReader } from './registry-reader.ts';

/** The referrers of a subject as an upstream lists them. */
export interface ReferrersListing {
  /** `referrers`: the OCI 1.1 API; `tag-schema`: the index at the referrers tag schema tag. */
  source: 'referrers' | 'tag-schema';
  /** The index as the upstream sent it, byte-exact. */
  body: Buffer;
  /** The one parse of `body`. */
  index: ParsedManifest;
  /** The upstream applied the `artifactType` filter (API answers with `OCI-Filters-Applied` only). */
  filtersApplied: boolean;
  /** Upstream calls made (1 or 2). */
  requests: number;
}

/**
 * The referrers of `subject` in `repository`: the referrers API, or when the upstream lacks it
 * (distribution 2.8, most registries today) the referrers tag schema (`<alg>-<hex>`, see
 * {@link referrersTag}). `undefined` when neither has anything. The one implementation both the
 * `/referrers` route and signature discovery use.
 */
export async function listReferrers(
  registry: RegistryReader,
  repository: string,
  subject: Digest,
  options: { artifactType?: string; request?: ReadOptions } = {},
): Promise<ReferrersListing | undefined> {
  const request = options.request ?? {};
  const answer = await registry.getReferrers(repository, subject, options.artifactType, request);
  if (answer !== undefined) {
    const applied =
      answer.filtersApplied
        ?.split(',')
        .map((s) => s.trim())
        .includes('artifactType') ?? false;
    return {
      source: 'referrers',
      body: answer.body,
      index: asIndex(answer.body, answer.mediaType, 'referrers API answer'),
      filtersApplied: options.artifactType !== undefined && applied,
      requests: 1,
    };
  }
  let bytes: Buffer;
  let mediaType: string;
  try {
    const m = await registry.getManifest(repository, referrersTag(subject), {
      ...request,
      accept: [MediaType.ociIndex],
    });
    bytes = m.bytes;
    mediaType = m.mediaType;
  } catch (err) {
    if (isNotFoundError(err)) return undefined;
    throw err;
  }
  return {
    source: 'tag-schema',
    body: bytes,
    index: asIndex(bytes, mediaType, `referrers tag ${referrersTag(subject)}`),
    filtersApplied: false,
    requests: 2,
  };
}

function asIndex(bytes: Buffer, mediaType: string, what: string): ParsedManifest {
  const index = parseManifest(bytes, mediaType);
  if (index.kind !== 'index') {
    throw new RegistryError('MANIFEST_INVALID', `${what} is not an index`, {
      detail: { reason: 'shape-mismatch', mediaType },
    });
  }
  return index;
}
