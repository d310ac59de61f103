import type { AuditEvent, AuditHealth, AuditSink, ChainedAuditSink } from './types.ts';
import type { Logger } from '../shared/index.ts';

/** An extra sink of a {@link MultiAuditSink}. */
export interface AuditExtra {
  /** For health reasons and logs, e.g. "webhook", "stdout". */
  name: string;
  sink: AuditSink;
  /** When true, an append fails if this sink fails (default false: the failure only shows in health). */
  required?: boolean;
}

export interface AuditSinkStatus {
  name: string;
  ok: boolean;
  required: boolean;
  reason?: string;
}

/** A sink that tells how far it has received the chain (the webhook spool). */
interface ReceivingSink extends AuditSink {
  deliveredThrough(): number;
}
function isReceiving(sink: AuditSink): sink is ReceivingSink {
  return typeof (sink as Partial<ReceivingSink>).deliveredThrough === 'function';
}

function isChained(sink: AuditSink): sink is ChainedAuditSink {
  return typeof (sink as Partial<ChainedAuditSink>).appendRecord === 'function';
}

/**
 * Fan-out: every event goes to the primary (durable) sink first, then to the extras. The extras receive
 * the stored record (with the chain's seq, prev and hash) when the primary is chained, in chain order.
 * A failing extra rejects the append only when it is `required`; otherwise it is logged once per
 * failure spell, counted, and shown by {@link health} and {@link status}.
 */
export class MultiAuditSink implements AuditSink {
  private readonly primary: AuditSink;
  private readonly extras: readonly AuditExtra[];
  private readonly log: Logger | undefined;
  private readonly extraFailures = new Map<string, string>();

  constructor(primary: AuditSink, extras: readonly AuditExtra[], log?: Logger) {
    this.primary = primary;
    this.extras = extras;
    this.log = log;
  }

  async append(event: AuditEvent): Promise<void> {
    let record: AuditEvent = event;
    // The stored record (seq, prev, hash) is built only for extras that receive it.
    if (this.extras.length === 0) await this.primary.append(event);
    else if (isChained(this.primary)) record = await this.primary.appendRecord(event);
    else await this.primary.append(event);
    const required: Promise<void>[] = [];
    for (const extra of this.extras) {
      const done = extra.sink.append(record).then(
        () => {
          if (this.extraFailures.delete(extra.name))
            this.log?.info({ sink: extra.name }, 'audit sink recovered');
        },
        (error: unknown) => {
          const reason = error instanceof Error ? error.message : String(error);
          if (!this.extraFailures.has(extra.name)) {
            this.log?.error({ sink: extra.name, err: error }, 'audit sink failed');
          }
          this.extraFailures.set(extra.name, reason);
          if (extra.required === true) throw error;
        },
      );
      if (extra.required === true) required.push(done);
    }
    await Promise.all(required);
  }

  /**
   * The highest seq every extra has received for good (Infinity without such an extra): the trail's
   * retention deletes nothing later. stdout writes synchronously, so only the webhook holds.
   */
  receivedThrough(): number {
    let hold = Infinity;
    for (const e of this.extras) if (isReceiving(e.sink)) hold = Math.min(hold, e.sink.deliveredThrough());
    return hold;
  }

  /** Run the primary's retention now (it also runs on a timer and after rotation). */
  async runRetention(): Promise<{ deleted: string[]; bytes: number; held: boolean }> {
    const p = this.primary as Partial<{
      runRetention(): Promise<{ deleted: string[]; bytes: number; held: boolean }>;
    }>;
    return p.runRetention ? p.runRetention() : { deleted: [], bytes: 0, held: false };
  }

  /** Hand a line the primary wrote on its own (a checkpoint) to the extras: anchors kept elsewhere. */
  forward(record: object): void {
    for (const extra of this.extras) {
      extra.sink.append(record as AuditEvent).catch((error: unknown) => {
        this.log?.warn({ sink: extra.name, err: error }, 'audit checkpoint not forwarded');
      });
    }
  }

  /** Ok when every sink is ok; the reason names each sink that is not. */
  health(): AuditHealth {
    const bad = this.status().filter((s) => !s.ok);
    if (bad.length === 0) return { ok: true };
    return { ok: false, reason: bad.map((s) => `${s.name}: ${s.reason ?? 'failing'}`).join('; ') };
  }

  /**
   * Per sink, for /readyz and metrics. The primary is named "jsonl". Pulls fail (when failClosed) only
   * for a failing primary or a failing required extra.
   */
  status(): AuditSinkStatus[] {
    const entry = (name: string, sink: AuditSink, required: boolean): AuditSinkStatus => {
      const h = sink.health();
      const reason = h.reason ?? this.extraFailures.get(name);
      const ok = h.ok && !this.extraFailures.has(name);
      return reason === undefined ? { name, ok, required } : { name, ok, required, reason };
    };
    return [
      entry('jsonl', this.primary, true),
      ...this.extras.map((e) => entry(e.name, e.sink, e.required === true)),
    ];
  }

  /** Whether an append can succeed as far as health knows: the primary and every required extra are ok. */
  writable(): boolean {
    return this.status().every((s) => s.ok || !s.required);
  }

  async close(): Promise<void> {
    const results = await Promise.allSettled([
      this.primary.close(),
      ...this.extras.map((e) => e.sink.close()),
    ]);
    const failed = results.find((r) => r.status === 'rejected');
    if (failed) throw failed.reason;
  }
}
