import type { Digest } from '../oci/index.ts';
import type { ReadSource } from './blob-read-stream.ts';

/**
 * The state of one single-flight fill, shared by every handle on it. The store drives it; readers
 * follow it through {@link ReadSource}.
 */
export class Fill implements ReadSource {
  readonly digest: Digest;
  /** The file being written; set before `started` resolves (another process's, for a followed fill). */
  tmpPath: string;
  readonly finalPath: string;
  /** The fill runs in another process; this one follows its temp file through the storage directory. */
  remote = false;
  /** Resolves once the upstream answered 200; rejects with the upstream's (or the temp file's) error. */
  readonly started: Promise<undefined>;
  #expectedSize: number | undefined;
  /** Bytes this fill holds against the cache limit while it runs (Content-Length, or bytes so far). */
  reserved = 0;
  /** Set by the store while the body streams: stops the fill (every reader left, disk low). */
  abort: ((err: Error) => void) | undefined;
  /** Runs while no handle is open on the fill; the fill is abandoned when it fires. */
  abandonTimer: NodeJS.Timeout | undefined;

  #written = 0;
  #started = false;
  #verifiedSize: number | undefined;
  #error: Error | undefined;
  readonly #listeners = new Set<() => void>();
  readonly #resolveStarted: (value: undefined) => void;
  readonly #rejectStarted: (err: unknown) => void;

  constructor(digest: Digest, tmpPath: string, finalPath: string) {
    this.digest = digest;
    this.tmpPath = tmpPath;
    this.finalPath = finalPath;
    const { promise, resolve, reject } = Promise.withResolvers<undefined>();
    this.started = promise;
    this.#resolveStarted = resolve;
    this.#rejectStarted = reject;
    // Every caller awaits `started`; this only keeps a rejection nobody awaits from being "unhandled".
    promise.catch(() => undefined);
  }

  get paths(): readonly string[] {
    return [this.tmpPath, this.finalPath];
  }

  written(): number {
    return this.#written;
  }

  /** From Content-Length, once the upstream answered. */
  expectedSize(): number | undefined {
    return this.#expectedSize;
  }

  verifiedSize(): number | undefined {
    return this.#verifiedSize;
  }

  error(): Error | undefined {
    return this.#error;
  }

  subscribe(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  }

  /** Whether the upstream answered and readers may follow the temp file. */
  hasStarted(): boolean {
    return this.#started;
  }

  markStarted(expectedSize: number | undefined): void {
    this.#started = true;
    this.#expectedSize = expectedSize;
    this.#resolveStarted(undefined);
  }

  failStart(err: unknown): void {
    this.#rejectStarted(err);
  }

  progress(bytes: number): void {
    this.#written += bytes;
    this.#notify();
  }

  /** Size and digest checked: readers may deliver the last bytes and end. */
  markVerified(): void {
    this.#verifiedSize = this.#written;
    this.#notify();
  }

  fail(err: Error): void {
    if (this.#verifiedSize !== undefined) return; // readers already hold verified bytes on open fds
    this.#error = err;
    this.#notify();
  }

  #notify(): void {
    for (const listener of [...this.#listeners]) listener();
  }
}
