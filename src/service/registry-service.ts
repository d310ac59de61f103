import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import {
  defaultManifestAccept,
  digestHex,
  isIndexMediaType,
  MediaType,
  parseManifest,
  referencedDigests,
  RegistryError,
} from '../oci/index.ts';
import type { Digest, ManifestReference } from '../oci/index.ts';
import type { BlobHandle, BlobStore } from '../cache/index.ts';
import type { MetadataStore, TagRecord } from '../metadata/index.ts';
import type { Upstream } from '../upstream/index.ts';
import { SingleFlight } from './single-flight.ts';
import type { Metrics } from './metrics.ts';
import type { Decision } from '../policy/index.ts';
import type { GateManifest, TrustGate } from './trust-gate.ts';
import type { TagGuard } from './tag-guard.ts';

/** One configured upstream with the cache rules that apply to it. */
export interface UpstreamEntry {
  upstream: Upstream;
  /** ms a tag answer is reused without asking the upstream. */
  tagTTL: number;
  /** ms past tagTTL during which the last known digest is served when the upstream fails. */
  staleIfError: number;
}

/** Where a request goes: the upstream host as configured, and the repository inside it. */
export interface Target {
  upstream: string;
  repository: string;
}

/** How a manifest answer was produced. `stale` = last known digest served because the upstream failed. */
export type ManifestCacheState = 'hit' | 'miss' | 'stale';

export interface ManifestResult {
  digest: Digest;
  mediaType: string;
  size: number;
  /** Present for GET; HEAD answers never read the body. */
  bytes?: Buffer;
  cache: ManifestCacheState;
  /** The tag that was resolved, for requests by tag. */
  tag?: string;
  /** The trust decision that let it through (absent when no gate is configured). */
  decision?: Decision;
  /** Internal: the tag's cache key (tag, plus the Accept variant). */
  tagKey?: string;
}

export interface BlobHeadResult {
  size: number;
  cache: 'hit' | 'miss';
}

export interface RegistryServiceOptions {
  upstreams: ReadonlyMap<string, UpstreamEntry>;
  /** Other names of upstreams (alias -> configured host). */
  aliases?: ReadonlyMap<string, string>;
  blobs: BlobStore;
  metadata: MetadataStore;
  logger: Logger;
  metrics?: Metrics;
  maxManifestBytes: number;
  /** The decision step; without it every configured upstream's content is served (a plain cache). */
  gate?: TrustGate;
  /** Tag history and tag rules (moves, pins, cooldown, banned tags). */
  tags?: TagGuard;
  now?: () => number;
}

/**
 * The read side of the registry: tag resolution, manifests, blobs, tags and referrers, each answered
 * from the cache when the rules allow and otherwise from exactly one upstream request however many
 * clients ask at once. This is the seam where the trust decision will slot in: every manifest answer
 * passes through {@link RegistryService.resolveManifest} with its digest known before any byte is sent.
 */
export class RegistryService {
  readonly #upstreams: ReadonlyMap<string, UpstreamEntry>;
  readonly #aliases: ReadonlyMap<string, string>;
  readonly #blobs: BlobStore;
  readonly #metadata: MetadataStore;
  readonly #log: Logger;
  readonly #metrics: Metrics | undefined;
  readonly #maxManifestBytes: number;
  readonly #now: () => number;
  readonly #gate: TrustGate | undefined;
  readonly #tags: TagGuard | undefined;
  readonly #tagFlights = new SingleFlight<TagRecord>();
  readonly #manifestFlights = new SingleFlight<{ mediaType: string; size: number; bytes: Buffer }>();
  readonly #linkFlights = new SingleFlight<void>();
  readonly #verifiedMemo = new Map<string, { digest: Digest; expires: number }>();

  constructor(options: RegistryServiceOptions) {
    this.#upstreams = options.upstreams;
    this.#aliases = options.aliases ?? new Map();
    this.#blobs = options.blobs;
    this.#metadata = options.metadata;
    this.#log = options.logger.child({ module: 'service' });
    this.#metrics = options.metrics;
    this.#maxManifestBytes = options.maxManifestBytes;
    this.#now = options.now ?? Date.now;
    this.#gate = options.gate;
    this.#tags = options.tags;
  }

  get gate(): TrustGate | undefined {
    return this.#gate;
  }

  /** The configured upstream for a host, or DENIED: no connection is ever made to other hosts. */
  upstreamFor(host: string): UpstreamEntry {
    const entry = this.#upstreams.get(host);
    if (!entry) {
      throw new RegistryError('DENIED', `upstream registry "${host}" is not configured on this proxy`, {
        detail: { upstream: host, reason: 'upstream-not-configured' },
      });
    }
    return entry;
  }

