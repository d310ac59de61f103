import { createHash } from 'node:crypto';
import { readAtMost } from '../shared/index.ts';
import type { Logger } from 'pino';
import {
  acceptsManifest,
  defaultManifestAccept,
  digestAlgorithm,
  digestOf,
  isTag,
  parseManifest,
  referencedDigests,
  RegistryError,
} from '../oci/index.ts';
import type { Digest, ManifestReference, ParsedManifest } from '../oci/index.ts';
import type { BlobHandle, BlobStore } from '../cache/index.ts';
import type { ManifestCacheState } from '../shared/index.ts';
import type { MetadataStore, TagRecord } from '../metadata/index.ts';
import type { Upstream } from '../upstream/index.ts';
import { SingleFlight } from './single-flight.ts';
import type { Metrics } from './metrics.ts';
import type { Decision } from '../policy/index.ts';
import type { GateManifest, ManifestContent, TrustGate } from './trust-gate.ts';
import type { TagGuard } from './tag-guard.ts';
import type { DenyDetail } from './deny-detail.ts';
import { targetKey } from './target.ts';
import type { Target } from './target.ts';
import { boundToDeclaredSize, sizeRefusalError } from './blob-bounds.ts';
import type { BlobSizeProblem } from './blob-bounds.ts';
import { referrersIndex } from './referrers.ts';
import { VerifiedTags } from './verified-tags.ts';

/** One configured upstream with the cache rules that apply to it. */
export interface UpstreamEntry {
  upstream: Upstream;
  /** ms a tag answer is reused without asking the upstream. */
  tagTTL: number;
  /** ms past tagTTL during which the last known digest is served when the upstream fails. */
  staleIfError: number;
}

/** How a manifest answer was produced (the one `CacheState` vocabulary of shared/, without `joined`). */
export type { ManifestCacheState };

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
  /** The one parse of the manifest in this request, when its bytes were at hand. */
  parsed?: ParsedManifest;
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
  /**
   * Most bytes read from an upstream for a blob whose size nothing declares (storage.maxBlobSize);
   * default unbounded.
   */
  maxBlobBytes?: number;
  /** The decision step; without it every configured upstream's content is served (a plain cache). */
  gate?: TrustGate;
  /** Tag history and tag rules (moves, pins, cooldown, banned tags). */
  tags?: TagGuard;
  now?: () => number;
}

/**
 * The read side of the registry: tag resolution, manifests, blobs, tags and referrers, each answered
 * from the cache when the rules allow and otherwise from exactly one upstream request however many
 * clients ask at once. With a gate, every manifest answer passes through the trust decision in
 * {@link RegistryService.resolveManifest}, its digest known before any byte is sent, and every blob
 * through the admitted closure in {@link RegistryService.getBlob}.
 */
