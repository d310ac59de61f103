import type { AuditEvent } from '../audit/index.ts';

/** The primary's answer to one batch: per event, in order, `null` (durable) or why it is not. */
export type AuditBatchReply = readonly (string | null)[];

/**
 * Gathers the audit events a worker produces in one turn of its event loop into one message to the
 * primary, acknowledged together. Under load a worker answers many requests per turn; one IPC message
 * (one pipe write, one parse on each side) for all of them instead of one round trip per response.
 *
 * Nothing is weakened: each event's promise resolves only when the primary's reply says that event is
 * durable, and rejects when it says it is not, when the reply has the wrong length, or when the
 * message could not be sent (the primary is gone). Batches do not wait for each other: a batch is
 * sent while the previous one is still being written (the primary's trail group-commits them).
 */
export class AuditBatcher {
  readonly #send: (events: AuditEvent[]) => Promise<AuditBatchReply>;
  readonly #schedule: (flush: () => void) => void;
  readonly #maxBatch: number;
  #events: AuditEvent[] = [];
  #waiters: { resolve: () => void; reject: (err: Error) => void }[] = [];
  #scheduled = false;

  /**
   * @param send delivers one batch and resolves with the primary's per-event reply
   * @param options.schedule when to flush what was gathered (default `setImmediate`: after the I/O
   *   callbacks of this turn, so every response of the turn shares the message)
   * @param options.maxBatch most events in one message (default 1000); more are sent at once
   */
  constructor(
    send: (events: AuditEvent[]) => Promise<AuditBatchReply>,
    options: { schedule?: (flush: () => void) => void; maxBatch?: number } = {},
  ) {
    this.#send = send;
    this.#schedule = options.schedule ?? ((flush) => setImmediate(flush));
    this.#maxBatch = Math.max(1, options.maxBatch ?? 1000);
  }

  /** Resolves once the primary made this event durable. */
  append(event: AuditEvent): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.#events.push(event);
      this.#waiters.push({ resolve, reject });
      if (this.#events.length >= this.#maxBatch) this.#flush();
      else if (!this.#scheduled) {
        this.#scheduled = true;
        this.#schedule(() => {
          this.#scheduled = false;
          this.#flush();
        });
      }
    });
  }

  #flush(): void {
    if (this.#events.length === 0) return;
    const events = this.#events;
    const waiters = this.#waiters;
    this.#events = [];
    this.#waiters = [];
    const fail = (err: unknown) => {
      const error = err instanceof Error ? err : new Error(String(err));
      for (const w of waiters) w.reject(error);
    };
    let sent: Promise<AuditBatchReply>;
    try {
      sent = this.#send(events);
    } catch (err) {
      fail(err);
      return;
    }
    sent.then((reply) => {
      if (reply.length !== waiters.length) {
        fail(new Error(`the cluster primary answered ${reply.length} of ${waiters.length} audit events`));
        return;
      }
      waiters.forEach((w, i) => {
        const problem = reply[i];
        if (problem === null) w.resolve();
        else w.reject(new Error(problem ?? 'the cluster primary did not answer for this audit event'));
      });
    }, fail);
  }
}
