/** A bearer token and how long it may be used, as the token service answered. */
export interface IssuedToken {
  token: string;
  /** Lifetime from `expires_in`, in milliseconds. */
  lifetimeMs: number;
}

// distribution-spec token auth: "When omitted, this defaults to 60 seconds. For compatibility with
// older clients, a token should never be returned with less than 60 seconds to live."
const DEFAULT_TOKEN_SECONDS = 60;
// An upstream cannot make us hold a token for years: an hour is longer than any registry issues
// (Docker Hub and GHCR: 300 s), and a revoked token then lingers at most that long.
const MAX_TOKEN_SECONDS = 3600;

/**
 * How long a token may be reused, from the token answer's `expires_in`: missing, non-numeric, zero,
 * negative or below 60 s counts as the spec's 60 s (a shorter-lived token costs one 401 and a fresh
 * token, never a token request per pull); anything above an hour counts as an hour.
 */
export function tokenLifetimeMs(expiresIn: unknown): number {
  const seconds =
    typeof expiresIn === 'number' && Number.isFinite(expiresIn) && expiresIn > DEFAULT_TOKEN_SECONDS
      ? Math.min(expiresIn, MAX_TOKEN_SECONDS)
      : DEFAULT_TOKEN_SECONDS;
  return seconds * 1000;
}

interface Entry {
  token: string;
  expiresAt: number;
}

/**
 * Bearer tokens per scope (`repository:<name>:pull`), with one in-flight fetch per scope.
 *
 * Tokens are dropped a margin before the token service says they expire: a token that expires while
 * the request carrying it is in flight costs a 401 and a second round trip. The single flight matters
 * at pull time, when a client fetches a dozen layers of one repository at once and each would
 * otherwise ask the token service on its own (Docker Hub rate-limits token requests too).
 */
export class TokenCache {
  readonly #entries = new Map<string, Entry>();
  readonly #flights = new Map<string, Promise<string>>();
  readonly #maxEntries: number;
  readonly #now: () => number;

  constructor(options: { maxEntries?: number; now?: () => number } = {}) {
    this.#maxEntries = options.maxEntries ?? 1000;
    this.#now = options.now ?? Date.now;
  }

  /** A token for `scope` that is still valid, or undefined. */
  get(scope: string): string | undefined {
    const entry = this.#entries.get(scope);
    if (entry === undefined) return undefined;
    if (entry.expiresAt <= this.#now()) {
      this.#entries.delete(scope);
      return undefined;
    }
    return entry.token;
  }

  /** Forget `token` for `scope` (the upstream rejected it before its announced expiry). */
  invalidate(scope: string, token: string): void {
    if (this.#entries.get(scope)?.token === token) this.#entries.delete(scope);
  }

  /**
   * The cached token for `scope`, or the result of `fetch`, shared with concurrent callers for the
   * same scope. A failed fetch is not cached: the next caller tries again.
   */
  async obtain(scope: string, fetch: () => Promise<IssuedToken>): Promise<string> {
    const cached = this.get(scope);
    if (cached !== undefined) return cached;
    const running = this.#flights.get(scope);
    if (running !== undefined) return await running;
    const flight = (async () => {
      try {
        const issued = await fetch();
        this.#store(scope, issued);
        return issued.token;
      } finally {
        this.#flights.delete(scope);
      }
    })();
    this.#flights.set(scope, flight);
    return await flight;
  }

  #store(scope: string, issued: IssuedToken): void {
    // Margin: a quarter of the lifetime, at most 30 s, so a 60 s token is reused for 45 s and a
    // 300 s Docker Hub token for 270 s.
    const margin = Math.min(30_000, issued.lifetimeMs / 4);
    const expiresAt = this.#now() + issued.lifetimeMs - margin;
    if (this.#entries.size >= this.#maxEntries) this.#evict();
    this.#entries.delete(scope);
    this.#entries.set(scope, { token: issued.token, expiresAt });
  }

  #evict(): void {
    const now = this.#now();
    for (const [scope, entry] of this.#entries) if (entry.expiresAt <= now) this.#entries.delete(scope);
    // Still full: drop the oldest insertion (Map iterates in insertion order).
    while (this.#entries.size >= this.#maxEntries) {
      const first = this.#entries.keys().next();
      if (first.done === true) break;
      this.#entries.delete(first.value);
    }
  }
}
