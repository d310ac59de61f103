import type { Logger } from 'pino';
import { RegistryError } from '../oci/index.ts';
import type { Digest } from '../oci/index.ts';
import type { MetadataStore, TagHistoryEntry, TagPin, TagRecord } from '../metadata/index.ts';
import type { Policy } from '../policy/index.ts';
import type { DenyDetail } from './deny-detail.ts';
import { globToRegExp } from '../shared/index.ts';
import type { GlobOptions } from '../shared/index.ts';
import type { Metrics } from './metrics.ts';

// The stored shapes are the metadata store's; re-exported here, where the service's callers look.
export type { TagHistoryEntry, TagPin } from '../metadata/index.ts';

/** A tag move, as reported to the audit trail. */
export interface TagMove {
  upstream: string;
  repository: string;
  tag: string;
  from: Digest;
  to: Digest;
}

/** Entries kept per tag: enough to answer "what did this tag point at last month". */
const HISTORY_LIMIT = 100;

/** Shell-style tag globs: `*` any run, `?` one character, over the whole tag. */
const TAG_GLOB: GlobOptions = { star: 'any', question: true };

/**
 * Tag drift control. Every upstream answer for a tag goes into its history (shared by replicas through
 * the metadata store); a change of digest is a move: logged, counted, and reported to the audit trail.
 * Per policy, tags can be banned (`tags.deny`), pinned to the first digest seen (`tags.immutable`, the
 * tag stays on its pinned digest), refused while moved (`tags.onMove: deny`, until an operator pins
 * the new digest), or held back in a cooldown (`tags.minAge`: a digest seen for the first time is not
 * served by tag until it has been known that long; the previous, older digest is served meanwhile).
 */
export class TagGuard {
  readonly #metadata: MetadataStore;
  readonly #log: Logger;
  readonly #metrics: Metrics | undefined;
  readonly #now: () => number;
  readonly #onMove: ((move: TagMove) => Promise<void>) | undefined;

  constructor(options: {
    metadata: MetadataStore;
    logger: Logger;
    metrics?: Metrics;
    now?: () => number;
    /** Told about every move (the audit trail), awaited. */
    onMove?: (move: TagMove) => Promise<void>;
  }) {
    this.#metadata = options.metadata;
    this.#log = options.logger.child({ module: 'tags' });
    this.#metrics = options.metrics;
    this.#now = options.now ?? Date.now;
    this.#onMove = options.onMove;
  }

  async history(upstream: string, repository: string, tag: string): Promise<TagHistoryEntry[]> {
    return this.#metadata.getTagHistory(upstream, repository, tag);
  }

  async pin(upstream: string, repository: string, tag: string): Promise<TagPin | undefined> {
    return this.#metadata.getTagPin(upstream, repository, tag);
  }

  /** Record an upstream answer for the tag; a new digest is a move (when the tag had one before). */
  async observe(upstream: string, repository: string, tag: string, record: TagRecord): Promise<void> {
    const history = await this.history(upstream, repository, tag);
    const last = history.at(-1);
    const now = this.#now();
    if (last?.digest === record.digest) {
      // Same answer: refresh lastSeen at most once a minute (a write per resolution would be waste).
      if (now - last.lastSeen < 60_000) return;
      last.lastSeen = now;
    } else {
      const known = history.find((h) => h.digest === record.digest);
      const entry: TagHistoryEntry = {
        digest: record.digest,
        mediaType: record.mediaType,
        size: record.size,
        // A tag moved back to a digest it had before keeps that digest's first sighting.
        firstSeen: known?.firstSeen ?? now,
        lastSeen: now,
      };
      history.push(entry);
      if (last !== undefined) {
        const move: TagMove = { upstream, repository, tag, from: last.digest, to: record.digest };
        this.#metrics?.tagMoves.inc({ upstream });
        this.#log.warn(move, 'tag moved upstream');
        await this.#onMove?.(move);
      }
    }
    await this.#metadata.setTagHistory(upstream, repository, tag, history.slice(-HISTORY_LIMIT));
  }

