/**
 * The primary of `server.workers > 1` (node:cluster; with `server.balance: reuseport`, the default,
 * every worker listens itself and the kernel spreads the connections; with `round-robin` the primary
 * accepts connections and hands them to workers in turn). It
 * serves no request itself and owns what is one per deployment:
 *
 * - the storage directory's owner lock (workers fill blobs through the directory like replicas in
 *   shared mode, see cache/fs-blob-store.ts);
 * - the audit trail: the one writer of the hash chain; a worker's event is acknowledged only once
 *   the primary's sinks made it durable, so `audit verify`/`query` see one chain as before;
 * - the TUF refresh of the public-good root (workers ask it for the root it fetched);
 * - config reload: SIGHUP or a change of the file is validated here once; a broken file keeps every
 *   worker on the last good config, a good one is applied by every worker;
 * - readiness (`/readyz` is ready only when every worker is) and `/metrics` aggregated across workers
 *   (prom-client's AggregatorRegistry);
 * - graceful shutdown: every worker drains, then the trail and the lock are closed.
 */
import cluster from 'node:cluster';
import type { Worker } from 'node:cluster';
import type { FSWatcher } from 'node:fs';
import { rm } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { TrustedRoot } from '@sigstore/protobuf-specs';
import { AggregatorRegistry } from 'prom-client';
import type { Logger } from 'pino';
import { openAuditSink } from '../audit/index.ts';
import { acquireStorageLock } from '../cache/index.ts';
import { EMBEDDED_SOURCE, loadConfig, splitListen, watchFile } from '../config/index.ts';
import type { LoadedConfig } from '../config/index.ts';
import { isPwMessage, WORKER_ENV, WORKER_PORT_ENV } from './messages.ts';
import type { PrimaryMessage, WorkerNotice, WorkerRequest } from './messages.ts';

/** `auto` uses every available core, but not more than this many workers. */
export const MAX_AUTO_WORKERS = 16;

/** Number of serving processes for `server.workers`. */
export function resolveWorkers(setting: 'auto' | number): number {
  return setting === 'auto' ? Math.max(1, Math.min(availableParallelism(), MAX_AUTO_WORKERS)) : setting;
}

export interface ClusterHandle {
  address: string;
  reload(): Promise<void>;
  close(): Promise<void>;
}

/** A TUF fetch done within this long is handed to every worker that asks instead of a new one. */
const TUF_REUSE_MS = 60_000;
/** A worker that died is replaced after this long (not in a tight loop if it dies at start). */
const RESPAWN_DELAY_MS = 1_000;

