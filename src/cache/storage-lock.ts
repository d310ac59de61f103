/*
 * Who owns a storage directory. Every serving process registers one lock file under
 * `<dir>/owners/`:
 *
 *   <dir>/owners/exclusive.lock        the one owner of a directory in the default (exclusive) mode
 *   <dir>/owners/replica-<id>.lock     one per replica in the shared mode (`storage.shared: true`)
 *
 * The file holds `{pid, host, replica, mode, startedAt, nonce}` as JSON and is created, refreshed
 * (mtime heartbeat) and taken over as lock-file.ts describes: O_EXCL-style create by link(), rename
 * and mtime only, so that it holds on NFS, EFS and CephFS too.
 *
 * A process in the exclusive mode refuses to start while any other live lock exists; shared-mode
 * replicas accept each other but not an exclusive owner (both sides must declare the shared mode).
 */
import { hostname } from 'node:os';
import { mkdir, readdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { createLock, judgeLock, newNonce, readLock, takeOverLock, touchLock } from './lock-file.ts';
import type { Judged } from './lock-file.ts';
import type { Logger } from '../shared/index.ts';

export type StorageMode = 'exclusive' | 'shared';

/** What a lock file says about its owner. */
export interface LockOwner {
  pid: number;
  host: string;
  replica: string;
  mode: StorageMode;
  startedAt: string;
  nonce: string;
}

export interface StorageLockOptions {
  /** The storage directory (`storage.dir`). */
  dir: string;
  mode: StorageMode;
  /** Replica id; names the lock file in the shared mode. */
  replica: string;
  /** How often the owner refreshes the lock's mtime (default 5 s). */
  heartbeatMs?: number;
  /** A lock not refreshed for this long is stale (default 30 s). */
  staleMs?: number;
  /** Called once when the lock was taken from this process (renamed or deleted by someone else). */
  onLost?: (reason: string) => void;
  /** For tests: the host name and pid written and compared. */
  host?: string;
  pid?: number;
}

/** A storage directory already has a live owner this process may not share it with. */
export class StorageLockedError extends Error {
  readonly owner: LockOwner;
  readonly file: string;
  constructor(file: string, owner: LockOwner, mine: StorageMode) {
    const who = `pid ${owner.pid} on host ${owner.host}${owner.mode === 'shared' ? ` (replica ${owner.replica}, shared mode)` : ''}`;
    const hint =
      owner.mode === 'shared' && mine === 'shared'
        ? 'another live replica uses the same storage.replica id; give every replica its own'
        : mine === 'shared' || owner.mode === 'shared'
          ? 'every process on a shared directory must set storage.shared: true'
          : 'stop it, or give this process its own storage.dir (or set storage.shared: true on every process)';
    super(`storage directory is in use by ${who}, lock file ${file} (started ${owner.startedAt}): ${hint}`);
    this.name = 'StorageLockedError';
    this.owner = owner;
    this.file = file;
  }
}

const LOCK_SUFFIX = '.lock';

/** The lock file of one process on a storage directory; {@link acquire} it, {@link release} on close. */
export class StorageLock {
  readonly #dir: string;
  readonly #mode: StorageMode;
  readonly #replica: string;
  readonly #heartbeatMs: number;
  readonly #staleMs: number;
  readonly #host: string;
  readonly #pid: number;
  readonly #onLost: ((reason: string) => void) | undefined;
  readonly #owner: LockOwner;
  readonly file: string;
  #timer: NodeJS.Timeout | undefined;
  #held = false;
  #lost: string | undefined;

  constructor(options: StorageLockOptions) {
    this.#dir = join(options.dir, 'owners');
    this.#mode = options.mode;
    this.#replica = options.replica;
    this.#heartbeatMs = options.heartbeatMs ?? 5_000;
    this.#staleMs = options.staleMs ?? 30_000;
    this.#host = options.host ?? hostname();
    this.#pid = options.pid ?? process.pid;
    this.#onLost = options.onLost;
    this.file = join(
      this.#dir,
      (options.mode === 'exclusive' ? 'exclusive' : `replica-${options.replica}`) + LOCK_SUFFIX,
    );
    this.#owner = {
      pid: this.#pid,
      host: this.#host,
      replica: this.#replica,
      mode: this.#mode,
      startedAt: new Date().toISOString(),
      nonce: newNonce(),
    };
  }

  /** Why the lock was lost, once it was (the process should stop serving). */
  lost(): string | undefined {
    return this.#lost;
  }

  /** Take the lock, taking over a stale one; throws {@link StorageLockedError} naming a live owner. */
  async acquire(): Promise<void> {
    await mkdir(this.#dir, { recursive: true });
    for (let attempt = 0; ; attempt++) {
      if (await this.#create()) break;
      const other = await this.#judge(this.file);
      if (other === 'gone') continue;
      if (other.live) {
        if (other.owner !== undefined) throw new StorageLockedError(this.file, other.owner, this.#mode);
        throw new Error(
          `storage directory lock ${this.file} is held and unreadable; remove it if no process owns it`,
        );
      }
      if (attempt >= 5) throw new Error(`could not take over the stale storage lock ${this.file}`);
      await this.#takeOver(this.file, other.owner?.nonce);
    }
    this.#held = true;
    // The other kind of owner: an exclusive owner shares with nobody, a shared one only with shared.
    try {
      for (const name of await readdir(this.#dir)) {
        if (!name.endsWith(LOCK_SUFFIX)) continue;
        const path = join(this.#dir, name);
        if (path === this.file) continue;
        const other = await this.#judge(path);
        if (other === 'gone' || !other.live) continue;
        if (this.#mode === 'exclusive' || other.owner?.mode !== 'shared') {
          const owner = other.owner ?? { ...this.#owner, pid: 0, host: 'unknown', mode: 'exclusive' };
          throw new StorageLockedError(path, owner, this.#mode);
        }
      }
    } catch (err) {
      await this.release();
      throw err;
    }
    this.#timer = setInterval(() => void this.#beat(), this.#heartbeatMs);
    this.#timer.unref();
  }

  /** Stop the heartbeat and remove the lock file if it is still this process's. */
  async release(): Promise<void> {
    clearInterval(this.#timer);
    this.#timer = undefined;
    if (!this.#held) return;
    this.#held = false;
    if (await this.#stillMine()) await unlink(this.file).catch(() => undefined);
  }

  #create(): Promise<boolean> {
    return createLock(this.file, this.#owner);
  }

  #judge(path: string): Promise<'gone' | Judged<LockOwner>> {
    return judgeLock<LockOwner>(path, this.#staleMs, { host: this.#host, nonce: this.#owner.nonce });
  }

  async #takeOver(path: string, staleNonce: string | undefined): Promise<void> {
    await takeOverLock(path, staleNonce);
  }

  async #stillMine(): Promise<boolean> {
    return (await readLock<LockOwner>(this.file))?.nonce === this.#owner.nonce;
  }

  async #beat(): Promise<void> {
    if (!this.#held || this.#lost !== undefined) return;
    let mine: boolean;
    try {
      mine = await this.#stillMine();
      if (mine) {
        await touchLock(this.file);
        return;
      }
    } catch {
      // A passing I/O error: the next beat tries again. Should the lock go stale meanwhile and be
      // taken over, that beat finds it is no longer this process's.
      return;
    }
    this.#lost = `the storage lock ${this.file} was removed or taken over by another process`;
    clearInterval(this.#timer);
    this.#onLost?.(this.#lost);
  }
}

/**
 * The owner lock of a `storage` section (one owner, or replicas that all declared `shared`; the
 * replica id defaults to the host name), taken before anything touches the directory. Its loss is
 * logged and reported by `lost()`, which readiness checks: not ready until restarted.
 */
export async function acquireStorageLock(
  storage: { dir: string; shared: boolean; replica?: string | undefined },
  log: Logger,
): Promise<{ lock: StorageLock; lost: () => string | undefined }> {
  let lost: string | undefined;
  const lock = new StorageLock({
    dir: storage.dir,
    mode: storage.shared ? 'shared' : 'exclusive',
    replica: storage.replica ?? hostname(),
    onLost: (reason) => {
      lost = reason;
      log.error({ dir: storage.dir }, `${reason}; not ready until restarted`);
    },
  });
  await lock.acquire();
  return { lock, lost: () => lost };
}
