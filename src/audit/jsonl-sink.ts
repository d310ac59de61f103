import { mkdir, open, readdir, stat, unlink } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { GENESIS, auditFileName, chainFields, encodeRecord, sha256Hex, sortAuditFiles } from './chain.ts';
import { AuditError } from './types.ts';
import type {
  AuditEvent,
  AuditHealth,
  AuditLogger,
  AuditRecord,
  AuditSinkStats,
  ChainedAuditSink,
} from './types.ts';

/** The file operations the sink needs; replaceable in tests to inject ENOSPC or EIO. */
export interface AuditFileHandle {
  write(buffer: Uint8Array): Promise<{ bytesWritten: number }>;
  datasync(): Promise<void>;
  truncate(length?: number): Promise<void>;
  close(): Promise<void>;
}

export interface JsonlAuditSinkOptions {
  /** Directory of the trail; created if missing. */
  dir: string;
  /** Start a new file before one would grow beyond this (default 64 MiB). */
  maxFileBytes?: number;
  /** Start a new file when the current one is older than this, in ms (default 24 h). */
  maxFileAgeMs?: number;
  /**
   * Longest time an event waits for others to share its write + fsync, in ms (default 0: write as soon
   * as the writer is idle). Batches form without it: the events that arrive during one fsync share the
   * next. Measured on one machine, 0 gave the lower latency (p50 0.3 ms vs 1.3 ms with 2) and the same
   * batching under load; a wait only pays when fsync is much faster than arrivals are spread.
   */
  groupCommitMs?: number;
  /** Most events in one write + fsync (default 1000). */
  maxBatch?: number;
  /**
   * While unhealthy, how often to test whether the directory is writable again, in ms (default 5 s),
   * so that health recovers without traffic (a fail-closed proxy that is not ready receives none).
   */
  probeIntervalMs?: number;
  log?: AuditLogger;
  /** Clock (tests). */
  now?: () => Date;
  /** Opens a trail file for appending (tests inject faults here). Default: fs.promises.open. */
  openFile?: (path: string, flags: 'a' | 'ax') => Promise<AuditFileHandle>;
}

interface Pending {
  event: AuditEvent;
  at: number;
  resolve: (record: AuditRecord) => void;
  reject: (error: Error) => void;
}

/** Where the chain stands on disk. */
interface ChainTail {
  seq: number;
  hash: string;
  /** The newest file, when new lines can be appended to it (it ends with a complete line or is empty). */
  appendTo?: { path: string; size: number; started: Date };
}

const MiB = 1024 * 1024;

/**
 * The durable audit trail: append-only, hash-chained JSONL files (format in chain.ts).
 *
 * Durability: {@link append} resolves only after the event's line was written and fsync'd
 * (fdatasync) — and, for a new file, after the directory entry was fsync'd. The HTTP layer awaits it
 * before it completes a response, so every response a client received has its event on disk, even if
 * the process is killed (SIGKILL) or the machine loses power right after. Appends are group-committed:
 * one write() and one fsync per batch; what arrives during an fsync goes into the next batch, and
 * `groupCommitMs` can add a bounded wait for company.
 *
 * After a crash the newest file can end with a torn line (a batch that was being written; none of its
 * events was acknowledged). It is left in place as evidence, `audit verify` reports it as an incomplete
 * last line, and the sink starts a new file whose first line continues the chain from the last complete
 * line. Lines of a batch that reached the disk although the batch failed stay in the chain: the trail can
 * hold events of requests whose response did not complete, never the reverse.
 *
 * A write or fsync error (ENOSPC, EIO, EROFS) rejects the batch, marks the sink unhealthy with the
 * reason and is logged; the partial bytes are truncated away when possible, else the next batch starts a
 * new file from the last complete line. Every later batch retries, so the sink heals when space returns.
 */
export class JsonlAuditSink implements ChainedAuditSink {
  readonly dir: string;
  private readonly maxFileBytes: number;
  private readonly maxFileAgeMs: number;
  private readonly groupCommitMs: number;
  private readonly maxBatch: number;
  private readonly probeIntervalMs: number;
  private probe: NodeJS.Timeout | undefined;
  private readonly log: AuditLogger | undefined;
  private readonly now: () => Date;
  private readonly openFile: (path: string, flags: 'a' | 'ax') => Promise<AuditFileHandle>;

