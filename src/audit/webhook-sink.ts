import { mkdir, open, readFile, readdir, rename, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { AuditError } from './types.ts';
import type { AuditEvent, AuditHealth, AuditSink, AuditSinkStats } from './types.ts';
import { syncDir } from './jsonl-sink.ts';
import type { AuditFileHandle } from './jsonl-sink.ts';
import type { Logger } from '../shared/index.ts';

export interface WebhookAuditSinkOptions {
  /** Collector endpoint; receives `POST` with a JSON array of events (`content-type: application/json`). */
  url: string;
  /** Disk-backed buffer: events wait here (fsync'd) until the collector acknowledged them. */
  spoolDir: string;
  /** Most events in one POST (default 100). */
  batchSize?: number;
  /** Longest time an event waits for a fuller batch before it is sent, in ms (default 1000). */
  flushIntervalMs?: number;
  /** Extra request headers, e.g. Authorization. Never logged. */
  headers?: Record<string, string>;
  /** Per-request timeout in ms (default 10 s). */
  timeoutMs?: number;
  /** First retry delay in ms, doubled per failure up to `maxBackoffMs` (defaults 250 ms, 30 s). */
  minBackoffMs?: number;
  maxBackoffMs?: number;
  log?: Logger;
  /** HTTP client (tests); default: the global fetch (undici). */
  fetch?: typeof fetch;
  /** Opens a spool file for appending (tests inject faults here). */
  openFile?: (path: string, flags: 'a' | 'ax') => Promise<AuditFileHandle>;
}

interface Pending {
  line: string;
  resolve: () => void;
  reject: (error: Error) => void;
}

const SEGMENT_RE = /^spool-(\d{1,16})\.jsonl$/;
/** Highest chain seq the collector acknowledged (text), so retention knows what it may delete. */
const DELIVERED_FILE = 'delivered-seq';
const SEQ_RE = /^\{"seq":(\d{1,16}),/;
const segmentName = (n: number) => `spool-${String(n).padStart(12, '0')}.jsonl`;

/**
 * Ships events to an HTTP collector in batches, through a spool on disk, so that a collector that is
 * down (or a restart) loses nothing.
 *
 * {@link append} resolves once the event is in the spool and fsync'd. The spool is a sequence of
 * segment files of at most `batchSize` events; a segment is sealed when full or `flushIntervalMs` after
 * its first event, then POSTed as one JSON array. A 2xx response removes the segment; anything else
 * (connection refused, timeout, non-2xx) is retried with exponential backoff, forever, in order: a
 * segment is never skipped. A restart resends every segment still in the spool.
 *
 * Delivery is at least once: a crash between the collector's 2xx and the removal of the segment resends
 * it. Events carry `requestId` and `type` (and `seq`/`hash` when fanned out after the JSONL trail), which
 * a collector can use to drop duplicates.
 */
export class WebhookAuditSink implements AuditSink {
  private readonly url: string;
  private readonly origin: string;
  private readonly spoolDir: string;
  private readonly batchSize: number;
  private readonly flushIntervalMs: number;
  private readonly headers: Record<string, string>;
  private readonly timeoutMs: number;
  private readonly minBackoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly log: Logger | undefined;
  private readonly fetch: typeof fetch;
  private readonly openFile: (path: string, flags: 'a' | 'ax') => Promise<AuditFileHandle>;

  /** Sealed segments waiting to be sent, oldest first. */
  private readonly sealed: number[] = [];
  private current:
    { n: number; handle: AuditFileHandle | undefined; count: number; since: number } | undefined;
  private nextSegment = 1;
  /** Highest `seq` of the events the collector acknowledged (events carry it after the JSONL trail). */
  private delivered = 0;
  private pending: Pending[] = [];
  /** Serializes spool writes and sealing. */
  private serial: Promise<void> = Promise.resolve();
  private commitScheduled = false;
  private sender: Promise<void> | undefined;
  private wakeSender: (() => void) | undefined;
  /** The sender waits after a failure: a newly sealed segment must not cut the backoff short. */
  private backingOff = false;
  private readonly stopping = new AbortController();
  private closed = false;
  private spoolFailure: string | undefined;
  private deliveryFailure: string | undefined;
  private readonly counters: AuditSinkStats & { delivered: number } = {
    appended: 0,
    failed: 0,
    batches: 0,
    delivered: 0,
  };

  private constructor(options: WebhookAuditSinkOptions) {
    this.url = options.url;
    this.origin = new URL(options.url).origin; // for logs: no path, query or credentials
    this.spoolDir = options.spoolDir;
    this.batchSize = Math.max(1, options.batchSize ?? 100);
    this.flushIntervalMs = options.flushIntervalMs ?? 1000;
    this.headers = options.headers ?? {};
    this.timeoutMs = options.timeoutMs ?? 10_000;
    this.minBackoffMs = options.minBackoffMs ?? 250;
    this.maxBackoffMs = options.maxBackoffMs ?? 30_000;
    this.log = options.log;
    this.fetch = options.fetch ?? fetch;
    this.openFile = options.openFile ?? ((path, flags) => open(path, flags));
  }

  /** Open the spool (created if missing) and start sending what a previous run left in it. */
  static async open(options: WebhookAuditSinkOptions): Promise<WebhookAuditSink> {
    const sink = new WebhookAuditSink(options);
    await mkdir(sink.spoolDir, { recursive: true });
    const found = (await readdir(sink.spoolDir))
      .map((name) => SEGMENT_RE.exec(name))
      .filter((m) => m !== null)
      .map((m) => Number(m[1]))
      .sort((a, b) => a - b);
    sink.sealed.push(...found);
    const saved = await readFile(join(sink.spoolDir, DELIVERED_FILE), 'utf8').catch(() => '0');
    sink.delivered = Number.parseInt(saved, 10) || 0;
    sink.nextSegment = (found[found.length - 1] ?? 0) + 1;
    sink.sender = sink.send();
    return sink;
  }

  append(event: AuditEvent): Promise<void> {
    if (this.closed)
      return Promise.reject(new AuditError('AUDIT_CLOSED', 'the webhook audit sink is closed'));
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ line: JSON.stringify(event), resolve, reject });
      if (!this.commitScheduled) {
        this.commitScheduled = true;
        // commit() settles every waiter itself and never rejects.
        void this.serialize(() => this.commit());
      }
    });
  }

  health(): AuditHealth {
    if (this.spoolFailure !== undefined) {
      return {
        ok: false,
        reason: `cannot write the webhook spool in ${this.spoolDir}: ${this.spoolFailure}`,
      };
    }
    if (this.deliveryFailure !== undefined) {
      return {
        ok: false,
        reason: `webhook ${this.origin} failing: ${this.deliveryFailure}; ${this.spooled()} batch(es) spooled`,
      };
    }
    return { ok: true };
  }

  /**
   * The highest chain seq the collector acknowledged (kept across restarts). Delivery is in order, so
   * every earlier event was acknowledged too, or never reached the spool (a spool write failure).
   */
  deliveredThrough(): number {
    return this.delivered;
  }

  stats(): AuditSinkStats & { delivered: number; spooledBatches: number } {
    return { ...this.counters, spooledBatches: this.spooled() };
  }

  /** Stop sending and close the spool. What was not acknowledged stays in the spool for the next start. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.serial;
    await this.serialize(() => this.seal());
    this.stopping.abort();
    this.wakeSender?.();
    await this.sender;
  }

  /** Hand every sealed segment to the collector, and seal the current one when it is old enough. */
  async flush(): Promise<void> {
    await this.serialize(() => this.seal());
    while (this.sealed.length > 0 && !this.closed) {
      if (!this.backingOff) this.wakeSender?.();
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  private spooled(): number {
    return this.sealed.length + (this.current && this.current.count > 0 ? 1 : 0);
  }

  private serialize(op: () => Promise<void>): Promise<void> {
    const next = this.serial.then(op);
    this.serial = next.catch(() => undefined);
    return next;
  }

  /** Write the waiting events to the current segment with one write and one fsync. */
  private async commit(): Promise<void> {
    this.commitScheduled = false;
    const batch = this.pending.splice(0);
    if (batch.length === 0) return;
    let index = 0;
    try {
      while (index < batch.length) {
        const segment = await this.segment();
        const room = this.batchSize - segment.count;
        const part = batch.slice(index, index + room);
        const bytes = Buffer.from(part.map((p) => `${p.line}\n`).join(''), 'utf8');
        let offset = 0;
        const handle = segment.handle as AuditFileHandle;
        while (offset < bytes.length) offset += (await handle.write(bytes.subarray(offset))).bytesWritten;
        await handle.datasync();
        if (segment.count === 0) segment.since = performance.now();
        segment.count += part.length;
        this.counters.batches += 1;
        this.counters.appended += part.length;
        for (const p of part) p.resolve();
        index += part.length;
        if (segment.count >= this.batchSize) await this.seal();
      }
      if (this.spoolFailure !== undefined) {
        this.log?.info({ spoolDir: this.spoolDir }, 'webhook spool writable again');
        this.spoolFailure = undefined;
      }
    } catch (cause) {
      const reason = cause instanceof Error ? cause.message : String(cause);
      if (this.spoolFailure === undefined) {
        this.log?.error({ err: cause, spoolDir: this.spoolDir }, 'webhook spool write failed');
      }
      this.spoolFailure = reason;
      // The segment may end with a torn line now: seal it (the sender skips torn lines) and go on in a new one.
      await this.seal().catch(() => undefined);
      const rest = batch.slice(index);
      this.counters.failed += rest.length;
      const error = new AuditError('AUDIT_WRITE_FAILED', `audit event not spooled: ${reason}`, { cause });
      for (const p of rest) p.reject(error);
    }
  }

  private async segment() {
    if (this.current?.handle) return this.current;
    const n = this.nextSegment++;
    const handle = await this.openFile(join(this.spoolDir, segmentName(n)), 'ax');
    await syncDir(this.spoolDir);
    this.current = { n, handle, count: 0, since: performance.now() };
    return this.current;
  }

  /** Close the current segment and queue it for sending. */
  private async seal(): Promise<void> {
    const segment = this.current;
    if (!segment?.handle) return;
    this.current = undefined;
    await segment.handle.close();
    if (segment.count === 0) {
      await unlink(join(this.spoolDir, segmentName(segment.n))).catch(() => undefined);
      return;
    }
    this.sealed.push(segment.n);
    if (!this.backingOff) this.wakeSender?.();
  }

  private async sleep(ms: number): Promise<void> {
    if (this.stopping.signal.aborted) return;
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.wakeSender = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.wakeSender = done;
    });
  }

  /** The sender loop: oldest sealed segment first, one at a time, until it is acknowledged. */
  private async send(): Promise<void> {
    let backoff = this.minBackoffMs;
    while (!this.stopping.signal.aborted) {
      const n = this.sealed[0];
      if (n === undefined) {
        const current = this.current;
        if (current && current.count > 0) {
          const due = current.since + this.flushIntervalMs - performance.now();
          if (due <= 0) await this.serialize(() => this.seal()).catch(() => undefined);
          else await this.sleep(due);
        } else {
          await this.sleep(this.flushIntervalMs);
        }
        continue;
      }
      const path = join(this.spoolDir, segmentName(n));
      try {
        const lines = (await readFile(path, 'utf8')).split('\n');
        lines.pop(); // after the last "\n": empty, or a torn line that was never acknowledged
        if (lines.length > 0) await this.post(`[${lines.join(',')}]`);
        const seq = Number(SEQ_RE.exec(lines[lines.length - 1] ?? '')?.[1] ?? 0);
        // Before the segment goes: a crash in between resends it, never loses the mark.
        if (seq > this.delivered) await this.saveDelivered(seq);
        await unlink(path);
        this.sealed.shift();
        this.counters.delivered += lines.length;
        backoff = this.minBackoffMs;
        if (this.deliveryFailure !== undefined) {
          this.log?.info({ webhook: this.origin }, 'webhook delivering again');
          this.deliveryFailure = undefined;
        }
      } catch (error) {
        if (this.stopping.signal.aborted) break;
        const reason = describe(error);
        if (this.deliveryFailure === undefined) {
          this.log?.warn({ webhook: this.origin, reason }, 'webhook delivery failing; events stay spooled');
        }
        this.deliveryFailure = reason;
        this.backingOff = true;
        await this.sleep(backoff * (0.75 + Math.random() / 2));
        this.backingOff = false;
        backoff = Math.min(this.maxBackoffMs, backoff * 2);
      }
    }
  }

  private async saveDelivered(seq: number): Promise<void> {
    const tmp = join(this.spoolDir, `${DELIVERED_FILE}.tmp`);
    await writeFile(tmp, String(seq));
    await rename(tmp, join(this.spoolDir, DELIVERED_FILE));
    this.delivered = seq;
  }

  private async post(body: string): Promise<void> {
    const signal = AbortSignal.any([this.stopping.signal, AbortSignal.timeout(this.timeoutMs)]);
    const res = await this.fetch(this.url, {
      method: 'POST',
      headers: { ...this.headers, 'content-type': 'application/json' },
      body,
      signal,
    });
    // Consume or destroy every body (undici keeps the connection otherwise).
    await res.body?.cancel().catch(() => undefined);
    if (res.status < 200 || res.status > 299) throw new Error(`collector answered ${res.status}`);
  }
}

function describe(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const cause = (error as { cause?: { code?: unknown; message?: unknown } }).cause;
  if (cause && typeof cause.code === 'string') return `${error.message} (${cause.code})`;
  return error.message;
}
