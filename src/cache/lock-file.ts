/*
 * Lock files that hold on a shared volume (NFS v3/v4, EFS, CephFS) as well as on a local disk. They
 * rely only on operations the file server carries out atomically — never on flock/fcntl locks, which
 * NFS does not honour reliably:
 *
 * - exclusive create: the content goes to a private temp file, which is then `link()`ed to the lock
 *   name; link fails with EEXIST when the name exists, and the lock is never seen half-written;
 * - heartbeat: the holder sets the lock's mtime every so often; one not refreshed for `staleMs` is
 *   stale (replicas' clocks must agree to well within it: NTP). On the holder's own host a lock whose
 *   pid no longer runs is stale at once;
 * - take-over: a stale lock is renamed aside (of several takers only one wins the rename), checked to
 *   be the lock that was judged stale (else put back), and then removed.
 */
import { randomBytes } from 'node:crypto';
import { link, open, readFile, rename, stat, unlink, utimes } from 'node:fs/promises';

/** Fields every lock file carries. */
export interface LockBase {
  pid: number;
  host: string;
  nonce: string;
}

export function isCode(err: unknown, code: string): boolean {
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

export function newNonce(): string {
  return randomBytes(12).toString('hex');
}

/** The lock's content when it has the fields every lock carries (the rest is the writer's own). */
function parse(text: string): LockBase | undefined {
  try {
    const v = JSON.parse(text) as Partial<LockBase>;
    if (typeof v.pid === 'number' && typeof v.host === 'string' && typeof v.nonce === 'string') {
      return v as LockBase;
    }
  } catch {
    // judged by its mtime alone
  }
  return undefined;
}

async function writeSynced(path: string, content: string): Promise<void> {
  const fh = await open(path, 'wx');
  try {
    await fh.writeFile(content);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Create `path` holding `content` unless it exists (false then). */
export async function createLock(path: string, content: LockBase): Promise<boolean> {
  const tmp = `${path}.${content.nonce}.${randomBytes(4).toString('hex')}.tmp`;
  await writeSynced(tmp, JSON.stringify(content));
  try {
    await link(tmp, path);
    return true;
  } catch (err) {
    if (isCode(err, 'EEXIST')) return false;
    throw err;
  } finally {
    await unlink(tmp).catch(() => undefined);
  }
}

/** Replace the content of a lock this process holds (atomic rename over it). */
export async function rewriteLock(path: string, content: LockBase): Promise<void> {
  const tmp = `${path}.${content.nonce}.${randomBytes(4).toString('hex')}.tmp`;
  await writeSynced(tmp, JSON.stringify(content));
  await rename(tmp, path);
}

export interface Judged<T extends LockBase> {
  live: boolean;
  owner: T | undefined;
}

/** Read and judge the lock at `path`: 'gone', or whether its holder is alive. */
export async function judgeLock<T extends LockBase>(
  path: string,
  staleMs: number,
  self: { host: string; nonce?: string },
): Promise<'gone' | Judged<T>> {
  let text: string;
  let mtimeMs: number;
  try {
    text = await readFile(path, 'utf8');
    mtimeMs = (await stat(path)).mtimeMs;
  } catch (err) {
    if (isCode(err, 'ENOENT')) return 'gone';
    throw err;
  }
  const owner = parse(text) as T | undefined;
  const fresh = Date.now() - mtimeMs < staleMs;
  if (owner === undefined) return { live: fresh, owner };
  // On this host the pid says it at once; elsewhere only the heartbeat can.
  const live = owner.host === self.host ? fresh && pidAlive(owner.pid) && owner.nonce !== self.nonce : fresh;
  return { live, owner };
}

/** The content of a lock, or undefined when it is gone or unreadable. */
export async function readLock<T extends LockBase>(path: string): Promise<T | undefined> {
  const text = await readFile(path, 'utf8').catch((err: unknown) => {
    if (isCode(err, 'ENOENT')) return '';
    throw err;
  });
  return parse(text) as T | undefined;
}

/**
 * Remove a stale lock; if, between judging and renaming, it became another holder's (nonce differs
 * from `staleNonce`), put it back. Resolves with the content removed (undefined if none was).
 */
export async function takeOverLock<T extends LockBase>(
  path: string,
  staleNonce: string | undefined,
): Promise<T | undefined> {
  const aside = `${path}.stale-${randomBytes(6).toString('hex')}`;
  try {
    await rename(path, aside);
  } catch (err) {
    if (isCode(err, 'ENOENT')) return undefined; // another process took it over first
    throw err;
  }
  const moved = parse(await readFile(aside, 'utf8').catch(() => '')) as T | undefined;
  if (staleNonce !== undefined && moved !== undefined && moved.nonce !== staleNonce) {
    // A fresh lock a faster taker had just created: restore it (unless yet another exists by now).
    await link(aside, path).catch(() => undefined);
    await unlink(aside).catch(() => undefined);
    return undefined;
  }
  await unlink(aside).catch(() => undefined);
  return moved;
}

/** Refresh the heartbeat (mtime) of a lock. */
export async function touchLock(path: string): Promise<void> {
  const now = new Date();
  await utimes(path, now, now);
}
