import { open } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { RegistryError } from '../oci/index.ts';
import type { ByteRange } from '../shared/index.ts';

/**
 * Bytes read from disk per `read()`; also the stream's high-water mark. 1 MiB: with pooled buffers,
 * bench row c gave 2,258–2,818 MiB/s (1.07x–1.24x peer) against 1,733–2,014 MiB/s (0.76x–0.96x) with
 * 256 KiB, in alternating runs; before the pool, the allocation of each buffer ate the gain. The
 * hold-back of a fill's last byte does not depend on it.
 */
const CHUNK_SIZE = 1024 * 1024;

/** Most read buffers kept for reuse (16 MiB); steady serving takes from and returns to it. */
const POOL_LIMIT = 16;

/**
 * Read buffers handed back once the socket wrote them. Without it a cached blob allocates a fresh
 * buffer per read, garbage outside V8's heap that is collected only once tens of MB of it
 * piled up: the spread of peak RSS in benchmark row f (149–217 MB per process over runs, 133–141 MB
 * with reuse). A buffer returns to the pool only when every byte read into it was reported written
 * ({@link recycleChunk}); one whose response failed or was cut is never reported and is left to the GC.
 */
class ChunkPool {
  readonly #free: Buffer[] = [];
  /** Lent buffers by their memory (a chunk is a view of it): the buffer and its bytes not yet written. */
  readonly #lent = new WeakMap<ArrayBufferLike, { buffer: Buffer; unwritten: number }>();

  take(): Buffer {
    return this.#free.pop() ?? Buffer.allocUnsafeSlow(CHUNK_SIZE);
  }

  /** `buffer` was read into and is handed on with its first `bytes` bytes. */
  lend(buffer: Buffer, bytes: number): void {
    this.#lent.set(buffer.buffer, { buffer, unwritten: bytes });
  }

  /** A buffer that was taken and never handed on. */
  giveBack(buffer: Buffer): void {
    if (this.#free.length < POOL_LIMIT) this.#free.push(buffer);
  }

  written(chunk: Uint8Array): void {
    const lent = this.#lent.get(chunk.buffer);
    if (lent === undefined) return;
    lent.unwritten -= chunk.byteLength;
    if (lent.unwritten > 0) return;
    this.#lent.delete(chunk.buffer);
    this.giveBack(lent.buffer);
  }

  /** Buffers waiting for reuse (tests). */
  get free(): number {
    return this.#free.length;
  }
}

const pool = new ChunkPool();

/**
 * Every byte of `chunk`, part of a {@link BlobReadStream}'s output, was written to the socket: its
 * buffer may be read into again once all of it was. Anything else is ignored.
 */
export function recycleChunk(chunk: Uint8Array): void {
  pool.written(chunk);
}

/** Read buffers waiting for reuse (tests). */
export function pooledChunks(): number {
  return pool.free;
}

/**
 * What a read stream follows: a complete blob (everything verified) or a fill in progress (the file
 * grows; the size is known for sure only once the digest was verified).
 */
export interface ReadSource {
  /** Paths to open, in order; the first that exists wins (a fill's temp file, then the final path). */
  readonly paths: readonly string[];
  /** Bytes on disk that may be read (not yet verified while a fill runs). */
  written(): number;
  /** Size the upstream announced (Content-Length), if any; never trusted to end a stream. */
  expectedSize(): number | undefined;
  /** Blob size once the content was verified; undefined while a fill runs. */
  verifiedSize(): number | undefined;
  /** Set when the fill failed: every reader is destroyed with it. */
  error(): Error | undefined;
  /** Called on every progress, on verification and on failure. Returns the unsubscribe function. */
  subscribe(listener: () => void): () => void;
}

export function toError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

function isNotFound(err: unknown): boolean {
  return err instanceof Error && (err as NodeJS.ErrnoException).code === 'ENOENT';
}

/**
 * Reads a byte range of a blob from its own file descriptor, following the file while a fill writes
 * it. Readers never touch the upstream stream, so a slow reader holds back neither the fill nor the
 * other readers, and destroying a reader does not affect the fill.
 *
 * While a fill is unverified the stream holds back the last byte of its range and does not end: a
 * response can only complete once the bytes were verified, so a client never receives a "successful"
 * short or wrong body (after headers are sent, an error can only abort the connection).
 */
export class BlobReadStream extends Readable {
  readonly #source: ReadSource;
  #fh: FileHandle | undefined;
  #pos: number;
  /** Exclusive end; undefined = the end of the blob, known once it was verified. */
  readonly #end: number | undefined;
  #busy = false;
  #waiting = false;
  #unsubscribe: (() => void) | undefined;

