import { statfs } from 'node:fs/promises';

/** How much free space a filesystem must keep: bytes, or a fraction of its size. */
export type Reserve = { bytes: number } | { fraction: number };

export interface DiskHeadroomOptions {
  /** Any path on the filesystem to watch (the storage directory). */
  path: string;
  reserve: Reserve;
  /** How often free space is read with statfs (default 5 s); never per request. */
  intervalMs?: number;
  /** Reads free and total bytes; `fs.statfs` by default (injectable for tests). */
  measure?: (path: string) => Promise<{ free: number; total: number }>;
  onError?: (err: unknown) => void;
}

/** What {@link DiskHeadroom.state} reports. */
export interface HeadroomState {
  /** Free bytes available to this process (statfs `bavail`), less what was written since. */
  free: number;
  /** Bytes that must stay free. */
  reserve: number;
  /** Free space is below the reserve: writers that can wait (cache fills) must not write. */
  low: boolean;
}

async function statfsMeasure(path: string): Promise<{ free: number; total: number }> {
  const s = await statfs(path);
  return { free: s.bavail * s.bsize, total: s.blocks * s.bsize };
}

/**
 * Free-space headroom of one filesystem, shared by every writer on it (blob cache fills, the audit
 * trail): whatever can be refused (a cache fill) is refused before the disk is so full that what
 * must not fail (an audit append) fails.
 *
 * Free space is read with statfs every `intervalMs`, not per request, and in between lowered by the
 * bytes writers report with {@link consume}, so a burst of fills cannot run past the reserve between
 * two reads.
 */
export class DiskHeadroom {
  readonly #path: string;
  readonly #reserve: Reserve;
  readonly #intervalMs: number;
  readonly #measure: (path: string) => Promise<{ free: number; total: number }>;
  readonly #onError: (err: unknown) => void;
  #free = Number.POSITIVE_INFINITY;
  #total = 0;
  #consumed = 0;
  #timer: NodeJS.Timeout | undefined;

  constructor(options: DiskHeadroomOptions) {
    this.#path = options.path;
    this.#reserve = options.reserve;
    this.#intervalMs = options.intervalMs ?? 5_000;
    this.#measure = options.measure ?? statfsMeasure;
    this.#onError = options.onError ?? (() => undefined);
  }

  /** Read free space now and then every interval (the timer does not keep the process alive). */
  async start(): Promise<void> {
    await this.refresh();
    this.#timer ??= setInterval(() => void this.refresh(), this.#intervalMs);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Read free space now. A failed read keeps the last value (and is reported). */
  async refresh(): Promise<void> {
    try {
      const { free, total } = await this.#measure(this.#path);
      this.#free = free;
      this.#total = total;
      this.#consumed = 0;
    } catch (err) {
      this.#onError(err);
    }
  }

  /** Count bytes written since the last read (cheap; call it as data is written). */
  consume(bytes: number): void {
    this.#consumed += bytes;
  }

  /** Bytes that must stay free. */
  reserveBytes(): number {
    return 'bytes' in this.#reserve ? this.#reserve.bytes : Math.ceil(this.#total * this.#reserve.fraction);
  }

  state(): HeadroomState {
    const free = Math.max(0, this.#free - this.#consumed);
    const reserve = this.reserveBytes();
    return { free, reserve, low: free < reserve };
  }

  /** Whether `bytes` more can be written and still leave the reserve free. */
  fits(bytes: number): boolean {
    const { free, reserve } = this.state();
    return free - bytes >= reserve;
  }
}
