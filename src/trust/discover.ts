/**
 * Finding the signatures and attestations of a digest in an upstream, the places cosign and other
 * Sigstore clients put them:
 *
 * 1. the OCI 1.1 referrers API (`GET /v2/<name>/referrers/<digest>`): Sigstore bundles
 *    (`application/vnd.dev.sigstore.bundle.v0.3+json`, cosign v3 / `--new-bundle-format`) and cosign's
 *    OCI 1.1 classic artifacts; when the upstream lacks the API, the referrers tag schema
 *    (distribution-spec "Referrers Tag Schema": an index at tag `<alg>-<hex>`);
 * 2. cosign's classic tags `<alg>-<hex>.sig` (simplesigning payloads) and `.att` (DSSE envelopes).
 *
 * The three places are searched concurrently. A 404 anywhere means "nothing there"; any other failure
 * is recorded in `problems`. When nothing at all was found and at least one place failed with a
 * transient error (UNAVAILABLE, TOOMANYREQUESTS), discovery throws `RegistryError('UNAVAILABLE')`:
 * "no signature" must not be concluded (and cached as a deny) from an upstream outage, so the caller
 * answers 503 and the client retries. Once something was found, partial failures stay in `problems`
 * and the policy decides on what was found.
 */
import { readAtMost } from '../shared/index.ts';
import {
  cosignTag,
  digestAlgorithm,
  digestOf,
  isNotFoundError,
  isRegistryError,
  MediaType,
  parseManifest,
  RegistryError,
} from '../oci/index.ts';
import type { Descriptor, Digest, ParsedManifest } from '../oci/index.ts';
import type { ReadManifest, ReadOptions, RegistryReader } from './registry-reader.ts';
import {
  Annotation,
  COSIGN_ATT_ARTIFACT_TYPE,
  COSIGN_SIGN_PREDICATE_TYPE,
  COSIGN_SIG_ARTIFACT_TYPE,
  DSSE_MEDIA_TYPE,
  MAX_EVIDENCE_BLOB_BYTES,
  MAX_EVIDENCE_ITEMS,
  SIGSTORE_BUNDLE_PREFIX,
  SIMPLESIGNING_MEDIA_TYPE,
} from './constants.ts';
import {
  classicAttestationToBundle,
  classicSignatureToBundle,
  inTotoStatement,
  parseBundle,
  placeholderBundle,
} from './convert.ts';
import { listReferrers } from './referrers.ts';
import type { Evidence, EvidenceSource, FoundSignature } from './types.ts';

export interface DiscoverOptions {
  signal?: AbortSignal;
  /** Largest blob read (default {@link MAX_EVIDENCE_BLOB_BYTES}). */
  maxBlobBytes?: number;
  /** Most layers per manifest and referrers followed (default {@link MAX_EVIDENCE_ITEMS}). */
  maxItems?: number;
}

const MANIFEST_ACCEPT = [MediaType.ociManifest, MediaType.ociIndex, MediaType.dockerManifest];
const TRANSIENT = new Set(['UNAVAILABLE', 'TOOMANYREQUESTS']);

/** Thrown inside a source to end it with "nothing there". */
class NothingThere extends Error {}