  private seq = 0;
  private hash = GENESIS;
  private file: { handle: AuditFileHandle; path: string; size: number; started: Date } | undefined;
  /** The next batch must re-read the tail of the trail before writing (after an unrepaired failure). */
  private needsRecovery = false;
  private queue: Pending[] = [];
  private writer: Promise<void> | undefined;
  private closed = false;
  private failure: string | undefined;
  private readonly counters: AuditSinkStats = { appended: 0, failed: 0, batches: 0 };
  private wake: (() => void) | undefined;

  private constructor(options: JsonlAuditSinkOptions) {
    this.dir = options.dir;
    this.maxFileBytes = options.maxFileBytes ?? 64 * MiB;
    this.maxFileAgeMs = options.maxFileAgeMs ?? 24 * 3_600_000;
    this.groupCommitMs = options.groupCommitMs ?? 0;
    this.maxBatch = Math.max(1, options.maxBatch ?? 1000);
    this.probeIntervalMs = options.probeIntervalMs ?? 5000;
    this.log = options.log;
    this.now = options.now ?? (() => new Date());
    this.openFile = options.openFile ?? ((path, flags) => open(path, flags));
  }

  /**
   * Open the trail in `options.dir`, continuing the chain from the last complete line on disk.
   * @throws AuditError AUDIT_CHAIN_UNREADABLE when the last complete line is not a valid record
   *   (run `pullwarden audit verify`); a filesystem error when the directory cannot be created.
   */
  static async open(options: JsonlAuditSinkOptions): Promise<JsonlAuditSink> {
    const sink = new JsonlAuditSink(options);
    await mkdir(sink.dir, { recursive: true });
    await sink.recover();
    return sink;
  }

  append(event: AuditEvent): Promise<void> {
    return this.appendRecord(event).then(() => undefined);
  }

  appendRecord(event: AuditEvent): Promise<AuditRecord> {
    if (this.closed) return Promise.reject(new AuditError('AUDIT_CLOSED', 'the audit trail is closed'));
    return new Promise<AuditRecord>((resolve, reject) => {
      this.queue.push({ event, at: performance.now(), resolve, reject });
      if (this.queue.length >= this.maxBatch) this.wake?.();
      this.kick();
    });
  }

  health(): AuditHealth {
    if (this.closed) return { ok: false, reason: 'audit trail closed' };
    return this.failure === undefined
      ? { ok: true }
      : { ok: false, reason: `cannot write the audit trail in ${this.dir}: ${this.failure}` };
  }

  stats(): AuditSinkStats {
    return { ...this.counters };
  }