export async function startCluster(
  config: LoadedConfig,
  options: { workers: number; logger: Logger },
): Promise<ClusterHandle> {
  const log = options.logger.child({ module: 'cluster' });
  const { lock, lost: lockLost } = await acquireStorageLock(config.storage, log);
  const audit = await openAuditSink(config.audit, {
    dir: config.audit.dir,
    log: log.child({ module: 'audit' }),
    checkpointKey: config.audit.checkpointKey,
  }).catch(async (err: unknown) => {
    await lock.release();
    throw err;
  });
  if (!config.storage.shared) {
    // The directory is this deployment's alone: fills a crash left behind are deleted, as a single
    // process does at start (the workers then coordinate their fills through the directory).
    await rm(join(config.storage.dir, 'tmp'), { recursive: true, force: true });
    await rm(join(config.storage.dir, 'fills'), { recursive: true, force: true });
  }
  const aggregator = new AggregatorRegistry();

  let tuf: { at: number; root: Promise<unknown> } | undefined;
  const fetchRoot = (): Promise<unknown> => {
    if (tuf === undefined || Date.now() - tuf.at > TUF_REUSE_MS) {
      const root = (async () => {
        const { getTrustedRoot } = await import('@sigstore/tuf');
        return TrustedRoot.toJSON(await getTrustedRoot({ cachePath: join(config.storage.dir, 'tuf') }));
      })();
      tuf = { at: Date.now(), root };
      root.catch(() => {
        if (tuf?.root === root) tuf = undefined; // a failure is not reused
      });
    }
    return tuf.root;
  };

  let closing = false;
  const up = new Map<number, string>(); // worker id → address, once listening
  const probes = new Map<string, (ok: boolean, reason?: string) => void>();
  let probeSeq = 0;

  // A worker may die or disconnect between the check and the write: node:cluster then emits 'error'
  // on the Worker, and an 'error' nobody listens to would end the primary (exit 1). The worker's
  // 'exit' handler below replaces it; a message it cannot get is only logged.
  const send = (worker: Worker, message: PrimaryMessage): void => {
    if (!worker.isConnected()) return;
    worker.send(message, undefined, (err: Error | null) => {
      if (err !== null) lostMessage(worker, message.pw, err);
    });
  };
  const lostMessage = (worker: Worker, what: string, err: Error): void =>
    log.warn(
      { worker: worker.id, pid: worker.process.pid, message: what, err: err.message },
      'worker unreachable',
    );

  const answer = async (worker: Worker, m: WorkerRequest): Promise<void> => {
    try {
      switch (m.pw) {
        case 'audit': {
          // One message, many events: appended in order (the trail group-commits them), answered
          // together once each is durable or failed.
          const settled = await Promise.allSettled(m.events.map((e) => audit.append(e)));
          const value = settled.map((r) => (r.status === 'fulfilled' ? null : message(r.reason)));
          const ok = value.every((v) => v === null);
          send(worker, { pw: 'reply', id: m.id, ok, value, audit: audit.health() });
          return;
        }
        case 'ready':
          await deploymentReady();
          send(worker, { pw: 'reply', id: m.id, ok: true });
          return;
        case 'metrics':
          send(worker, { pw: 'reply', id: m.id, ok: true, value: await aggregator.clusterMetrics() });
          return;
        case 'tuf':
          send(worker, { pw: 'reply', id: m.id, ok: true, value: await fetchRoot() });
          return;
      }
    } catch (err) {
      send(worker, { pw: 'reply', id: m.id, ok: false, error: message(err) });
    }
  };

  const deploymentReady = async (): Promise<void> => {
    if (closing) throw new Error('shutting down');
    const lost = lockLost();
    if (lost !== undefined) throw new Error(lost);
    const failing = audit.status().filter((s) => !s.ok);
    if (failing.length > 0) {
      throw new Error(`audit: ${failing.map((s) => `${s.name}: ${s.reason ?? 'failing'}`).join('; ')}`);
    }
    const workers = Object.values(cluster.workers ?? {}).filter((w) => w !== undefined);
    if (up.size < options.workers) throw new Error(`${up.size} of ${options.workers} workers are up`);
    // Each worker's own checks (storage writable, metadata reachable).
    await Promise.all(
      workers.map(
        (w) =>
          new Promise<void>((resolve, reject) => {
            const id = ++probeSeq;
            const key = `${w.id}:${id}`;
            const timer = setTimeout(() => {
              probes.delete(key);
              reject(new Error(`worker ${w.id} did not answer the readiness probe`));
            }, 5_000);
            probes.set(key, (ok, reason) => {
              clearTimeout(timer);
              probes.delete(key);
              if (ok) resolve();
              else reject(new Error(`worker ${w.id}: ${reason ?? 'not ready'}`));
            });
            send(w, { pw: 'probe', id });
          }),
      ),
    );
  };

  const {
    promise: firstUp,
    resolve: resolveFirstUp,
    reject: rejectFirstUp,
  } = Promise.withResolvers<string>();
  let startFailures = 0;

  // reuseport on port 0: every worker must bind the port the first one got (see WORKER_PORT_ENV).
  const sharedPort = config.server.balance === 'reuseport' && splitListen(config.listen).port === 0;
  let boundPort: string | undefined;
  const fork = (): void => {
    const worker = cluster.fork({
      [WORKER_ENV]: '1',
      ...(boundPort === undefined ? {} : { [WORKER_PORT_ENV]: boundPort }),
    });
    worker.on('error', (err: Error) => lostMessage(worker, 'ipc', err));
    worker.on('message', (m: unknown) => {
      if (!isPwMessage(m)) return;
      const msg = m as WorkerRequest | WorkerNotice;
      if (msg.pw === 'up') {
        up.set(worker.id, msg.address);
        resolveFirstUp(msg.address);
        log.info({ worker: worker.id, pid: worker.process.pid }, 'worker listening');
      } else if (msg.pw === 'probe-res') {
        probes.get(`${worker.id}:${msg.id}`)?.(msg.ok, msg.reason);
      } else void answer(worker, msg);
    });
    worker.on('exit', (code, signal) => {
      const wasUp = up.delete(worker.id);
      if (closing) return;
      log.error(
        { worker: worker.id, pid: worker.process.pid, code, signal },
        'worker exited; starting another',
      );
      if (!wasUp && ++startFailures >= options.workers * 3) {
        rejectFirstUp(new Error(`workers exit at start (last: code ${String(code)}, signal ${signal})`));
        return;
      }
      setTimeout(() => {
        if (!closing) fork();
      }, RESPAWN_DELAY_MS).unref();
    });
  };
  if (sharedPort) {
    fork();
    void firstUp.then(
      (address) => {
        boundPort = new URL(address).port;
        for (let i = 1; i < options.workers; i++) fork();
      },
      () => undefined,
    );
  } else for (let i = 0; i < options.workers; i++) fork();

  const shutdown = async (): Promise<void> => {
    closing = true;
    const workers = Object.values(cluster.workers ?? {}).filter((w) => w !== undefined);
    await Promise.all(
      workers.map(
        (w) =>
          new Promise<void>((resolve) => {
            if (w.isDead()) {
              resolve();
              return;
            }
            w.once('exit', () => resolve());
            send(w, { pw: 'shutdown' });
          }),
      ),
    );
    watcher?.close();
    await audit.close().catch((err: unknown) => log.error({ err: message(err) }, 'audit close failed'));
    await lock.release();
  };

  let address: string;
  try {
    address = await firstUp;
  } catch (err) {
    await shutdown();
    throw err;
  }

  let chain = Promise.resolve();
  const reload = (): Promise<void> => {
    chain = chain.then(async () => {
      // A change seen while the workers drain reaches none of them (they are going away).
      if (config.source === EMBEDDED_SOURCE || closing) return;
      try {
        // Validated once here: a broken file reaches no worker.
        await loadConfig(config.source);
      } catch (err) {
        log.error(
          { err: message(err), source: config.source },
          'config reload failed; keeping the last good policy',
        );
        return;
      }
      for (const w of Object.values(cluster.workers ?? {})) if (w !== undefined) send(w, { pw: 'reload' });
      log.info({ workers: up.size }, 'config reload sent to every worker');
    });
    return chain;
  };
  let watcher: FSWatcher | undefined;
  if (config.source !== EMBEDDED_SOURCE) {
    watcher = watchFile(
      config.source,
      () => void reload(),
      (err) => log.warn({ err: err.message }, 'config file watch failed'),
    );
  }
  log.info({ address, workers: options.workers, pid: process.pid }, 'pullwarden primary started its workers');
  return {
    address,
    reload,
    close: async () => {
      await chain;
      await shutdown();
    },
  };
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