export class RegistryService {
  readonly #upstreams: ReadonlyMap<string, UpstreamEntry>;
  readonly #aliases: ReadonlyMap<string, string>;
  readonly #blobs: BlobStore;
  readonly #metadata: MetadataStore;
  readonly #log: Logger;
  readonly #metrics: Metrics | undefined;
  readonly #maxManifestBytes: number;
  readonly #maxBlobBytes: number;
  readonly #now: () => number;
  readonly #gate: TrustGate | undefined;
  readonly #tags: TagGuard | undefined;
  readonly #tagFlights = new SingleFlight<TagRecord>();
  readonly #manifestFlights = new SingleFlight<{
    mediaType: string;
    size: number;
    bytes: Buffer;
    parsed: ParsedManifest;
  }>();
  readonly #linkFlights = new SingleFlight<void>();
  /** One walk of an upstream's tag pages per repository, shared by every client listing it meanwhile. */
  readonly #tagListFlights = new SingleFlight<string[]>();
  readonly #cappedFlights = new SingleFlight<void>();
  readonly #verified: VerifiedTags;
  /**
   * Manifests known to be cached for (upstream, repository, digest): a warm HEAD by tag checks this
   * instead of reading the metadata store on every request. Positive only, and only an optimisation:
   * a manifest evicted since is fetched again by the GET that needs it.
   */
  readonly #knownManifests = new Set<string>();
  /**
   * The tag records this process last read or wrote, reused while fresh (`checkedAt` within the
   * upstream's current tagTTL): a warm tag is read from the metadata store once per tagTTL, not on
   * every request. The same answer the store gives, since a record is rewritten only by a resolution,
   * and every process resolves a tag only once its record is past tagTTL. Two processes that resolve
   * at the same moment may each keep their own answer for one tagTTL, both a digest the upstream
   * named for the tag within tagTTL and each decided by the gate.
   */
  readonly #tagMemo = new Map<string, TagRecord>();

  constructor(options: RegistryServiceOptions) {
    this.#upstreams = options.upstreams;
    this.#aliases = options.aliases ?? new Map();
    this.#blobs = options.blobs;
    this.#metadata = options.metadata;
    this.#log = options.logger.child({ module: 'service' });
    this.#metrics = options.metrics;
    this.#maxManifestBytes = options.maxManifestBytes;
    this.#maxBlobBytes = options.maxBlobBytes ?? Number.POSITIVE_INFINITY;
    this.#now = options.now ?? Date.now;
    this.#gate = options.gate;
    this.#tags = options.tags;
    this.#verified = new VerifiedTags(this.#metadata, this.#now);
  }

  get gate(): TrustGate | undefined {
    return this.#gate;
  }

  /** The configured upstream for a host, or DENIED: no connection is ever made to other hosts. */
  upstreamFor(host: string): UpstreamEntry {
    const entry = this.#upstreams.get(host);
    if (!entry) {
      throw new RegistryError('DENIED', `upstream registry "${host}" is not configured on this proxy`, {
        detail: { upstream: host, reason: 'upstream-not-configured' } satisfies DenyDetail,
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
   * metadata store with no upstream request; otherwise one upstream HEAD and (when the digest is new)
   * one GET by digest, so that a tag only ever points at a digest whose bytes were fetched, hashed and
   * parsed; when the upstream fails, the last verified digest is served for up to staleIfError. By
   * digest: from the cache or one upstream GET whose bytes are hashed before they are stored.
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
      const manifest = this.#gateManifest(entry, target, result);
      result.decision = await this.#gate.admitManifest(entry.upstream, target, manifest);
      if (result.tag !== undefined && result.cache !== 'stale')
        await this.#verified.remember(target, result.tag, result);
    }
    return result;
  }

  /**
   * The manifest as the gate sees it: its content is read (and parsed, once) only when the decision
   * needs it, and the parse is kept on the result so that nothing downstream parses again.
   */
  #gateManifest(entry: UpstreamEntry, target: Target, result: ManifestResult): GateManifest {
    let content: Promise<ManifestContent> | undefined;
    const manifest: GateManifest = {
      digest: result.digest,
      mediaType: result.mediaType,
      content: () => {
        content ??= (async () => {
          if (result.bytes && result.parsed) return { bytes: result.bytes, parsed: result.parsed };
          const full = await this.#manifestByDigest(entry, target, result.digest, { withBody: true });
          if (!full.bytes || !full.parsed) {
            throw new RegistryError('UNKNOWN', `manifest ${result.digest} has no bytes`);
          }
          return { bytes: full.bytes, parsed: full.parsed };
        })();
        return content;
      },
    };
    if (result.tag !== undefined) manifest.tag = result.tag;
    return manifest;
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
    const manifest = this.#gateManifest(entry, target, result);
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
      // By digest the client named the bytes it wants: served as they are, whatever it accepts.
      return this.#manifestByDigest(entry, target, reference.digest, options);
    }
    const resolved = await this.#resolveTag(entry, target, reference.tag);
    const { cache } = resolved;
    const record = this.#tags
      ? await this.#tags.enforce(
          this.#gate?.context.engine.match(target.upstream, target.repository),
          target.upstream,
          target.repository,
          reference.tag,
          resolved.record,
        )
      : resolved.record;
    if (!acceptsManifest(options.accept, record.mediaType)) {
      // What the tag is cannot be converted (conversion changes the digest and breaks signatures),
      // so a client that cannot read it is told so, as distribution does for an OCI manifest asked
      // for without OCI in Accept.
      throw new RegistryError(
        'MANIFEST_UNKNOWN',
        `${target.repository}:${reference.tag} is a ${record.mediaType}, which the client does not accept`,
        {
          detail: {
            reason: 'media-type-not-accepted',
            tag: reference.tag,
            digest: record.digest,
            mediaType: record.mediaType,
            accept: options.accept,
          },
        },
      );
    }
    const result: ManifestResult = {
      digest: record.digest,
      mediaType: record.mediaType,
      size: record.size,
      cache,
      tag: reference.tag,
    };
    const knownKey = targetKey(target, record.digest);
    if (options.withBody || !(await this.#manifestKnown(knownKey, target, record.digest))) {
      // A HEAD by tag still caches the manifest (one GET by digest) so that the client's next request,
      // a GET by digest, is answered from the cache; the trust decision needs the bytes anyway.
      const byDigest = await this.#manifestByDigest(entry, target, record.digest, options);
      if (options.withBody && byDigest.bytes) result.bytes = byDigest.bytes;
      if (byDigest.parsed) result.parsed = byDigest.parsed;
      if (cache !== 'stale' && byDigest.cache === 'miss') result.cache = 'miss';
    }
    return result;
  }

  #memoTag(key: string, record: TagRecord): void {
    if (this.#tagMemo.size >= MEMO_LIMIT) this.#tagMemo.clear();
    this.#tagMemo.set(key, record);
  }

  async #manifestKnown(key: string, target: Target, digest: Digest): Promise<boolean> {
    if (this.#knownManifests.has(key)) return true;
    if (!(await this.#metadata.getManifest(target.upstream, target.repository, digest))) return false;
    if (this.#knownManifests.size >= MEMO_LIMIT) this.#knownManifests.clear();
    this.#knownManifests.add(key);
    return true;
  }

  async #resolveTag(
    entry: UpstreamEntry,
    target: Target,
    tag: string,
  ): Promise<{ record: TagRecord; cache: ManifestCacheState }> {
    const flightKey = targetKey(target, tag);
    const memo = this.#tagMemo.get(flightKey);
    if (memo && this.#now() - memo.checkedAt < entry.tagTTL) {
      this.#metrics?.cacheRequests.inc({ kind: 'tag', result: 'hit' });
      return { record: memo, cache: 'hit' };
    }
    const cached = await this.#metadata.getTag(target.upstream, target.repository, tag);
    const now = this.#now();
    if (cached && now - cached.checkedAt < entry.tagTTL) {
      this.#memoTag(flightKey, cached);
      this.#metrics?.cacheRequests.inc({ kind: 'tag', result: 'hit' });
      return { record: cached, cache: 'hit' };
    }
    try {
      const record = await this.#tagFlights.run(flightKey, async () => {
        // Resolved with every media type pullwarden serves, never with the client's list: a registry
        // that converts on the fly (distribution 2.8 answers a schema2 tag with a schema1 conversion
        // when schema2 is not accepted) would give a digest that exists only for that Accept, and it
        // would stand for the tag for every client for tagTTL. What the client can take is decided
        // afterwards, from what the tag really is.
        const head = await entry.upstream.headManifest(target.repository, tag, {
          accept: defaultManifestAccept,
        });
        // The tag points at a digest only once its bytes were fetched, hashed and parsed.
        const fetched = await this.#manifestByDigest(entry, target, head.digest, { withBody: false });
        const fresh: TagRecord = {
          digest: head.digest,
          mediaType: fetched.mediaType,
          size: fetched.size,
          checkedAt: this.#now(),
        };
        await this.#metadata.setTag(target.upstream, target.repository, tag, fresh);
        await this.#tags?.observe(target.upstream, target.repository, tag, fresh);
        return fresh;
      });
      this.#memoTag(flightKey, record);
      this.#metrics?.cacheRequests.inc({ kind: 'tag', result: 'miss' });
      return { record, cache: 'miss' };
    } catch (err) {
      if (cached && isUpstreamFailure(err) && now - cached.checkedAt < entry.tagTTL + entry.staleIfError) {
        // With a gate, only the last digest that passed it may be served stale.
        const stale = this.#gate ? await this.#verified.last(target, tag) : cached;
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
          return { record: stale, cache: 'stale' };
        }
      }
      throw err;
    }
  }

  async #manifestByDigest(
    entry: UpstreamEntry,
    target: Target,
    digest: Digest,
    options: { withBody: boolean },
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
        // Checked when it was stored; parsed again here because this request needs its content.
        const parsed = this.#parse(target, digest, bytes, known.mediaType);
        return { digest, mediaType: known.mediaType, size: bytes.length, bytes, parsed, cache: 'hit' };
      }
      // Evicted from the blob store: fetch again below.
    }
    const flightKey = targetKey(target, digest);
    const fetched = await this.#manifestFlights.run(flightKey, async () => {
      const m = await entry.upstream.getManifest(target.repository, digest, {
        accept: defaultManifestAccept,
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
      // Parsed the way the client will parse it before anything is stored: a manifest whose media
      // type, Content-Type and shape disagree never enters the cache.
      const parsed = this.#parse(target, digest, m.bytes, m.mediaType);
      await this.#blobs.putBytes(digest, m.bytes);
      // Remember what the manifest refers to, so blobs of this repository are known to belong to it.
      const links = referencedDigests(parsed);
      if (links.length > 0) await this.#metadata.addBlobLinks(target.upstream, target.repository, links);
      await this.#metadata.setManifest(target.upstream, target.repository, digest, {
        mediaType: m.mediaType,
        size: m.bytes.length,
      });
      return { mediaType: m.mediaType, size: m.bytes.length, bytes: m.bytes, parsed };
    });
    this.#metrics?.cacheRequests.inc({ kind: 'manifest', result: 'miss' });
    const result: ManifestResult = {
      digest,
      mediaType: fetched.mediaType,
      size: fetched.size,
      cache: 'miss',
      parsed: fetched.parsed,
    };
    if (options.withBody) result.bytes = fetched.bytes;
    return result;
  }

  /** {@link parseManifest}, with the upstream and digest added to a refusal. */
  #parse(target: Target, digest: Digest, bytes: Buffer, mediaType: string): ParsedManifest {
    try {
      return parseManifest(bytes, mediaType);
    } catch (err) {
      if (!(err instanceof RegistryError)) throw err;
      this.#log.warn(
        { upstream: target.upstream, repository: target.repository, digest, err: errSummary(err) },
        'manifest refused',
      );
      throw new RegistryError(
        err.code,
        `upstream ${target.upstream} sent manifest ${digest} of ${target.repository} that is refused: ${err.message}`,
        {
          cause: err,
          detail: {
            ...(typeof err.detail === 'object' && err.detail !== null ? err.detail : {}),
            upstream: target.upstream,
            repository: target.repository,
            digest,
          },
        },
      );
    }
  }

  /**
   * A readable handle on a blob: from the cache, joined to a fill in progress, or a new fill that makes
   * exactly one upstream GET. The cache is shared, access is not: a blob cached for another repository
   * (or another upstream) is served here only once this upstream has shown it in this repository, by a
   * manifest fetched from it that names the blob or by its own bytes (a GET, hashed) — never by a
   * HEAD, which anyone can answer with 200.
   */
  async getBlob(target: Target, digest: Digest): Promise<BlobHandle> {
    const entry = this.upstreamFor(target.upstream);
    const admission = await this.#gate?.assertBlobAdmitted(target, digest);
    if (admission?.maxSize !== undefined) await this.#fetchCapped(entry, target, digest, admission);
    // Linked = a manifest fetched from this upstream for this repository names it, or this upstream
    // already sent its bytes for this repository (a fill, or a hashed confirmation).
    // An admitted closure implies the link: the admitted manifest was fetched from this upstream for
    // this repository, and its blobs were linked before it was stored (#manifestByDigest). Trust
    // material's blobs (capped) and ungated proxies still read the link.
    const linked =
      (admission !== undefined && admission.maxSize === undefined) ||
      (await this.#metadata.hasBlobLink(target.upstream, target.repository, digest));
    const declared = admission?.size;
    const handle = await this.#blobs.getOrFill(digest, async () => {
      const blob = await entry.upstream.getBlob(target.repository, digest);
      // Bounded by what the admitted manifest declares; unknown (no gate): storage.maxBlobSize.
      return declared === undefined
        ? blob
        : boundToDeclaredSize(blob, digest, declared, (p) => this.#sizeRefused(target, p));
    });
    this.#metrics?.cacheRequests.inc({ kind: 'blob', result: handle.state });
    if (!linked) {
      try {
        if (handle.state === 'miss') {
          // Our own upstream GET for this repository succeeded: that is the proof of membership.
          await this.#metadata.addBlobLinks(target.upstream, target.repository, [digest]);
        } else {
          // Cached, or a fill started for another repository: this upstream must show the bytes.
          await this.#confirmBlobLink(entry, target, digest, declared ?? handle.size);
        }
      } catch (err) {
        handle.release();
        throw err;
      }
    }
    return handle;
  }

  /**
   * Proof by bytes that this upstream has a blob in this repository: one GET, hashed and discarded
   * (the cached copy is what is served), however many requests need the same confirmation. Read at
   * most as far as the bytes can still match: the size of the copy we hold, else the size the
   * admitted manifest declares or the running fill announced, else storage.maxBlobSize.
   */
  async #confirmBlobLink(
    entry: UpstreamEntry,
    target: Target,
    digest: Digest,
    expectedSize: number | undefined,
  ): Promise<void> {
    const key = targetKey(target, digest);
    await this.#linkFlights.run(key, async () => {
      if (await this.#metadata.hasBlobLink(target.upstream, target.repository, digest)) return;
      const expected = (await this.#blobs.stat(digest))?.size ?? expectedSize;
      const answer = await entry.upstream.getBlob(target.repository, digest);
      const mismatch = (): RegistryError =>
        new RegistryError(
          'UNAVAILABLE',
          `upstream ${target.upstream} sent bytes for ${target.repository}@${digest} that do not match the digest`,
        );
      if (expected !== undefined && answer.size !== undefined && answer.size !== expected) {
        answer.body.destroy();
        throw mismatch();
      }
      const limit = expected ?? this.#maxBlobBytes;
      const hash = createHash(digestAlgorithm(digest));
      let received = 0;
      // Leaving the loop early destroys the body, so no socket is left open. Past the limit the
      // upstream's bytes can no longer match (or are more than we would ever cache): stop reading.
      for await (const chunk of answer.body) {
        received += (chunk as Buffer).length;
        if (received > limit) break;
        hash.update(chunk as Buffer);
      }
      const matches =
        received <= limit &&
        (expected === undefined || received === expected) &&
        `${digestAlgorithm(digest)}:${hash.digest('hex')}` === digest;
      if (!matches) throw mismatch();
      await this.#metadata.addBlobLinks(target.upstream, target.repository, [digest]);
    });
  }

  /**
   * A blob admitted only through trust material: fetched whole (it is small), counting the bytes as
   * they arrive and refusing it the moment they pass the cap — the upstream's Content-Length (or a
   * HEAD) is its word, not a measurement. The bytes are also held to the size the admitting referrer
   * manifest's descriptor declares, as every other blob is (blob-bounds.ts): a descriptor above the
   * cap is refused before asking upstream, and an answer of more or fewer bytes than declared is
   * refused and counted. Cached (hashed) only when it fits and matches.
   */
  async #fetchCapped(
    entry: UpstreamEntry,
    target: Target,
    digest: Digest,
    admission: { size?: number; maxSize?: number },
  ): Promise<void> {
    const declared = admission.size;
    const cached = await this.#blobs.stat(digest);
    if (cached) {
      this.#gate?.assertBlobSize(target, digest, admission, cached.size);
      return;
    }
    // What the descriptor declares is all the bytes can be: above the cap, there is nothing to fetch.
    if (declared !== undefined) this.#gate?.assertBlobSize(target, digest, admission, declared);
    const max = admission.maxSize ?? 0;
    const key = targetKey(target, digest);
    await this.#cappedFlights.run(key, async () => {
      const answer = await entry.upstream.getBlob(target.repository, digest);
      const body =
        declared === undefined
          ? answer.body
          : boundToDeclaredSize(answer, digest, declared, (p) => this.#sizeRefused(target, p)).body;
      const bytes = await readAtMost(body, max);
      this.#gate?.assertBlobSize(target, digest, admission, bytes?.length);
      if (!bytes || digestOf(bytes, digestAlgorithm(digest)) !== digest) {
        throw new RegistryError(
          'UNAVAILABLE',
          `upstream ${target.upstream} sent bytes for ${target.repository}@${digest} that do not match the digest`,
        );
      }
      await this.#blobs.putBytes(digest, bytes);
      await this.#metadata.addBlobLinks(target.upstream, target.repository, [digest]);
    });
  }

  /** A blob answer refused for its size: logged and counted with the reason, then the error. */
  #sizeRefused(target: Target, problem: BlobSizeProblem): RegistryError {
    const err = sizeRefusalError(target.upstream, target.repository, problem);
    this.#metrics?.blobsRefused.inc({ upstream: target.upstream, reason: problem.reason });
    this.#log.warn(
      {
        upstream: target.upstream,
        repository: target.repository,
        digest: problem.digest,
        reason: problem.reason,
        declared: problem.declared,
        received: problem.received,
      },
      'upstream blob refused: not the size its admitted manifest declares',
    );
    return err;
  }

  /** Size of a blob without downloading it: from the cache, or an upstream HEAD. */
  async headBlob(target: Target, digest: Digest): Promise<BlobHeadResult> {
    const entry = this.upstreamFor(target.upstream);
    const admission = await this.#gate?.assertBlobAdmitted(target, digest);
    if (admission?.maxSize !== undefined) {
      // Trust material: the size a HEAD would report is measured, by the bytes (see #fetchCapped).
      const before = await this.#blobs.stat(digest);
      await this.#fetchCapped(entry, target, digest, admission);
      const after = await this.#blobs.stat(digest);
      if (after) {
        this.#metrics?.cacheRequests.inc({ kind: 'blob-head', result: before ? 'hit' : 'miss' });
        return { size: after.size, cache: before ? 'hit' : 'miss' };
      }
    }
    const cached = await this.#blobs.stat(digest);
    if (cached && (await this.#metadata.hasBlobLink(target.upstream, target.repository, digest))) {
      this.#metrics?.cacheRequests.inc({ kind: 'blob-head', result: 'hit' });
      return { size: cached.size, cache: 'hit' };
    }
    const head = await entry.upstream.headBlob(target.repository, digest);
    const declared = admission?.size;
    if (declared !== undefined && head.size !== declared) {
      // The GET would be refused for it: a client is not told a size that cannot be served.
      throw this.#sizeRefused(target, { reason: 'size-mismatch', digest, declared, received: head.size });
    }
    this.#metrics?.cacheRequests.inc({ kind: 'blob-head', result: 'miss' });
    return { size: head.size, cache: 'miss' };
  }

  /**
   * Whether a repository's tags and referrers may be listed: not when the policy that governs it
   * refuses every pull (action deny, or no policy matches). A list names what exists; a repository
   * the proxy refuses tells nothing about itself. Returns the governing policy's name.
   */
  assertListable(target: Target): { policy: string | undefined } {
    const engine = this.#gate?.context.engine;
    if (!engine) return { policy: undefined };
    const policy = engine.match(target.upstream, target.repository);
    if (policy !== undefined && policy.action !== 'deny') return { policy: policy.name };
    const subject = `${target.upstream}/${target.repository}`;
    const reason =
      policy === undefined ? `no policy matches ${subject}` : `denied by policy "${policy.name}"`;
    throw new RegistryError('DENIED', `${subject}: ${reason}`, {
      detail: {
        policy: policy?.name ?? null,
        result: 'deny',
        reason: 'repository-denied',
        reasons: [reason],
        upstream: target.upstream,
        repository: target.repository,
      } satisfies DenyDetail,
    });
  }

  /**
   * The repository's tags, paginated here (OCI distribution-spec "Listing Tags": lexical order, `n`
   * and `last`, `Link: <…>; rel="next"` when more remain): many registries ignore `n` and `last`, so
   * they are never passed upstream. The upstream's own pages are followed to collect the whole list.
   * Tag lists are not cached: they are not on the pull path.
   */
  async listTags(
    target: Target,
    query: { n?: number; last?: string },
  ): Promise<{ body: Buffer; link?: string; policy: string | undefined }> {
    const entry = this.upstreamFor(target.upstream);
    const { policy } = this.assertListable(target);
    const all = await this.#tagListFlights.run(`${target.upstream}\u0000${target.repository}`, () =>
      this.#allTags(entry, target.repository),
    );
    const { last } = query;
    const after = last === undefined ? all : all.filter((t) => t > last);
    const page = query.n === undefined ? after : after.slice(0, query.n);
    const body = Buffer.from(JSON.stringify({ name: target.repository, tags: page }));
    const lastTag = page.at(-1);
    if (query.n === undefined || page.length >= after.length || lastTag === undefined)
      return { body, policy };
    const next = new URLSearchParams({ n: String(query.n), last: lastTag });
    return { body, policy, link: `</v2/${target.repository}/tags/list?${next.toString()}>; rel="next"` };
  }

  async #allTags(entry: UpstreamEntry, repository: string): Promise<string[]> {
    const tags = new Set<string>();
    let query: { n?: number; last?: string } = {};
    let bytes = 0;
    for (let page = 0; ; page++) {
      if (page >= MAX_TAG_PAGES) {
        throw new RegistryError(
          'UNAVAILABLE',
          `upstream ${entry.upstream.host} lists the tags of ${repository} in more than ${MAX_TAG_PAGES} pages`,
        );
      }
      const answer = await entry.upstream.listTags(repository, query);
      // Every page is bounded by the upstream client; the whole list is bounded here, so a registry
      // that links page after page cannot make one request hold hundreds of MiB.
      bytes += answer.body.length;
      if (bytes > MAX_TAG_LIST_BYTES) {
        throw new RegistryError(
          'UNAVAILABLE',
          `upstream ${entry.upstream.host} lists more than ${MAX_TAG_LIST_BYTES} bytes of tags for ${repository}`,
          { detail: { reason: 'tag-list-too-large' } },
        );
      }
      for (const tag of tagsOf(answer.body, entry.upstream.host)) tags.add(tag);
      const next = answer.link === undefined ? undefined : nextTagsQuery(answer.link);
      // A next page that does not move forward would loop: the list is complete as far as we can tell.
      if (next?.last === undefined || next.last === query.last) break;
      query = next;
    }
    // Code-point order, as distribution sorts (and as `last` compares).
    return [...tags].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  }

  /**
   * The referrers of a digest as an OCI image index (see {@link referrersIndex}), for a repository
   * that may be listed.
   */
  async getReferrers(
    target: Target,
    digest: Digest,
    artifactType: string | undefined,
  ): Promise<{ body: Buffer; filtersApplied: boolean; policy: string | undefined }> {
    const entry = this.upstreamFor(target.upstream);
    const { policy } = this.assertListable(target);
    const answer = await referrersIndex(entry.upstream, target.repository, digest, artifactType);
    return { ...answer, policy };
  }
}