  /** The newest link of the chain: seq and hash of the last line written (0 and GENESIS when empty). */
  head(): { seq: number; hash: string } {
    return { seq: this.seq, hash: this.hash };
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.probe);
    this.probe = undefined;
    this.wake?.();
    while (this.writer) await this.writer;
    const file = this.file;
    this.file = undefined;
    await file?.handle.close();
  }

  private kick(): void {
    this.writer ??= this.drain().finally(() => {
      this.writer = undefined;
      // An append that arrived after the loop looked at the queue for the last time.
      if (this.queue.length > 0) this.kick();
    });
  }

  private async drain(): Promise<void> {
    while (this.queue.length > 0) {
      const first = this.queue[0];
      const waited = first === undefined ? 0 : performance.now() - first.at;
      if (!this.closed && this.groupCommitMs > 0 && this.queue.length < this.maxBatch) {
        const rest = this.groupCommitMs - waited;
        if (rest > 0.2) {
          await new Promise<void>((resolve) => {
            const timer = setTimeout(done, rest);
            function done() {
              clearTimeout(timer);
              resolve();
            }
            this.wake = done;
          });
          this.wake = undefined;
        }
      }
      const batch = this.queue.splice(0, this.maxBatch);
      await this.commit(batch);
    }
  }

  /** Write and fsync one batch, then settle its waiters. Never throws. */
  private async commit(batch: Pending[]): Promise<void> {
    const startSeq = this.seq;
    const startHash = this.hash;
    let written = false;
    let sizeBefore = 0;
    try {
      if (this.needsRecovery) await this.recover();
      const records: AuditRecord[] = [];
      const lines: string[] = [];
      let seq = this.seq;
      let hash = this.hash;
      for (const p of batch) {
        seq += 1;
        const enc = encodeRecord(p.event, seq, hash);
        records.push({ seq, prev: hash, ...p.event, hash: enc.hash });
        lines.push(enc.line, '\n');
        hash = enc.hash;
      }
      const bytes = Buffer.from(lines.join(''), 'utf8');
      const file = await this.fileFor(bytes.length, startSeq + 1);
      sizeBefore = file.size;
      written = true;
      let offset = 0;
      while (offset < bytes.length) {
        const { bytesWritten } = await file.handle.write(bytes.subarray(offset));
        offset += bytesWritten;
      }
      await file.handle.datasync();
      file.size += bytes.length;
      this.seq = seq;
      this.hash = hash;
      this.counters.batches += 1;
      this.counters.appended += batch.length;
      if (this.failure !== undefined) this.healed();
      batch.forEach((p, i) => p.resolve(records[i] as AuditRecord));
    } catch (cause) {
      this.seq = startSeq;
      this.hash = startHash;
      if (written) await this.undoPartialWrite(sizeBefore);
      const reason = describe(cause);
      if (this.failure === undefined) this.log?.error({ err: cause, dir: this.dir }, 'audit write failed');
      this.failure = reason;
      this.startProbe();
      this.counters.failed += batch.length;
      const error =
        cause instanceof AuditError
          ? cause
          : new AuditError('AUDIT_WRITE_FAILED', `audit event not recorded: ${reason}`, { cause });
      for (const p of batch) p.reject(error);
    }
  }

  private healed(): void {
    this.log?.info({ dir: this.dir }, 'audit trail writable again');
    this.failure = undefined;
    clearInterval(this.probe);
    this.probe = undefined;
  }

  private startProbe(): void {
    if (this.probe !== undefined || this.closed) return;
    let running = false;
    this.probe = setInterval(() => {
      if (running || this.failure === undefined) return;
      running = true;
      void this.probeOnce().finally(() => (running = false));
    }, this.probeIntervalMs);
    this.probe.unref();
  }

  /** Write, fsync and remove a 4 KiB file next to the trail; on success the next batch starts afresh. */
  private async probeOnce(): Promise<void> {
    const path = join(this.dir, '.audit-write-probe');
    try {
      await unlink(path).catch(() => undefined);
      const handle = await this.openFile(path, 'ax');
      try {
        await handle.write(Buffer.alloc(4096, 0x0a));
        await handle.datasync();
      } finally {
        await handle.close();
        await unlink(path).catch(() => undefined);
      }
    } catch {
      return; // still failing
    }
    if (this.failure === undefined || this.closed) return;
    // The next batch re-reads the tail first (in the writer, which owns the file handle): the failure
    // may have left a torn line.
    this.needsRecovery = true;
    this.healed();
  }

  /** Remove the bytes of a failed batch so that the file still ends with a complete line. */
  private async undoPartialWrite(size: number): Promise<void> {
    const file = this.file;
    if (!file) return;
    try {
      await file.handle.truncate(size);
      await file.handle.datasync();
      file.size = size;
    } catch {
      // Leave the torn bytes as they are; the next batch re-reads the tail and starts a new file.
      this.file = undefined;
      this.needsRecovery = true;
      await file.handle.close().catch(() => undefined);
    }
  }

  /** The file the next `bytes` go to: the current one, or a new one when size or age says so. */
  private async fileFor(bytes: number, firstSeq: number) {
    const now = this.now();
    const current = this.file;
    if (current) {
      const full = current.size > 0 && current.size + bytes > this.maxFileBytes;
      const old = current.size > 0 && now.getTime() - current.started.getTime() >= this.maxFileAgeMs;
      if (!full && !old) return current;
      this.file = undefined;
      await current.handle.close();
    }
    // The name carries the seq of its first line. A torn file of a crash can hold that seq already
    // (it has no complete line): then the name differs by its timestamp.
    for (let attempt = 0; ; attempt++) {
      const started = new Date(now.getTime() + attempt * 1000);
      const path = join(this.dir, auditFileName(started, firstSeq));
      try {
        const handle = await this.openFile(path, 'ax');
        this.file = { handle, path, size: 0, started };
        break;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST' || attempt >= 100) throw error;
      }
    }
    await syncDir(this.dir);
    return this.file;
  }

  /** Find where the chain stands on disk and continue from there. */
  private async recover(): Promise<void> {
    const previous = this.file;
    this.file = undefined;
    await previous?.handle.close().catch(() => undefined);
    const tail = await readChainTail(this.dir);
    this.seq = tail.seq;
    this.hash = tail.hash;
    if (tail.appendTo) {
      const handle = await this.openFile(tail.appendTo.path, 'a');
      this.file = {
        handle,
        path: tail.appendTo.path,
        size: tail.appendTo.size,
        started: tail.appendTo.started,
      };
    }
    this.needsRecovery = false;
  }
}

