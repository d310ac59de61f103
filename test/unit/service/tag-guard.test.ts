/**
 * TagGuard through its public methods (observe, enforce, pins) on the real metadata store, and tag
 * drift through RegistryService with the counting upstream: moves are seen and reported once, and
 * each policy tag rule serves, holds back or refuses what the tag points at.
 */
import { describe, expect, it } from 'vitest';
import { errorStatus } from '../../../src/oci/index.ts';
import type { Digest } from '../../../src/oci/index.ts';
import type { TagRecord } from '../../../src/metadata/index.ts';
import type { PoliciesInput } from '../../../src/policy/index.ts';
import { ACCEPT_ALL, HOST, ref, rejection, worldPerTest } from './helpers.ts';

const newWorld = worldPerTest();

let n = 0;
const digest = (): Digest => `sha256:${(++n).toString(16).padStart(64, '0')}` as Digest;
const record = (d: Digest, checkedAt = 0): TagRecord => ({
  digest: d,
  mediaType: 'application/vnd.oci.image.manifest.v1+json',
  size: 100,
  checkedAt,
});

const rules = (tags: Record<string, unknown>): PoliciesInput => [
  { name: 'tagged', match: ['**'], action: 'allow', tags },
];

async function start(tags: Record<string, unknown> = {}) {
  const w = await newWorld();
  const policy = w.engine(rules(tags)).match(HOST, 'acme/app');
  const enforce = (tag: string, r: TagRecord) => w.tags.enforce(policy, HOST, 'acme/app', tag, r);
  const observe = (tag: string, r: TagRecord) => w.tags.observe(HOST, 'acme/app', tag, r);
  return { w, enforce, observe };
}

describe('TagGuard history and moves', () => {
  it('records each digest a tag points at and reports a move once, with from and to', async () => {
    const { w, observe } = await start();
    const [a, b] = [digest(), digest()];
    await observe('v1', record(a));
    await observe('v1', record(a));
    expect(w.moves).toEqual([]);
    w.clock.t += 1_000;
    await observe('v1', record(b));
    expect(w.moves).toEqual([{ upstream: HOST, repository: 'acme/app', tag: 'v1', from: a, to: b }]);
    const history = await w.tags.history(HOST, 'acme/app', 'v1');
    expect(history.map((h) => h.digest)).toEqual([a, b]);
    expect(history[1]!.firstSeen - history[0]!.firstSeen).toBe(1_000);
  });

  it('keeps the first sighting of a digest a tag moves back to', async () => {
    const { w, observe } = await start();
    const [a, b] = [digest(), digest()];
    await observe('v1', record(a));
    const firstSeen = w.clock.t;
    w.clock.t += 1_000;
    await observe('v1', record(b));
    w.clock.t += 1_000;
    await observe('v1', record(a));
    const history = await w.tags.history(HOST, 'acme/app', 'v1');
    expect(history.at(-1)).toMatchObject({ digest: a, firstSeen });
    expect(w.moves.map((m) => [m.from, m.to])).toEqual([
      [a, b],
      [b, a],
    ]);
  });

  it('sees a move upstream through the service: one report, at the next resolution after the TTL', async () => {
    const w = await newWorld({ tagTTL: 1_000 });
    const first = w.upstream.image('acme/app', 'v1');
    const target = w.target('acme/app');
    await w.service.resolveManifest(target, ref('v1'), { accept: ACCEPT_ALL, withBody: false });
    const second = w.upstream.image('acme/app', 'v1');
    // Within the TTL the cached answer stands: no upstream request, no move.
    await w.service.resolveManifest(target, ref('v1'), { accept: ACCEPT_ALL, withBody: false });
    expect(w.moves).toEqual([]);
    w.clock.t += 1_001;
    const moved = await w.service.resolveManifest(target, ref('v1'), { accept: ACCEPT_ALL, withBody: false });
    expect(moved.digest).toBe(second.digest);
    expect(w.moves).toEqual([
      { upstream: HOST, repository: 'acme/app', tag: 'v1', from: first.digest, to: second.digest },
    ]);
    expect(w.upstream.count('headManifest', 'v1')).toBe(2);
  });
});

