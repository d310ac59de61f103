import type { Digest } from '../oci/index.ts';
import type { MetadataStore, TagRecord } from '../metadata/index.ts';
import type { Target } from './target.ts';

/** Entries the in-process memo holds before it starts over. */
const MEMO_LIMIT = 50_000;
/** Longest the memo spares a rewrite: a store that lost its data (Redis flush) heals within it. */
const REWRITE_MS = 600_000;

/**
 * The last digest of each tag that passed the gate: what stale-if-error may serve while the upstream
 * fails (never a digest that was only resolved, and perhaps denied). Kept in the metadata store, so
 * every replica serves the same stale digest; written when it changes, and at least every 10 minutes.
 */
export class VerifiedTags {
  readonly #metadata: MetadataStore;
  readonly #now: () => number;
  readonly #memo = new Map<string, { digest: Digest; expires: number }>();

  constructor(metadata: MetadataStore, now: () => number) {
    this.#metadata = metadata;
    this.#now = now;
  }

  async remember(
    target: Target,
    tag: string,
    manifest: { digest: Digest; mediaType: string; size: number },
  ): Promise<void> {
    const key = `${target.upstream}/${target.repository}:${tag}`;
    const memo = this.#memo.get(key);
    if (memo && memo.digest === manifest.digest && memo.expires > this.#now()) return;
    const record: TagRecord = {
      digest: manifest.digest,
      mediaType: manifest.mediaType,
      size: manifest.size,
      checkedAt: this.#now(),
    };
    await this.#metadata.setVerifiedTag(target.upstream, target.repository, tag, record);
    if (this.#memo.size >= MEMO_LIMIT) this.#memo.clear();
    this.#memo.set(key, { digest: manifest.digest, expires: this.#now() + REWRITE_MS });
  }

  /** The last verified digest of the tag, or undefined. */
  last(target: Target, tag: string): Promise<TagRecord | undefined> {
    return this.#metadata.getVerifiedTag(target.upstream, target.repository, tag);
  }
}