  /**
   * Apply the policy's tag rules to a resolved tag: the record to serve (the resolved one, the pinned
   * one, or an older one during a cooldown), or DENIED with the rule and what to do about it.
   */
  async enforce(
    policy: Policy | undefined,
    upstream: string,
    repository: string,
    tag: string,
    resolved: TagRecord,
  ): Promise<TagRecord> {
    const rules = policy?.tags;
    if (!rules) return resolved;
    const ref = `${upstream}/${repository}:${tag}`;
    const banned = rules.deny.find((g) => globToRegExp(g, TAG_GLOB).test(tag));
    if (banned !== undefined) {
      throw new RegistryError(
        'DENIED',
        `tag "${tag}" is not allowed by policy "${policy?.name}" (tags.deny: ${banned})`,
        {
          detail: {
            policy: policy?.name,
            reason: 'tag-denied',
            tag,
            rule: banned,
          } satisfies DenyDetail,
        },
      );
    }
    const needsPin = rules.immutable || rules.onMove === 'deny';
    if (!needsPin && rules.minAge <= 0) return resolved;
    const history = await this.history(upstream, repository, tag);
    if (needsPin) {
      let pin = await this.pin(upstream, repository, tag);
      if (!pin) {
        // First resolution under this rule (or after an unpin): pin what the tag points at now.
        pin = { digest: resolved.digest, pinnedAt: this.#now(), by: 'first-seen' };
        await this.#metadata.setTagPin(upstream, repository, tag, pin);
      }
      if (pin.digest !== resolved.digest) {
        if (rules.immutable) {
          const pinned = history.find((h) => h.digest === pin.digest);
          if (pinned) {
            this.#log.warn(
              { ref, pinned: pin.digest, upstreamDigest: resolved.digest },
              'immutable tag: serving the pinned digest',
            );
            return {
              digest: pinned.digest,
              mediaType: pinned.mediaType,
              size: pinned.size,
              checkedAt: resolved.checkedAt,
            };
          }
        }
        throw new RegistryError(
          'DENIED',
          `tag ${ref} moved from ${pin.digest} to ${resolved.digest}; policy "${policy?.name}" does not allow tag moves (run \`pullwarden tags pin ${ref} ${resolved.digest}\` to accept it)`,
          {
            detail: {
              policy: policy?.name,
              reason: 'tag-moved',
              tag,
              pinned: pin.digest,
              digest: resolved.digest,
            } satisfies DenyDetail,
          },
        );
      }
    }
    if (rules.minAge > 0) {
      const now = this.#now();
      const entry = history.find((h) => h.digest === resolved.digest);
      const age = entry ? now - entry.firstSeen : 0;
      if (age < rules.minAge) {
        // Serve the newest older digest that has aged enough, so nodes keep working during a cooldown.
        const aged = [...history]
          .reverse()
          .find((h) => h.digest !== resolved.digest && now - h.firstSeen >= rules.minAge);
        if (aged) {
          this.#log.info(
            { ref, held: resolved.digest, serving: aged.digest },
            'tag in cooldown: serving the previous digest',
          );
          return {
            digest: aged.digest,
            mediaType: aged.mediaType,
            size: aged.size,
            checkedAt: resolved.checkedAt,
          };
        }
        throw new RegistryError(
          'DENIED',
          `tag ${ref} points at ${resolved.digest}, first seen ${Math.round(age / 1000)}s ago; policy "${policy?.name}" serves a new digest only after ${Math.round(rules.minAge / 1000)}s (tags.minAge)`,
          {
            detail: {
              policy: policy?.name,
              reason: 'tag-cooldown',
              tag,
              digest: resolved.digest,
              ageMs: age,
              minAgeMs: rules.minAge,
            } satisfies DenyDetail,
          },
        );
      }
    }
    return resolved;
  }

  /** Operator action: pin a tag to a digest (accepting a move). */
  async setPin(upstream: string, repository: string, tag: string, digest: Digest): Promise<void> {
    await this.#metadata.setTagPin(upstream, repository, tag, {
      digest,
      pinnedAt: this.#now(),
      by: 'operator',
    });
  }

  /** Operator action: drop a pin (an immutable tag pins again at its next resolution). */
  async unpin(upstream: string, repository: string, tag: string): Promise<void> {
    await this.#metadata.deleteTagPin(upstream, repository, tag);
  }
}
