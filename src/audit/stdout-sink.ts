import type { Writable } from 'node:stream';
import { AuditError } from './types.ts';
import type { AuditEvent, AuditHealth, AuditSink } from './types.ts';

/**
 * One JSON line per event on a stream (stdout by default), for log shippers. Not durable: append
 * resolves when the stream accepted the line. Fanned out after the JSONL trail, lines carry the chain's
 * `seq` and `hash`, which gives a copy of the chain head outside the audit directory.
 */
export class StdoutAuditSink implements AuditSink {
  private readonly out: Writable;
  private failure: string | undefined;
  private closed = false;

  constructor(out: Writable = process.stdout) {
    this.out = out;
  }

  append(event: AuditEvent): Promise<void> {
    if (this.closed) return Promise.reject(new AuditError('AUDIT_CLOSED', 'the stdout audit sink is closed'));
    return new Promise((resolve, reject) => {
      this.out.write(`${JSON.stringify(event)}\n`, (error) => {
        if (error) {
          this.failure = error.message;
          reject(
            new AuditError('AUDIT_WRITE_FAILED', `audit event not written to stdout: ${error.message}`, {
              cause: error,
            }),
          );
        } else {
          this.failure = undefined;
          resolve();
        }
      });
    });
  }

  health(): AuditHealth {
    return this.failure === undefined ? { ok: true } : { ok: false, reason: `stdout: ${this.failure}` };
  }

  close(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }
}
