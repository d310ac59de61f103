/*
 * Who owns a storage directory. Every serving process registers one lock file under
 * `<dir>/owners/`:
 *
 *   <dir>/owners/exclusive.lock        the one owner of a directory in the default (exclusive) mode
 *   <dir>/owners/replica-<id>.lock     one per replica in the shared mode (`storage.shared: true`)
 *
 * The file holds `{pid, host, replica, mode, startedAt, nonce}` as JSON. It relies on operations that
 * NFS (v3 and v4), EFS and CephFS carry out atomically on the server, and on nothing else — not on
 * `flock`/`fcntl` locks, which NFS does not honour reliably:
 *
 * - create: the content is written to a private temp file, then `link()`ed to the lock name, which
 *   fails with EEXIST when the name exists (the classic NFS-safe exclusive create; the file is never
 *   seen half-written);
 * - heartbeat: the owner sets the file's mtime every `heartbeatMs`; a lock whose mtime is older than
 *   `staleMs` belongs to a dead (or frozen) process, so clocks of replicas must agree (NTP) to well
 *   within `staleMs`. On the same host a lock whose pid no longer runs is stale at once;
 * - take-over: a stale lock is renamed away (only one of several takers wins the rename), checked to be
 *   the one judged stale, and replaced by a new exclusive create.
 *
 * A process in the exclusive mode refuses to start while any other live lock exists; shared-mode
 * replicas accept each other but not an exclusive owner (both sides must declare the shared mode).
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { link, mkdir, open, readdir, readFile, rename, stat, unlink, utimes } from 'node:fs/promises';
import { join } from 'node:path';

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

function isCode(err: unknown, code: string): boolean {
  return err instanceof Error && (err as NodeJS.ErrnoException).code === code;
}

/** Whether a process with this pid runs on this host (EPERM: it runs, as another user). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return isCode(err, 'EPERM');
  }
}

function parseOwner(text: string): LockOwner | undefined {
  try {
    const v = JSON.parse(text) as Partial<LockOwner>;
    if (
      typeof v.pid === 'number' &&
      typeof v.host === 'string' &&
      typeof v.replica === 'string' &&
      (v.mode === 'exclusive' || v.mode === 'shared') &&
      typeof v.nonce === 'string'
    ) {
      return {
        pid: v.pid,
        host: v.host,
        replica: v.replica,
        mode: v.mode,
        startedAt: String(v.startedAt),
        nonce: v.nonce,
      };
    }
  } catch {
    // an unreadable lock is judged by its mtime alone
  }
  return undefined;
}

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
      nonce: randomBytes(12).toString('hex'),
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

  async #create(): Promise<boolean> {
    const tmp = `${this.file}.${this.#owner.nonce}.tmp`;
    const fh = await open(tmp, 'wx');
    try {
      await fh.writeFile(JSON.stringify(this.#owner));
      await fh.sync();
    } finally {
      await fh.close();
    }
    try {
      await link(tmp, this.file);
      return true;
    } catch (err) {
      if (isCode(err, 'EEXIST')) return false;
      throw err;
    } finally {
      await unlink(tmp).catch(() => undefined);
    }
  }

  /** Is the lock at `path` held by a live process? */
  async #judge(path: string): Promise<'gone' | { live: boolean; owner: LockOwner | undefined }> {
    let text: string;
    let mtimeMs: number;
    try {
      text = await readFile(path, 'utf8');
      mtimeMs = (await stat(path)).mtimeMs;
    } catch (err) {
      if (isCode(err, 'ENOENT')) return 'gone';
      throw err;
    }
    const owner = parseOwner(text);
    const fresh = Date.now() - mtimeMs < this.#staleMs;
    if (owner === undefined) return { live: fresh, owner };
    // On this host the pid says it at once; elsewhere only the heartbeat can.
    const live =
      owner.host === this.#host ? fresh && pidAlive(owner.pid) && owner.nonce !== this.#owner.nonce : fresh;
    return { live, owner };
  }

  /** Move a stale lock aside; put it back if, between judging and renaming, it became another's. */
  async #takeOver(path: string, staleNonce: string | undefined): Promise<void> {
    const aside = `${path}.stale-${randomBytes(6).toString('hex')}`;
    try {
      await rename(path, aside);
    } catch (err) {
      if (isCode(err, 'ENOENT')) return; // another process took it over first
      throw err;
    }
    const moved = parseOwner(await readFile(aside, 'utf8').catch(() => ''));
    if (staleNonce !== undefined && moved !== undefined && moved.nonce !== staleNonce) {
      // A fresh lock that a faster taker had just created: restore it (unless yet another exists).
      await link(aside, path).catch(() => undefined);
    }
    await unlink(aside).catch(() => undefined);
  }

  async #stillMine(): Promise<boolean> {
    const text = await readFile(this.file, 'utf8').catch((err: unknown) => {
      if (isCode(err, 'ENOENT')) return '';
      throw err;
    });
    return parseOwner(text)?.nonce === this.#owner.nonce;
  }

  async #beat(): Promise<void> {
    if (!this.#held || this.#lost !== undefined) return;
    let mine: boolean;
    try {
      mine = await this.#stillMine();
      if (mine) {
        const now = new Date();
        await utimes(this.file, now, now);
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
