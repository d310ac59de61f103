/**
 * Coalesces concurrent calls with the same key into one: the first caller runs `fn`, everyone who
 * arrives before it settles shares the same promise. Used for tag resolution and manifest fetches so
 * that N nodes asking at once cost one upstream request.
 */
export class SingleFlight<T> {
  readonly #inFlight = new Map<string, Promise<T>>();

  run(key: string, fn: () => Promise<T>): Promise<T> {
    const running = this.#inFlight.get(key);
    if (running) return running;
    const p = (async () => {
      try {
        return await fn();
      } finally {
        this.#inFlight.delete(key);
      }
    })();
    this.#inFlight.set(key, p);
    return p;
  }

  get size(): number {
    return this.#inFlight.size;
  }
}