  /** The configured upstream a client-given host or alias names, or undefined. */
  resolveHost(host: string): string | undefined {
    if (this.#upstreams.has(host)) return host;
    return this.#aliases.get(host);
  }

  /**
   * Resolve a manifest reference to a digest and (for GET) its bytes. By tag: within tagTTL from the
   * metadata store with no upstream request; otherwise one upstream HEAD; when the upstream fails, the
   * last known digest is served for up to staleIfError. By digest: from the cache or one upstream GET
   * whose bytes are hashed before they are stored.
   */
  async resolveManifest(
    target: Target,
    reference: ManifestReference,
    options: { accept: readonly string[]; withBody: boolean },
  ): Promise<ManifestResult> {
    const entry = this.upstreamFor(target.upstream);
    const result = await this.#locateManifest(entry, target, reference, options);
    if (this.#gate) {
      // The decision comes before the first byte: a denied manifest never reaches the client.
      const manifest: GateManifest = {
        digest: result.digest,
        mediaType: result.mediaType,
        bytes: async () => {
          if (result.bytes) return result.bytes;
          const full = await this.#manifestByDigest(entry, target, result.digest, {
            ...options,
            withBody: true,
          });
          if (!full.bytes) throw new RegistryError('UNKNOWN', `manifest ${result.digest} has no bytes`);
          return full.bytes;
        },
      };
      if (result.tag !== undefined) manifest.tag = result.tag;
      result.decision = await this.#gate.admitManifest(entry.upstream, target, manifest);
      if (result.tagKey !== undefined && result.cache !== 'stale')
        await this.#rememberVerified(target, result);
    }
    return result;
  }

  /**
   * The last digest of a tag that passed the gate: what stale-if-error may serve while the upstream
   * fails (never a digest that was only resolved, and perhaps denied). Written when it changes.
   */
  async #rememberVerified(target: Target, result: ManifestResult): Promise<void> {
    const key = `${target.upstream}/${target.repository}:${result.tagKey}`;
    const memo = this.#verifiedMemo.get(key);
    // Rewritten at least every 10 minutes, so a store that lost its data (Redis flush) heals.
    if (memo && memo.digest === result.digest && memo.expires > this.#now()) return;
    const record: TagRecord = {
      digest: result.digest,
      mediaType: result.mediaType,
      size: result.size,
      checkedAt: this.#now(),
    };
    await this.#metadata.set('tag-verified', key, record);
    if (this.#verifiedMemo.size >= 50_000) this.#verifiedMemo.clear();
    this.#verifiedMemo.set(key, { digest: result.digest, expires: this.#now() + 600_000 });
  }

  /**
   * Resolve and decide without serving: the dry run behind `pullwarden check`. The decision is
   * evaluated fresh (no decision cache), by the same code the pull path uses.
   */
  async check(
    target: Target,
    reference: ManifestReference,
  ): Promise<{ digest: Digest; mediaType: string; decision: Decision | undefined }> {
    const entry = this.upstreamFor(target.upstream);
    const options = { accept: [] as string[], withBody: true };
    const result = await this.#locateManifest(entry, target, reference, options);
    if (!this.#gate) return { digest: result.digest, mediaType: result.mediaType, decision: undefined };
    const bytes = result.bytes;
    if (!bytes) throw new RegistryError('UNKNOWN', `manifest ${result.digest} has no bytes`);
    const manifest: GateManifest = {
      digest: result.digest,
      mediaType: result.mediaType,
      bytes: () => Promise.resolve(bytes),
    };
    if (result.tag !== undefined) manifest.tag = result.tag;
    const decision = await this.#gate.evaluate(entry.upstream, target, manifest);
    return { digest: result.digest, mediaType: result.mediaType, decision };
  }

  async #locateManifest(
    entry: UpstreamEntry,
    target: Target,
    reference: ManifestReference,
    options: { accept: readonly string[]; withBody: boolean },
  ): Promise<ManifestResult> {
    if (reference.kind === 'digest') {
      return this.#manifestByDigest(entry, target, reference.digest, options);
    }
    const resolved = await this.#resolveTag(entry, target, reference.tag, options.accept);
    const { cache, tagKey } = resolved;
    const record = this.#tags
      ? await this.#tags.enforce(
          this.#gate?.context.engine.match(target.upstream, target.repository),
          target.upstream,
          target.repository,
          reference.tag,
          resolved.record,
        )
      : resolved.record;
    const result: ManifestResult = {
      digest: record.digest,
      mediaType: record.mediaType,
      size: record.size,
      cache,
      tag: reference.tag,
      tagKey,
    };
    if (
      options.withBody ||
      !(await this.#metadata.getManifest(target.upstream, target.repository, record.digest))
    ) {
      // A HEAD by tag still caches the manifest (one GET by digest) so that the client's next request,
      // a GET by digest, is answered from the cache; the trust decision needs the bytes anyway.
      const byDigest = await this.#manifestByDigest(entry, target, record.digest, options);
      if (options.withBody && byDigest.bytes) result.bytes = byDigest.bytes;
      if (cache !== 'stale' && byDigest.cache === 'miss') result.cache = 'miss';
    }
    return result;
  }

  async #resolveTag(
    entry: UpstreamEntry,
    target: Target,
    tag: string,
    clientAccept: readonly string[],
  ): Promise<{ record: TagRecord; cache: ManifestCacheState; tagKey: string }> {
    const accept = effectiveAccept(clientAccept);
    const tagKey = tagCacheKey(tag, accept);
    const cached = await this.#metadata.getTag(target.upstream, target.repository, tagKey);
    const now = this.#now();
    if (cached && now - cached.checkedAt < entry.tagTTL) {
      this.#metrics?.cacheRequests.inc({ kind: 'tag', result: 'hit' });
      return { record: cached, cache: 'hit', tagKey };
    }
    const flightKey = `${target.upstream}\u0000${target.repository}\u0000${tagKey}`;
    try {
      const record = await this.#tagFlights.run(flightKey, async () => {
        const head = await entry.upstream.headManifest(target.repository, tag, { accept });
        const fresh: TagRecord = {
          digest: head.digest,
          mediaType: head.mediaType,
          size: head.size,
          checkedAt: this.#now(),
        };
        await this.#metadata.setTag(target.upstream, target.repository, tagKey, fresh);
        // History follows the plain tag (not every Accept variant of it).
        if (tagKey === tag) await this.#tags?.observe(target.upstream, target.repository, tag, fresh);
        return fresh;
      });
      this.#metrics?.cacheRequests.inc({ kind: 'tag', result: 'miss' });
      return { record, cache: 'miss', tagKey };
    } catch (err) {
      if (cached && isUpstreamFailure(err) && now - cached.checkedAt < entry.tagTTL + entry.staleIfError) {
        // With a gate, only the last digest that passed it may be served stale.
        const stale = this.#gate
          ? await this.#metadata.get<TagRecord>(
              'tag-verified',
              `${target.upstream}/${target.repository}:${tagKey}`,
            )
          : cached;
        if (stale) {
          this.#metrics?.cacheRequests.inc({ kind: 'tag', result: 'stale' });
          this.#log.warn(
            {
              upstream: target.upstream,
              repository: target.repository,
              tag,
              digest: stale.digest,
              ageMs: now - cached.checkedAt,
              err: errSummary(err),
            },
            'upstream failed: serving the last verified digest for the tag (stale)',
          );
          return { record: stale, cache: 'stale', tagKey };
        }
      }
      throw err;
    }
  }

  async #manifestByDigest(
    entry: UpstreamEntry,
    target: Target,
    digest: Digest,
    options: { accept: readonly string[]; withBody: boolean },
  ): Promise<ManifestResult> {
    const known = await this.#metadata.getManifest(target.upstream, target.repository, digest);
    if (known) {
      if (!options.withBody) {
        this.#metrics?.cacheRequests.inc({ kind: 'manifest', result: 'hit' });
        return { digest, mediaType: known.mediaType, size: known.size, cache: 'hit' };
      }
      const bytes = await this.#blobs.readBytes(digest, this.#maxManifestBytes);
      if (bytes) {
        this.#metrics?.cacheRequests.inc({ kind: 'manifest', result: 'hit' });
        return { digest, mediaType: known.mediaType, size: bytes.length, bytes, cache: 'hit' };
      }
      // Evicted from the blob store: fetch again below.
    }
    const flightKey = `${target.upstream}\u0000${target.repository}\u0000${digest}`;
    const fetched = await this.#manifestFlights.run(flightKey, async () => {
      const m = await entry.upstream.getManifest(target.repository, digest, {
        accept: effectiveAccept(options.accept),
      });
      if (m.digest !== digest) {
        // The upstream client checks this too; a mismatch must never reach the cache.
        throw new RegistryError(
          'UNAVAILABLE',
          `upstream ${target.upstream} sent a manifest that does not match ${digest}`,
        );
      }
      if (m.bytes.length > this.#maxManifestBytes) {
        throw new RegistryError(
          'MANIFEST_INVALID',
          `manifest ${digest} is larger than ${this.#maxManifestBytes} bytes`,
        );
      }
      await this.#blobs.putBytes(digest, m.bytes);
      // Remember what the manifest refers to, so blobs of this repository are known to belong to it.
      let links: Digest[] = [];
      try {
        links = referencedDigests(parseManifest(m.bytes, m.mediaType));
      } catch (err) {
        this.#log.debug({ digest, err: errSummary(err) }, 'manifest not parsed for blob links');
      }
      if (links.length > 0) await this.#metadata.addBlobLinks(target.upstream, target.repository, links);
      await this.#metadata.setManifest(target.upstream, target.repository, digest, {
        mediaType: m.mediaType,
        size: m.bytes.length,
      });
      return { mediaType: m.mediaType, size: m.bytes.length, bytes: m.bytes };
    });
    this.#metrics?.cacheRequests.inc({ kind: 'manifest', result: 'miss' });
    const result: ManifestResult = {
      digest,
      mediaType: fetched.mediaType,
      size: fetched.size,
      cache: 'miss',
    };
    if (options.withBody) result.bytes = fetched.bytes;
    return result;
  }

  /**
   * A readable handle on a blob: from the cache, joined to a fill in progress, or a new fill that makes
   * exactly one upstream GET. A blob already cached for another repository is served here only after
   * the upstream confirms this repository has it (one HEAD, then remembered): the cache is shared,
   * access is not.
   */
  async getBlob(target: Target, digest: Digest): Promise<BlobHandle> {
    const entry = this.upstreamFor(target.upstream);
    const admission = await this.#gate?.assertBlobAdmitted(target, digest);
    if (admission?.maxSize !== undefined) {
      // Admitted only through trust material: check the size before a byte is fetched or cached.
      const known =
        (await this.#blobs.stat(digest)) ?? (await entry.upstream.headBlob(target.repository, digest));
      this.#gate?.assertBlobSize(target, digest, admission, known.size);
    }
    const linked = await this.#metadata.hasBlobLink(target.upstream, target.repository, digest);
    const handle = await this.#blobs.getOrFill(digest, () =>
      entry.upstream.getBlob(target.repository, digest),
    );
    this.#metrics?.cacheRequests.inc({ kind: 'blob', result: handle.state });
    if (!linked) {
      try {
        if (handle.state === 'miss') {
          // Our own upstream GET for this repository succeeded: that is the proof of membership.
          await this.#metadata.addBlobLinks(target.upstream, target.repository, [digest]);
        } else {
          // Cached, or a fill started for another repository: ask the upstream before serving.
          await this.#confirmBlobLink(entry, target, digest);
        }
      } catch (err) {
        handle.release();
        throw err;
      }
    }
    return handle;
  }

  /** One upstream HEAD per (repository, digest) however many requests need the same confirmation. */
  async #confirmBlobLink(entry: UpstreamEntry, target: Target, digest: Digest): Promise<void> {
    const key = `${target.upstream}\u0000${target.repository}\u0000${digest}`;
    await this.#linkFlights.run(key, async () => {
      if (await this.#metadata.hasBlobLink(target.upstream, target.repository, digest)) return;
      await entry.upstream.headBlob(target.repository, digest);
      await this.#metadata.addBlobLinks(target.upstream, target.repository, [digest]);
    });
  }

  /** Size of a blob without downloading it: from the cache, or an upstream HEAD. */
  async headBlob(target: Target, digest: Digest): Promise<BlobHeadResult> {
    const entry = this.upstreamFor(target.upstream);
    const admission = await this.#gate?.assertBlobAdmitted(target, digest);
    const cached = await this.#blobs.stat(digest);
    if (cached && (await this.#metadata.hasBlobLink(target.upstream, target.repository, digest))) {
      if (admission) this.#gate?.assertBlobSize(target, digest, admission, cached.size);
      this.#metrics?.cacheRequests.inc({ kind: 'blob-head', result: 'hit' });
      return { size: cached.size, cache: 'hit' };
    }
    const head = await entry.upstream.headBlob(target.repository, digest);
    if (admission) this.#gate?.assertBlobSize(target, digest, admission, head.size);
    this.#metrics?.cacheRequests.inc({ kind: 'blob-head', result: 'miss' });
    return { size: head.size, cache: 'miss' };
  }

  /** The upstream's tag list, passed through (tag lists are not cached: they are not on the pull path). */
  async listTags(
    target: Target,
    query: { n?: number; last?: string },
  ): Promise<{ body: Buffer; link?: string }> {
    const entry = this.upstreamFor(target.upstream);
    return entry.upstream.listTags(target.repository, query);
  }

  /**
   * The referrers of a digest as an OCI image index. Upstreams without the referrers API (distribution
   * 2.8, most registries today) are answered from the referrers tag schema `sha256-<hex>`, filtered here.
   */
  async getReferrers(
    target: Target,
    digest: Digest,
    artifactType: string | undefined,
  ): Promise<{ body: Buffer; filtersApplied: boolean }> {
    const entry = this.upstreamFor(target.upstream);
    const answer = await entry.upstream.getReferrers(target.repository, digest, artifactType);
    if (answer) {
      const applied =
        answer.filtersApplied
          ?.split(',')
          .map((s) => s.trim())
          .includes('artifactType') ?? false;
      if (artifactType === undefined || applied) return { body: answer.body, filtersApplied: applied };
      return { body: filterIndex(answer.body, artifactType), filtersApplied: true };
    }
    const schemaTag = `sha256-${digestHex(digest)}`;
    let bytes: Buffer;
    try {
      const m = await entry.upstream.getManifest(target.repository, schemaTag, {
        accept: [MediaType.ociIndex],
      });
      bytes = m.bytes;
    } catch (err) {
      if (err instanceof RegistryError && (err.code === 'MANIFEST_UNKNOWN' || err.code === 'NAME_UNKNOWN')) {
        return {
          body: Buffer.from(JSON.stringify(emptyIndex())),
          filtersApplied: artifactType !== undefined,
        };
      }
      throw err;
    }
    if (artifactType === undefined) return { body: normalizeIndex(bytes), filtersApplied: false };
    return { body: filterIndex(bytes, artifactType), filtersApplied: true };
  }
}

