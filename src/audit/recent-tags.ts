/**
 * Which tag a digest pull belongs to, so that a pull reads as one story in the audit trail: the service
 * remembers, when a tag resolves, the digests it admitted for it (the manifest, child manifests of an
 * index, config and layer blobs), and the audit event of a later request by digest in the same
 * repository carries that tag.
 *
 * In memory and best effort: bounded by entries and age, per replica (a pull whose requests land on
 * two replicas may carry the tag only on one of them). Per client first, then the latest tag of any
 * client for that digest.
 */
export class RecentTags {
  private readonly entries = new Map<string, { tag: string; at: number }>();
  private readonly maxEntries: number;
  private readonly ttlMs: number;
  private readonly now: () => number;

  constructor(options: { maxEntries?: number; ttlMs?: number; now?: () => number } = {}) {
    this.maxEntries = options.maxEntries ?? 50_000;
    this.ttlMs = options.ttlMs ?? 15 * 60_000;
    this.now = options.now ?? Date.now;
  }

  /** `tag` of `upstream/repository` resolved to the first of `digests`; the rest belong to its closure. */
  remember(
    upstream: string,
    repository: string,
    tag: string,
    digests: Iterable<string>,
    client?: string,
  ): void {
    const at = this.now();
    for (const digest of digests) {
      this.set(key(upstream, repository, digest, undefined), tag, at);
      if (client !== undefined) this.set(key(upstream, repository, digest, client), tag, at);
    }
  }

  /** The tag a request by `digest` follows, if one was resolved recently. */
  tagFor(upstream: string, repository: string, digest: string, client?: string): string | undefined {
    const at = this.now();
    const keys = client === undefined ? [] : [key(upstream, repository, digest, client)];
    keys.push(key(upstream, repository, digest, undefined));
    for (const k of keys) {
      const e = this.entries.get(k);
      if (e === undefined) continue;
      if (at - e.at > this.ttlMs) {
        this.entries.delete(k);
        continue;
      }
      return e.tag;
    }
    return undefined;
  }

  private set(k: string, tag: string, at: number): void {
    this.entries.delete(k); // re-insert: Map order is the eviction order
    this.entries.set(k, { tag, at });
    while (this.entries.size > this.maxEntries) {
      const oldest = this.entries.keys().next();
      if (oldest.done === true) break;
      this.entries.delete(oldest.value);
    }
  }
}

function key(upstream: string, repository: string, digest: string, client: string | undefined): string {
  return `${client ?? ''}\u0000${upstream}/${repository}@${digest}`;
}