/** Most entries of each in-process memo (known manifests, tag records) before it starts over. */
const MEMO_LIMIT = 50_000;
/** Most upstream pages of a tag list followed (a hostile upstream could link forever). */
const MAX_TAG_PAGES = 100;
/** Most bytes of tag list pages read for one repository (Docker Hub's largest lists are a few MiB). */
const MAX_TAG_LIST_BYTES = 16 * 1024 * 1024;

function tagsOf(body: Buffer, host: string): string[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    throw new RegistryError('UNAVAILABLE', `upstream ${host} sent a tag list that is not JSON`);
  }
  const tags =
    typeof parsed === 'object' && parsed !== null ? (parsed as { tags?: unknown }).tags : undefined;
  // distribution answers `"tags": null` for a repository without tags.
  if (tags === null || tags === undefined) return [];
  if (!Array.isArray(tags))
    throw new RegistryError('UNAVAILABLE', `upstream ${host} sent a malformed tag list`);
  return tags.filter((t): t is string => typeof t === 'string' && isTag(t));
}

/** `n` and `last` of an upstream's `Link: <…?last=x&n=y>; rel="next"`. */
function nextTagsQuery(link: string): { n?: number; last?: string } | undefined {
  const m = /<([^>]*)>\s*;\s*rel="?next"?/.exec(link);
  if (!m) return undefined;
  const target = m[1] ?? '';
  const q = target.indexOf('?');
  const params = new URLSearchParams(q >= 0 ? target.slice(q + 1) : '');
  const out: { n?: number; last?: string } = {};
  const n = Number(params.get('n'));
  if (Number.isSafeInteger(n) && n > 0) out.n = n;
  const last = params.get('last');
  if (last !== null && last !== '') out.last = last;
  return out;
}

/**
 * Failures that justify serving a stale tag: the upstream is down, slow or rate limiting us. An
 * internal error (UNKNOWN, or anything that is not a RegistryError) is our own fault: serving stale
 * would hide it for staleIfError, so it is reported instead.
 */
function isUpstreamFailure(err: unknown): boolean {
  return err instanceof RegistryError && (err.code === 'UNAVAILABLE' || err.code === 'TOOMANYREQUESTS');
}

function errSummary(err: unknown): { code?: string; message: string } {
  if (err instanceof RegistryError) return { code: err.code, message: err.message };
  return { message: err instanceof Error ? err.message : String(err) };
}
