/**
 * Failed authentication attempts per client address in a fixed window: past `max` distinct wrong
 * credentials, the address is refused (429 + Retry-After) until its window ends, without another
 * password check. Distinct, because real clients repeat one wrong credential several times per pull
 * (containerd retries each request): that is a typo, not guessing, and must not lock a node out.
 * Memory is bounded: at `maxEntries` addresses, expired windows go first, then the oldest.
 */
export class FailureLimiter {
  readonly #max: number;
  readonly #windowMs: number;
  readonly #maxEntries: number;
  readonly #now: () => number;
  readonly #entries = new Map<string, { failures: Set<string>; resetAt: number }>();

  constructor(options: { max: number; windowMs: number; maxEntries?: number; now?: () => number }) {
    this.#max = options.max;
    this.#windowMs = options.windowMs;
    this.#maxEntries = options.maxEntries ?? 10_000;
    this.#now = options.now ?? Date.now;
  }

  /** Seconds until `client` may try again, or undefined when it may try now. */
  blockedFor(client: string): number | undefined {
    if (this.#max === 0) return undefined;
    const entry = this.#entries.get(client);
    if (entry === undefined) return undefined;
    const now = this.#now();
    if (entry.resetAt <= now) {
      this.#entries.delete(client);
      return undefined;
    }
    return entry.failures.size >= this.#max
      ? Math.max(1, Math.ceil((entry.resetAt - now) / 1000))
      : undefined;
  }

  /** Count a failed attempt of `client` with the credential whose (hashed) key is `credential`. */
  fail(client: string, credential: string): void {
    if (this.#max === 0) return;
    const now = this.#now();
    const entry = this.#entries.get(client);
    if (entry !== undefined && entry.resetAt > now) {
      if (entry.failures.size < this.#max) entry.failures.add(credential);
      return;
    }
    if (this.#entries.size >= this.#maxEntries) this.#prune(now);
    this.#entries.delete(client);
    this.#entries.set(client, { failures: new Set([credential]), resetAt: now + this.#windowMs });
  }

  #prune(now: number): void {
    for (const [client, entry] of this.#entries) if (entry.resetAt <= now) this.#entries.delete(client);
    while (this.#entries.size >= this.#maxEntries) {
      const first = this.#entries.keys().next();
      if (first.done === true) break;
      this.#entries.delete(first.value);
    }
  }
}