  constructor(source: ReadSource, range?: ByteRange) {
    super({ highWaterMark: CHUNK_SIZE });
    this.#source = source;
    this.#pos = range?.start ?? 0;
    this.#end = range === undefined ? undefined : range.end + 1;
  }

  override _construct(callback: (error?: Error | null) => void): void {
    this.#openFirst().then(
      (fh) => {
        this.#fh = fh;
        this.#unsubscribe = this.#source.subscribe(() => {
          this.#onProgress();
        });
        callback();
      },
      (err: unknown) => {
        callback(toError(err));
      },
    );
  }

  override _read(): void {
    void this.#pump();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
    const fh = this.#fh;
    this.#fh = undefined;
    if (fh === undefined) {
      callback(error);
      return;
    }
    // FileHandle.close() waits for a read still in flight, so the descriptor is never reused under it.
    fh.close().then(
      () => {
        callback(error);
      },
      (closeErr: unknown) => {
        callback(error ?? toError(closeErr));
      },
    );
  }

  async #openFirst(): Promise<FileHandle> {
    // A fill renames its temp file into place atomically, so one of the paths exists unless the fill
    // failed (temp file deleted) or the blob was removed.
    for (const path of this.#source.paths) {
      try {
        return await open(path, 'r');
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
    }
    throw this.#source.error() ?? new RegistryError('BLOB_UNKNOWN', 'blob is no longer in the cache');
  }

  #onProgress(): void {
    if (this.destroyed) return;
    const err = this.#source.error();
    if (err !== undefined) {
      this.destroy(err);
      return;
    }
    if (this.#waiting) {
      this.#waiting = false;
      void this.#pump();
    }
  }

  /** Pushes what is readable until the consumer's buffer is full, then waits for `_read` or progress. */
  async #pump(): Promise<void> {
    if (this.#busy) return;
    this.#busy = true;
    try {
      for (;;) {
        if (this.destroyed) return;
        const fh = this.#fh;
        if (fh === undefined) return;
        const err = this.#source.error();
        if (err !== undefined) {
          this.destroy(err);
          return;
        }
        const verified = this.#source.verifiedSize();
        let limit: number;
        if (verified !== undefined) {
          const end = this.#end ?? verified;
          if (end > verified) {
            this.destroy(new RegistryError('RANGE_INVALID', 'range ends after the end of the blob'));
            return;
          }
          if (this.#pos >= end) {
            this.push(null);
            return;
          }
          limit = end;
        } else {
          limit = this.#source.written();
          const end = this.#end ?? this.#source.expectedSize();
          if (end !== undefined) limit = Math.min(limit, end - 1);
        }
        if (this.#pos >= limit) {
          this.#waiting = true;
          return;
        }
        const length = Math.min(CHUNK_SIZE, limit - this.#pos);
        const buf = pool.take();
        let bytesRead: number;
        try {
          ({ bytesRead } = await fh.read(buf, 0, length, this.#pos));
        } catch (err) {
          pool.giveBack(buf);
          throw err;
        }
        if (this.destroyed || bytesRead === 0) {
          pool.giveBack(buf);
          if (!this.destroyed) {
            this.destroy(new RegistryError('UNKNOWN', 'blob cache file is shorter than expected'));
          }
          return;
        }
        this.#pos += bytesRead;
        pool.lend(buf, bytesRead);
        if (!this.push(buf.subarray(0, bytesRead))) return;
      }
    } catch (err) {
      this.destroy(toError(err));
    } finally {
      this.#busy = false;
    }
  }
}
