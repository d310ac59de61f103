/**
 * The worker side of `server.workers > 1`: the things that stay one per deployment are the primary's,
 * and a worker reaches them over IPC — its audit events (the primary is the one writer of the hash
 * chain and acknowledges an event only once it is durable), the TUF refresh, readiness of the whole
 * deployment and the aggregated metrics.
 */
import cluster from 'node:cluster';
import { TrustedRoot } from '@sigstore/protobuf-specs';
import { AggregatorRegistry } from 'prom-client';
import type { Registry } from 'prom-client';
import { MultiAuditSink } from '../audit/index.ts';
import type { AuditEvent, AuditHealth, AuditSink } from '../audit/index.ts';
import { AuditBatcher } from './audit-batch.ts';
import type { AuditBatchReply } from './audit-batch.ts';
import { isPwMessage, WORKER_ENV, WORKER_PORT_ENV } from './messages.ts';
import type { PrimaryMessage, WorkerNotice, WorkerRequest } from './messages.ts';
import type { Logger } from '../shared/index.ts';

/** Whether this process is a worker started by a pullwarden primary. */
export function isClusterWorker(): boolean {
  return cluster.isWorker && process.env[WORKER_ENV] === '1';
}

type Pending = { resolve: (m: PrimaryMessage & { pw: 'reply' }) => void; reject: (err: Error) => void };

/** The IPC channel to the primary, with request/reply matching. */
export class PrimaryChannel {
  readonly #pending = new Map<number, Pending>();
  #next = 1;
  #onReload: (() => void) | undefined;
  #onShutdown: (() => void) | undefined;
  #onProbe: (() => Promise<void>) | undefined;

  constructor() {
    process.on('message', (m: unknown) => {
      if (!isPwMessage(m)) return;
      const msg = m as PrimaryMessage;
      if (msg.pw === 'reply') {
        const p = this.#pending.get(msg.id);
        this.#pending.delete(msg.id);
        p?.resolve(msg);
      } else if (msg.pw === 'reload') this.#onReload?.();
      else if (msg.pw === 'shutdown') this.#onShutdown?.();
      else {
        const probe = this.#onProbe ?? (() => Promise.reject(new Error('starting')));
        const id = msg.id;
        probe().then(
          () => this.notify({ pw: 'probe-res', id, ok: true }),
          (err: unknown) =>
            this.notify({
              pw: 'probe-res',
              id,
              ok: false,
              reason: err instanceof Error ? err.message : String(err),
            }),
        );
      }
    });
    // The primary is gone: whatever is in flight can no longer be acknowledged.
    process.on('disconnect', () => {
      for (const p of this.#pending.values()) p.reject(new Error('the cluster primary is gone'));
      this.#pending.clear();
    });
  }

  request(body: DistributiveOmit<WorkerRequest, 'id'>): Promise<PrimaryMessage & { pw: 'reply' }> {
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      if (process.send === undefined || !process.connected) {
        reject(new Error('the cluster primary is gone'));
        return;
      }
      this.#pending.set(id, { resolve, reject });
      process.send({ ...body, id }, undefined, undefined, (err: Error | null) => {
        if (err === null) return;
        this.#pending.delete(id);
        reject(err);
      });
    });
  }

  notify(message: WorkerNotice): void {
    // With a callback a closed channel is not an 'error' event (which would end the worker); the
    // 'disconnect' handler above deals with a primary that is gone.
    if (process.connected) process.send?.(message, undefined, undefined, () => undefined);
  }

  onReload(f: () => void): void {
    this.#onReload = f;
  }
  onShutdown(f: () => void): void {
    this.#onShutdown = f;
  }
  onProbe(f: () => Promise<void>): void {
    this.#onProbe = f;
  }
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

/**
 * An audit sink whose events the primary writes: `append` resolves once the primary's sinks have
 * made the event durable (the JSONL trail fsync'd), and rejects when they could not, or when the
 * primary is gone — so a response waits for its event exactly as in a single process. The events of
 * one turn of the loop travel in one message ({@link AuditBatcher}).
 */
export class IpcAuditSink implements AuditSink {
  #health: AuditHealth = { ok: true };
  readonly #batcher: AuditBatcher;

  constructor(channel: PrimaryChannel) {
    this.#batcher = new AuditBatcher(async (events) => {
      let reply;
      try {
        reply = await channel.request({ pw: 'audit', events });
      } catch (err) {
        this.#health = { ok: false, reason: err instanceof Error ? err.message : String(err) };
        throw err;
      }
      if (reply.audit !== undefined) this.#health = reply.audit;
      if (!Array.isArray(reply.value)) {
        throw new Error(reply.error ?? 'audit append failed in the cluster primary');
      }
      return reply.value as AuditBatchReply;
    });
  }

  append(event: AuditEvent): Promise<void> {
    return this.#batcher.append(event);
  }

  health(): AuditHealth {
    return this.#health;
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

/** What a worker's app uses instead of its own one-per-deployment parts. */
export interface WorkerBindings {
  channel: PrimaryChannel;
  /** The audit trail, written by the primary. */
  audit(log?: Logger): MultiAuditSink;
  /** The public-good trusted root as the primary's one TUF client last fetched it. */
  fetchTrustedRoot(): Promise<TrustedRoot>;
  /** Resolves when every worker (and the primary's audit trail and storage lock) is ready. */
  ready(): Promise<void>;
  /** Metrics of the whole deployment, aggregated by the primary from every worker. */
  renderMetrics(): Promise<string>;
  /** Make this worker's registry part of the aggregation. */
  shareMetrics(registry: Registry): void;
  /** With `server.balance: reuseport` on port 0: the port the first worker bound, to bind as well. */
  port: number | undefined;
}

export function workerBindings(): WorkerBindings {
  const channel = new PrimaryChannel();
  // Signals go to the whole process group (Ctrl-C); the primary orchestrates the shutdown, so a
  // worker must not die of them on its own.
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, () => undefined);
  const value = async (body: DistributiveOmit<WorkerRequest, 'id'>): Promise<unknown> => {
    const reply = await channel.request(body);
    if (!reply.ok) throw new Error(reply.error ?? `${body.pw} failed in the cluster primary`);
    return reply.value;
  };
  const port = process.env[WORKER_PORT_ENV];
  return {
    channel,
    port: port === undefined ? undefined : Number(port),
    audit: (log) => new MultiAuditSink(new IpcAuditSink(channel), [], log),
    fetchTrustedRoot: async () => TrustedRoot.fromJSON(await value({ pw: 'tuf' })),
    ready: async () => {
      await value({ pw: 'ready' });
    },
    renderMetrics: async () => String(await value({ pw: 'metrics' })),
    shareMetrics: (registry) => {
      AggregatorRegistry.setRegistries([registry]);
      // Constructing one installs prom-client's listener that answers the primary's metric requests.
      new AggregatorRegistry();
    },
  };
}