function emptyIndex(): { schemaVersion: 2; mediaType: string; manifests: unknown[] } {
  return { schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: [] };
}

function indexManifests(bytes: Buffer): Record<string, unknown>[] {
  try {
    const parsed = JSON.parse(bytes.toString('utf8')) as { manifests?: unknown };
    return Array.isArray(parsed.manifests)
      ? parsed.manifests.filter((m): m is Record<string, unknown> => typeof m === 'object' && m !== null)
      : [];
  } catch {
    throw new RegistryError('UNAVAILABLE', 'upstream referrers index is not valid JSON');
  }
}

function normalizeIndex(bytes: Buffer): Buffer {
  return Buffer.from(JSON.stringify({ ...emptyIndex(), manifests: indexManifests(bytes) }));
}

function filterIndex(bytes: Buffer, artifactType: string): Buffer {
  const manifests = indexManifests(bytes).filter((m) => m.artifactType === artifactType);
  return Buffer.from(JSON.stringify({ ...emptyIndex(), manifests }));
}

/** The Accept list sent upstream: the client's, or every manifest type we can serve byte-exact. */
export function effectiveAccept(clientAccept: readonly string[]): readonly string[] {
  const useful = clientAccept.filter((t) => t !== '*/*' && t.includes('/'));
  return useful.length > 0 ? useful : defaultManifestAccept;
}

/**
 * A tag's answer depends on what the client accepts (an old client that does not accept indexes gets a
 * platform manifest). Clients that accept an index share the plain key; others get their own.
 */
function tagCacheKey(tag: string, accept: readonly string[]): string {
  // Every client that takes an index (containerd, CRI-O, podman, skopeo, Docker) shares the plain key,
  // and with it the tag's history and rules; only clients without index support get a variant.
  if (accept.some(isIndexMediaType)) return tag;
  const h = createHash('sha256')
    .update([...accept].sort().join(','))
    .digest('hex')
    .slice(0, 16);
  return `${tag}#${h}`;
}

/** Failures that justify serving a stale tag: the upstream is down, slow or rate limiting us. */
function isUpstreamFailure(err: unknown): boolean {
  return (
    err instanceof RegistryError &&
    (err.code === 'UNAVAILABLE' || err.code === 'TOOMANYREQUESTS' || err.code === 'UNKNOWN')
  );
}

function errSummary(err: unknown): { code?: string; message: string } {
  if (err instanceof RegistryError) return { code: err.code, message: err.message };
  return { message: err instanceof Error ? err.message : String(err) };
}
