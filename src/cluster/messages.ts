/**
 * What the primary and its workers say to each other over the cluster IPC channel. Every message
 * carries `pw` (its kind), so that other users of the channel (prom-client's metrics aggregation)
 * can share it.
 */
import type { AuditEvent, AuditHealth } from '../audit/index.ts';

/** Worker → primary requests; the primary answers each with a {@link Reply} of the same id. */
export type WorkerRequest =
  /** Audit events of one turn of the worker's loop; the reply's value is an {@link AuditBatchReply}. */
  | { pw: 'audit'; id: number; events: AuditEvent[] }
  | { pw: 'ready'; id: number }
  | { pw: 'metrics'; id: number }
  | { pw: 'tuf'; id: number };

/** Worker → primary notices. */
export type WorkerNotice =
  { pw: 'up'; address: string } | { pw: 'probe-res'; id: number; ok: boolean; reason?: string };

/** Primary → worker. */
export type PrimaryMessage =
  | { pw: 'reply'; id: number; ok: boolean; error?: string; value?: unknown; audit?: AuditHealth }
  | { pw: 'reload' }
  | { pw: 'shutdown' }
  | { pw: 'probe'; id: number };

/** Set in a worker's environment by the primary. */
export const WORKER_ENV = 'PULLWARDEN_CLUSTER_WORKER';
/**
 * With `server.balance: reuseport` and `listen` on port 0: the port the first worker bound, which
 * every other worker binds too (each worker listens itself, so each would get a port of its own).
 */
export const WORKER_PORT_ENV = 'PULLWARDEN_CLUSTER_PORT';

export function isPwMessage(m: unknown): m is { pw: string } {
  return typeof m === 'object' && m !== null && typeof (m as { pw?: unknown }).pw === 'string';
}
