import { MediaType } from '../oci/index.ts';
import type { Descriptor, Digest, ParsedManifest } from '../oci/index.ts';
import { listReferrers } from '../trust/index.ts';
import type { Upstream } from '../upstream/index.ts';

/**
 * The referrers of a digest as an OCI image index (distribution-spec "Listing Referrers"). Upstreams
 * without the referrers API (distribution 2.8, most registries today) are answered from the referrers
 * tag schema, normalized to a plain index and filtered by `artifactType` here; `filtersApplied` says
 * whether the answer is filtered (the `OCI-Filters-Applied` header).
 */
export async function referrersIndex(
  upstream: Upstream,
  repository: string,
  digest: Digest,
  artifactType: string | undefined,
): Promise<{ body: Buffer; filtersApplied: boolean }> {
  const listing = await listReferrers(upstream, repository, digest, {
    ...(artifactType === undefined ? {} : { artifactType }),
  });
  if (!listing) {
    return { body: Buffer.from(JSON.stringify(emptyIndex())), filtersApplied: artifactType !== undefined };
  }
  if (listing.source === 'referrers' && (artifactType === undefined || listing.filtersApplied)) {
    return { body: listing.body, filtersApplied: listing.filtersApplied };
  }
  if (artifactType === undefined) return { body: normalizeIndex(listing.index), filtersApplied: false };
  return { body: filterIndex(listing.index, artifactType), filtersApplied: true };
}

function emptyIndex(): { schemaVersion: 2; mediaType: string; manifests: Descriptor[] } {
  return { schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: [] };
}

/** The referrers tag schema index as the referrers API answers: a plain OCI index of its entries. */
function normalizeIndex(index: ParsedManifest): Buffer {
  return Buffer.from(JSON.stringify({ ...emptyIndex(), manifests: index.manifests }));
}

function filterIndex(index: ParsedManifest, artifactType: string): Buffer {
  const manifests = index.manifests.filter((m) => m.artifactType === artifactType);
  return Buffer.from(JSON.stringify({ ...emptyIndex(), manifests }));
}
