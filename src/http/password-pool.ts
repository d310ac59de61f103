import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { RegistryError } from '../oci/index.ts';

export interface PasswordPoolOptions {
  /** Worker threads (default: one less than the CPUs, at least 1, at most 4). */
  workers?: number;
  /** Comparisons waiting for a worker beyond which new ones are refused (503 + Retry-After). */
  maxQueue: number;
}

interface Pending {
  id: number;
  password: string;
  hash: string | undefined;
  cost: number;
  resolve: (ok: boolean) => void;
  reject: (err: unknown) => void;
}

// Development runs the .ts sources directly; the build has .js next to this file.
const WORKER_URL = new URL(
  import.meta.url.endsWith('.ts') ? './password-worker.ts' : './password-worker.js',
  import.meta.url,
);

/**
 * bcrypt comparisons on worker threads with a bounded queue. bcrypt is slow by design (tens of ms
 * per check at cost 10): on the main thread a burst of wrong passwords stalls every pull, cached ones
 * included. Here a burst only fills the queue, and beyond `maxQueue` the proxy says so (503) instead
 * of buffering without bound.
 */
export class PasswordPool {
  readonly #size: number;
  readonly #maxQueue: number;
  readonly #idle: Worker[] = [];
  readonly #workers: Worker[] = [];
  readonly #queue: Pending[] = [];
  readonly #running = new Map<Worker, Pending>();
  #nextId = 0;
  #closed = false;
  /** Comparisons done, unknown users included (for tests and metrics). */
  completed = 0;

  constructor(options: PasswordPoolOptions) {
    this.#size = Math.max(1, options.workers ?? Math.min(4, Math.max(1, availableParallelism() - 1)));
    this.#maxQueue = options.maxQueue;
  }

  /** Comparisons queued or running. */
  get pending(): number {
    return this.#queue.length + this.#running.size;
  }

  /**
   * Whether `password` matches `hash`. `hash` undefined (unknown user) compares against a dummy hash
   * of the same `cost` and answers false: the same time is spent either way.
   */
  compare(password: string, hash: string | undefined, cost: number): Promise<boolean> {
    if (this.#closed) return Promise.reject(new RegistryError('UNAVAILABLE', 'shutting down'));
    if (this.#queue.length >= this.#maxQueue) {
      return Promise.reject(
        new RegistryError('UNAVAILABLE', 'too many password checks in progress; try again shortly', {
          retryAfter: 1,
        }),
      );
    }
    const { promise, resolve, reject } = Promise.withResolvers<boolean>();
    this.#queue.push({ id: this.#nextId++, password, hash, cost, resolve, reject });
    this.#pump();
    return promise;
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const job of this.#queue.splice(0)) job.reject(new RegistryError('UNAVAILABLE', 'shutting down'));
    await Promise.all(this.#workers.map((w) => w.terminate()));
  }

  #pump(): void {
    while (this.#queue.length > 0) {
      const worker = this.#idle.pop() ?? this.#spawn();
      if (worker === undefined) return;
      const job = this.#queue.shift();
      if (job === undefined) {
        this.#idle.push(worker);
        return;
      }
      this.#running.set(worker, job);
      worker.postMessage({ id: job.id, password: job.password, hash: job.hash, cost: job.cost });
    }
  }

  #spawn(): Worker | undefined {
    if (this.#workers.length >= this.#size) return undefined;
    const worker = new Worker(WORKER_URL);
    // Idle workers must not keep a process alive that is otherwise done.
    worker.unref();
    worker.on('message', (msg: { id: number; ok: boolean }) => {
      const job = this.#running.get(worker);
      this.#running.delete(worker);
      if (job?.id === msg.id) {
        this.completed++;
        job.resolve(msg.ok);
      }
      this.#idle.push(worker);
      this.#pump();
    });
    worker.on('error', (err) => {
      const job = this.#running.get(worker);
      this.#running.delete(worker);
      job?.reject(new RegistryError('UNKNOWN', 'password check failed', { cause: err }));
      this.#forget(worker);
    });
    worker.on('exit', () => this.#forget(worker));
    this.#workers.push(worker);
    return worker;
  }

  #forget(worker: Worker): void {
    const i = this.#workers.indexOf(worker);
    if (i >= 0) this.#workers.splice(i, 1);
    const j = this.#idle.indexOf(worker);
    if (j >= 0) this.#idle.splice(j, 1);
    const job = this.#running.get(worker);
    this.#running.delete(worker);
    job?.reject(new RegistryError('UNKNOWN', 'password check worker exited'));
    if (!this.#closed) this.#pump();
  }
}
