import { mkdtemp, readFile, rm, utimes, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { StorageLock, StorageLockedError } from '../../../src/cache/index.ts';

let dir: string | undefined;
const locks: StorageLock[] = [];
afterEach(async () => {
  for (const l of locks.splice(0)) await l.release();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

function lock(options: Partial<ConstructorParameters<typeof StorageLock>[0]> = {}): StorageLock {
  const l = new StorageLock({ dir: dir!, mode: 'exclusive', replica: 'r', ...options });
  locks.push(l);
  return l;
}

async function writeOwner(name: string, owner: Record<string, unknown>, ageMs: number): Promise<string> {
  await mkdir(join(dir!, 'owners'), { recursive: true });
  const path = join(dir!, 'owners', name);
  await writeFile(path, JSON.stringify(owner));
  const t = new Date(Date.now() - ageMs);
  await utimes(path, t, t);
  return path;
}

describe('StorageLock', () => {
  it('refuses while another host heartbeats its lock, and takes it over once the heartbeat stopped', async () => {
    dir = await mkdtemp(join(tmpdir(), 'pw-lock-'));
    const owner = {
      pid: 1,
      host: 'elsewhere',
      replica: 'x',
      mode: 'exclusive',
      startedAt: 'then',
      nonce: 'n1',
    };
    const path = await writeOwner('exclusive.lock', owner, 1_000);
    const err = await lock({ staleMs: 30_000 })
      .acquire()
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StorageLockedError);
    expect((err as Error).message).toContain('pid 1 on host elsewhere');

    const t = new Date(Date.now() - 60_000);
    await utimes(path, t, t);
    const taker = lock({ staleMs: 30_000 });
    await taker.acquire();
    expect(JSON.parse(await readFile(path, 'utf8'))).toMatchObject({ pid: process.pid });
  });

  it('lets exactly one of several concurrent takers own a stale lock', async () => {
    dir = await mkdtemp(join(tmpdir(), 'pw-lock-'));
    const stale = {
      pid: 1,
      host: 'elsewhere',
      replica: 'x',
      mode: 'exclusive',
      startedAt: 'then',
      nonce: 'old',
    };
    await writeOwner('exclusive.lock', stale, 120_000);
    const takers = Array.from({ length: 8 }, (_, i) => lock({ host: `h${i}`, pid: 1000 + i }));
    const results = await Promise.allSettled(takers.map((t) => t.acquire()));
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    for (const r of results) {
      if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(StorageLockedError);
    }
  });

  it('reports the lock lost when another process removed it', async () => {
    dir = await mkdtemp(join(tmpdir(), 'pw-lock-'));
    const reasons: string[] = [];
    const l = lock({ heartbeatMs: 20, onLost: (r) => reasons.push(r) });
    await l.acquire();
    await rm(l.file);
    await new Promise((r) => setTimeout(r, 100));
    expect(l.lost()).toContain('removed or taken over');
    expect(reasons).toHaveLength(1);
  });

  it('lets shared replicas with distinct ids share, but not one id twice', async () => {
    dir = await mkdtemp(join(tmpdir(), 'pw-lock-'));
    await lock({ mode: 'shared', replica: 'a', host: 'h1' }).acquire();
    await lock({ mode: 'shared', replica: 'b', host: 'h2' }).acquire();
    const dup = await lock({ mode: 'shared', replica: 'b', host: 'h3' })
      .acquire()
      .catch((e: unknown) => e);
    expect((dup as Error).message).toContain('uses the same storage.replica id');
    const excl = await lock({ host: 'h4' })
      .acquire()
      .catch((e: unknown) => e);
    expect((excl as Error).message).toContain('must set storage.shared: true');
  });
});