/** fsync a directory so that a file created in it survives a power loss. */
export async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

function describe(error: unknown): string {
  const e = error as NodeJS.ErrnoException;
  if (typeof e?.code === 'string' && typeof e.message === 'string') return e.message;
  return error instanceof Error ? error.message : String(error);
}

/**
 * Read where the chain stands: seq and hash of the last complete line of the newest file that has one,
 * and whether new lines may go to the end of the newest file (it ends with `\n`, or is empty and
 * named for the next seq).
 */
export async function readChainTail(dir: string): Promise<ChainTail> {
  const files = sortAuditFiles(await readdir(dir));
  let appendTo: ChainTail['appendTo'];
  for (let i = files.length - 1; i >= 0; i--) {
    const f = files[i];
    if (f === undefined) continue;
    const path = join(dir, f.name);
    const size = (await stat(path)).size;
    const newest = i === files.length - 1;
    if (size === 0) {
      if (newest) appendTo = { path, size: 0, started: f.started };
      continue;
    }
    const handle = await open(path, 'r');
    try {
      const last = await lastCompleteLine(handle, size);
      if (newest && last.endsWithNewline) appendTo = { path, size, started: f.started };
      if (last.line === undefined) continue;
      const fields = chainFields(last.line);
      if (!fields.ok || sha256Hex(fields.hashed) !== fields.hash) {
        throw new AuditError(
          'AUDIT_CHAIN_UNREADABLE',
          `cannot continue the audit chain: the last complete line of ${path} is not a valid audit record` +
            ` (${fields.ok ? 'its content does not match its hash' : fields.problem}); run \`pullwarden audit verify\``,
        );
      }
      // An empty newest file is only reusable when its name says it starts right after this line.
      if (appendTo?.size === 0 && files[files.length - 1]?.firstSeq !== fields.seq + 1) appendTo = undefined;
      return appendTo
        ? { seq: fields.seq, hash: fields.hash, appendTo }
        : { seq: fields.seq, hash: fields.hash };
    } finally {
      await handle.close();
    }
  }
  if (appendTo?.size === 0 && files[files.length - 1]?.firstSeq !== 1) appendTo = undefined;
  return appendTo ? { seq: 0, hash: GENESIS, appendTo } : { seq: 0, hash: GENESIS };
}

/** The last line that ends with `\n` (without it), reading backwards from the end in chunks. */
async function lastCompleteLine(
  handle: FileHandle,
  size: number,
): Promise<{ line: string | undefined; endsWithNewline: boolean }> {
  const chunk = 64 * 1024;
  let tail = Buffer.alloc(0);
  let tailStart = size; // file offset of tail[0]
  let newline = -1; // file offset of the last "\n"
  for (;;) {
    if (newline < 0) {
      const at = tail.lastIndexOf(0x0a);
      if (at >= 0) newline = tailStart + at;
    }
    const endsWithNewline = newline === size - 1;
    if (newline >= 0) {
      const idx = newline - tailStart;
      const before = idx > 0 ? tail.lastIndexOf(0x0a, idx - 1) : -1;
      if (before >= 0) return { line: tail.subarray(before + 1, idx).toString('utf8'), endsWithNewline };
      if (tailStart === 0) return { line: tail.subarray(0, idx).toString('utf8'), endsWithNewline };
    } else if (tailStart === 0) {
      return { line: undefined, endsWithNewline: false };
    }
    const start = Math.max(0, tailStart - chunk);
    const buf = Buffer.alloc(tailStart - start);
    let got = 0;
    while (got < buf.length) {
      const { bytesRead } = await handle.read(buf, got, buf.length - got, start + got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    tail = Buffer.concat([buf.subarray(0, got), tail]);
    tailStart = start;
  }
}