interface Ctx {
  registry: RegistryReader;
  repository: string;
  subject: Digest;
  request: ReadOptions;
  maxBlobBytes: number;
  maxItems: number;
  roundTrips: number;
  problems: string[];
  items: FoundSignature[];
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

async function manifest(
  ctx: Ctx,
  reference: string,
): Promise<{ fetched: ReadManifest; parsed: ParsedManifest }> {
  ctx.roundTrips++;
  let fetched: ReadManifest;
  try {
    fetched = await ctx.registry.getManifest(ctx.repository, reference, {
      ...ctx.request,
      accept: MANIFEST_ACCEPT,
    });
  } catch (err) {
    if (isNotFoundError(err)) throw new NothingThere();
    throw err;
  }
  return { fetched, parsed: parseManifest(fetched.bytes, fetched.mediaType) };
}

/** Read a whole (small) blob and check it against its descriptor. */
async function blob(ctx: Ctx, d: Descriptor): Promise<Buffer> {
  if (d.size > ctx.maxBlobBytes)
    throw new Error(`blob ${d.digest} is ${d.size} bytes, over ${ctx.maxBlobBytes}`);
  ctx.roundTrips++;
  const answer = await ctx.registry.getBlob(ctx.repository, d.digest, ctx.request);
  if (answer.size !== undefined && answer.size > ctx.maxBlobBytes) {
    answer.body.destroy();
    throw new Error(`blob ${d.digest} is ${answer.size} bytes, over ${ctx.maxBlobBytes}`);
  }
  const bytes = await readAtMost(answer.body, ctx.maxBlobBytes);
  if (bytes === undefined) throw new Error(`blob ${d.digest} is larger than ${ctx.maxBlobBytes} bytes`);
  if (digestOf(bytes, digestAlgorithm(d.digest)) !== d.digest) {
    throw new RegistryError('UNAVAILABLE', `blob ${d.digest} does not match its digest`);
  }
  return bytes;
}

/** Run every task to its end (none may outlive discovery), then rethrow the first failure. */
async function settle(tasks: Promise<void>[]): Promise<void> {
  const results = await Promise.allSettled(tasks);
  for (const r of results) if (r.status === 'rejected') throw r.reason;
}

function rethrowTransient(err: unknown): void {
  if (isRegistryError(err) && TRANSIENT.has(err.code)) throw err;
}

function limited<T>(ctx: Ctx, list: T[], what: string): T[] {
  if (list.length <= ctx.maxItems) return list;
  ctx.problems.push(`${what}: ${list.length} entries, only the first ${ctx.maxItems} were read`);
  return list.slice(0, ctx.maxItems);
}

function failed(
  source: EvidenceSource,
  kind: FoundSignature['kind'],
  manifestDigest: Digest,
  layerDigest: Digest,
  parseError: string,
  predicateType?: string,
): FoundSignature {
  const item: FoundSignature = {
    source,
    kind,
    manifestDigest,
    layerDigest,
    bundle: placeholderBundle(),
    parseError,
  };
  if (predicateType !== undefined) item.predicateType = predicateType;
  return item;
}

/** One layer of a classic `.sig` (or cosign OCI 1.1 signature artifact). */
async function classicSignatureLayer(
  ctx: Ctx,
  source: EvidenceSource,
  manifestDigest: Digest,
  layer: Descriptor,
): Promise<void> {
  if (layer.mediaType !== SIMPLESIGNING_MEDIA_TYPE) {
    ctx.problems.push(`${source} ${manifestDigest}: skipped layer of media type ${layer.mediaType}`);
    return;
  }
  const payload = await blob(ctx, layer);
  try {
    const bundle = classicSignatureToBundle(payload, layer.annotations ?? {});
    ctx.items.push({
      source,
      kind: 'signature',
      manifestDigest,
      layerDigest: layer.digest,
      bundle,
      artifact: payload,
      size: payload.length,
    });
  } catch (err) {
    ctx.items.push(failed(source, 'signature', manifestDigest, layer.digest, message(err)));
  }
}

/** One layer of a classic `.att` (or cosign OCI 1.1 attestation artifact). */
async function classicAttestationLayer(
  ctx: Ctx,
  source: EvidenceSource,
  manifestDigest: Digest,
  layer: Descriptor,
): Promise<void> {
  if (layer.mediaType !== DSSE_MEDIA_TYPE) {
    ctx.problems.push(`${source} ${manifestDigest}: skipped layer of media type ${layer.mediaType}`);
    return;
  }
  const envelope = await blob(ctx, layer);
  try {
    const bundle = classicAttestationToBundle(envelope, layer.annotations ?? {});
    const statement = inTotoStatement(bundle);
    const item: FoundSignature = {
      source,
      kind: 'attestation',
      manifestDigest,
      layerDigest: layer.digest,
      bundle,
      size: envelope.length,
    };
    if (statement !== undefined) item.predicateType = statement.predicateType;
    ctx.items.push(item);
  } catch (err) {
    ctx.items.push(failed(source, 'attestation', manifestDigest, layer.digest, message(err)));
  }
}

/** One Sigstore bundle layer of a referrer. */
async function bundleLayer(
  ctx: Ctx,
  source: EvidenceSource,
  manifestDigest: Digest,
  layer: Descriptor,
  annotatedPredicateType: string | undefined,
): Promise<void> {
  const bytes = await blob(ctx, layer);
  const kindOf = (predicateType: string | undefined): FoundSignature['kind'] =>
    predicateType === COSIGN_SIGN_PREDICATE_TYPE ? 'signature' : 'attestation';
  try {
    const bundle = parseBundle(bytes);
    const statement = inTotoStatement(bundle);
    if (statement === undefined) {
      // A message signature over an unknown artifact: nothing binds it to the subject digest.
      ctx.items.push(
        failed(
          source,
          'signature',
          manifestDigest,
          layer.digest,
          'message-signature bundle: no artifact to verify',
        ),
      );
      return;
    }
    ctx.items.push({
      source,
      kind: kindOf(statement.predicateType),
      manifestDigest,
      layerDigest: layer.digest,
      bundle,
      predicateType: statement.predicateType,
      size: bytes.length,
    });
  } catch (err) {
    ctx.items.push(
      failed(
        source,
        kindOf(annotatedPredicateType),
        manifestDigest,
        layer.digest,
        message(err),
        annotatedPredicateType,
      ),
    );
  }
}

/** Fetch one referrer manifest and read the layers we understand. */
async function referrer(ctx: Ctx, source: EvidenceSource, d: Descriptor): Promise<void> {
  const { fetched, parsed } = await manifest(ctx, d.digest);
  const artifactType = parsed.artifactType ?? d.artifactType ?? parsed.config?.mediaType ?? '';
  // The referrers list is the upstream's word; the manifest itself must name our subject.
  if (parsed.subject !== undefined && parsed.subject.digest !== ctx.subject) {
    ctx.problems.push(
      `${source} ${fetched.digest}: subject is ${parsed.subject.digest}, not the digest asked for`,
    );
    return;
  }
  const predicateType = d.annotations?.[Annotation.bundlePredicateType];
  const layers = limited(ctx, parsed.layers, `${source} ${fetched.digest}`);
  await settle(
    layers.map(async (layer) => {
      try {
        if (layer.mediaType.startsWith(SIGSTORE_BUNDLE_PREFIX)) {
          await bundleLayer(ctx, source, fetched.digest, layer, predicateType);
        } else if (artifactType === COSIGN_SIG_ARTIFACT_TYPE) {
          await classicSignatureLayer(ctx, source, fetched.digest, layer);
        } else if (artifactType === COSIGN_ATT_ARTIFACT_TYPE) {
          await classicAttestationLayer(ctx, source, fetched.digest, layer);
        }
      } catch (err) {
        rethrowTransient(err);
        ctx.problems.push(`${source} ${fetched.digest} layer ${layer.digest}: ${message(err)}`);
      }
    }),
  );
}

/**
 * Whether a referrers-index entry may hold trust material. The descriptor is the upstream's word and
 * not always the referrer's own: GHCR lists cosign v3 bundles in the tag-schema index with
 * `artifactType: application/vnd.oci.empty.v1+json` (or none), so an entry that names no specific
 * artifact type is followed and its manifest read; only the layers decide what it is.
 */
function interesting(d: Descriptor): boolean {
  const t = d.artifactType ?? '';
  return (
    t === '' ||
    t === OCI_EMPTY_MEDIA_TYPE ||
    t.startsWith(SIGSTORE_BUNDLE_PREFIX) ||
    t === COSIGN_SIG_ARTIFACT_TYPE ||
    t === COSIGN_ATT_ARTIFACT_TYPE
  );
}

const OCI_EMPTY_MEDIA_TYPE = 'application/vnd.oci.empty.v1+json';

/** The referrers API, falling back to the referrers tag schema (one implementation: listReferrers). */
async function referrers(ctx: Ctx): Promise<void> {
  // No artifactType filter: one request covers bundles and cosign's OCI 1.1 artifacts (as cosign's
  // GetBundles asks), and registries that ignore the filter answer the same anyway.
  const listing = await listReferrers(ctx.registry, ctx.repository, ctx.subject, { request: ctx.request });
  ctx.roundTrips += listing?.requests ?? 2;
  if (listing === undefined) throw new NothingThere();
  const { source, index } = listing;
  const wanted = limited(ctx, index.manifests.filter(interesting), source);
  await settle(
    wanted.map(async (d) => {
      try {
        await referrer(ctx, source, d);
      } catch (err) {
        if (err instanceof NothingThere) {
          ctx.problems.push(`${source}: referrer ${d.digest} is listed but missing`);
          return;
        }
        rethrowTransient(err);
        ctx.problems.push(`${source}: referrer ${d.digest}: ${message(err)}`);
      }
    }),
  );
}

async function classicTag(ctx: Ctx, suffix: 'sig' | 'att'): Promise<void> {
  const source: EvidenceSource = suffix === 'sig' ? 'cosign-sig' : 'cosign-att';
  const { fetched, parsed } = await manifest(ctx, cosignTag(ctx.subject, suffix));
  const layers = limited(ctx, parsed.layers, `${source} ${fetched.digest}`);
  await settle(
    layers.map(async (layer) => {
      try {
        if (suffix === 'sig') await classicSignatureLayer(ctx, source, fetched.digest, layer);
        else await classicAttestationLayer(ctx, source, fetched.digest, layer);
      } catch (err) {
        rethrowTransient(err);
        ctx.problems.push(`${source} ${fetched.digest} layer ${layer.digest}: ${message(err)}`);
      }
    }),
  );
}

/**
 * Find every signature and attestation of `subject` in `repository` (not verified yet).
 *
 * Round trips are the upstream calls made (`getReferrers`, `getManifest`, `getBlob`); an upstream
 * client's own retries and token requests are not included. Throws `RegistryError('UNAVAILABLE')` only
 * when nothing was found and some place could not be searched because of a transient upstream error.
 */
export async function discoverEvidence(
  registry: RegistryReader,
  repository: string,
  subject: Digest,
  options: DiscoverOptions = {},
): Promise<Evidence> {
  const ctx: Ctx = {
    registry,
    repository,
    subject,
    request: options.signal === undefined ? {} : { signal: options.signal },
    maxBlobBytes: options.maxBlobBytes ?? MAX_EVIDENCE_BLOB_BYTES,
    maxItems: options.maxItems ?? MAX_EVIDENCE_ITEMS,
    roundTrips: 0,
    problems: [],
    items: [],
  };
  const sources: [string, () => Promise<void>][] = [
    ['referrers', () => referrers(ctx)],
    ['cosign .sig', () => classicTag(ctx, 'sig')],
    ['cosign .att', () => classicTag(ctx, 'att')],
  ];
  const transient: RegistryError[] = [];
  await Promise.all(
    sources.map(async ([name, run]) => {
      try {
        await run();
      } catch (err) {
        if (err instanceof NothingThere) return;
        if (isRegistryError(err) && TRANSIENT.has(err.code)) transient.push(err);
        ctx.problems.push(`${name}: ${message(err)}`);
      }
    }),
  );
  options.signal?.throwIfAborted();
  const first = transient[0];
  if (ctx.items.length === 0 && first !== undefined) {
    throw new RegistryError('UNAVAILABLE', `signature discovery failed: ${ctx.problems.join('; ')}`, {
      cause: first,
      ...(first.retryAfter === undefined ? {} : { retryAfter: first.retryAfter }),
    });
  }
  // Stable order regardless of which request finished first.
  const order: Record<EvidenceSource, number> = {
    referrers: 0,
    'tag-schema': 1,
    'cosign-sig': 2,
    'cosign-att': 3,
  };
  ctx.items.sort(
    (a, b) =>
      order[a.source] - order[b.source] ||
      a.manifestDigest.localeCompare(b.manifestDigest) ||
      a.layerDigest.localeCompare(b.layerDigest),
  );
  return { subject, items: ctx.items, roundTrips: ctx.roundTrips, problems: ctx.problems };
}