describe('TagGuard rules', () => {
  it('refuses banned tags by glob with DENIED tag-denied, and serves others', async () => {
    const { enforce } = await start({ deny: ['latest', '*-rc*'] });
    for (const tag of ['latest', '1.0-rc1', '2-rc']) {
      const err = await rejection(enforce(tag, record(digest())));
      expect(err.code).toBe('DENIED');
      expect(errorStatus[err.code]).toBe(403);
      expect(err.detail).toMatchObject({ policy: 'tagged', reason: 'tag-denied', tag });
    }
    for (const tag of ['1.0', 'latest-but-not', 'rc1']) {
      const r = record(digest());
      expect(await enforce(tag, r)).toEqual(r);
    }
  });

  it('onMove deny: pins the first digest, refuses a move naming both digests, and serves it once pinned', async () => {
    const { w, enforce } = await start({ onMove: 'deny' });
    const [a, b] = [digest(), digest()];
    expect((await enforce('v1', record(a))).digest).toBe(a);
    expect(await w.tags.pin(HOST, 'acme/app', 'v1')).toMatchObject({ digest: a, by: 'first-seen' });
    const err = await rejection(enforce('v1', record(b)));
    expect(err.code).toBe('DENIED');
    expect(err.detail).toMatchObject({
      policy: 'tagged',
      reason: 'tag-moved',
      tag: 'v1',
      pinned: a,
      digest: b,
    });
    expect(err.message).toContain(`pullwarden tags pin ${HOST}/acme/app:v1 ${b}`);
    await w.tags.setPin(HOST, 'acme/app', 'v1', b);
    expect(await w.tags.pin(HOST, 'acme/app', 'v1')).toMatchObject({ digest: b, by: 'operator' });
    expect((await enforce('v1', record(b))).digest).toBe(b);
  });

  it('immutable: keeps serving the pinned digest after the tag moves upstream; unpin pins afresh', async () => {
    const { w, enforce, observe } = await start({ immutable: true });
    const [a, b] = [digest(), digest()];
    await observe('v1', record(a));
    expect((await enforce('v1', record(a))).digest).toBe(a);
    await observe('v1', record(b, 5));
    const served = await enforce('v1', record(b, 5));
    expect(served).toEqual({ ...record(a), checkedAt: 5 });
    await w.tags.unpin(HOST, 'acme/app', 'v1');
    expect((await enforce('v1', record(b))).digest).toBe(b);
    expect(await w.tags.pin(HOST, 'acme/app', 'v1')).toMatchObject({ digest: b, by: 'first-seen' });
  });

  it('minAge: holds a new digest back, serving the older aged one, until it is old enough', async () => {
    const { w, enforce, observe } = await start({ minAge: '1h' });
    const [a, b] = [digest(), digest()];
    await observe('v1', record(a));
    // A digest seen for the first time, with nothing older: refused, saying how long it waits.
    const young = await rejection(enforce('v1', record(a)));
    expect(young.detail).toMatchObject({ reason: 'tag-cooldown', digest: a, minAgeMs: 3_600_000 });
    w.clock.t += 3_600_000;
    expect((await enforce('v1', record(a))).digest).toBe(a);
    await observe('v1', record(b));
    // The tag moved: the previous, aged digest is served meanwhile.
    expect((await enforce('v1', record(b))).digest).toBe(a);
    w.clock.t += 3_600_000;
    expect((await enforce('v1', record(b))).digest).toBe(b);
  });

  it('applies no rule for a policy without tag rules', async () => {
    const w = await newWorld();
    const policy = w.engine([{ name: 'plain', match: ['**'], action: 'allow' }]).match(HOST, 'acme/app');
    const r = record(digest());
    expect(await w.tags.enforce(policy, HOST, 'acme/app', 'latest', r)).toEqual(r);
    expect(await w.tags.pin(HOST, 'acme/app', 'latest')).toBeUndefined();
  });
});
