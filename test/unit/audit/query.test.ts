import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JsonlAuditSink, parseTimeBound, queryAuditDir, repositoryGlob } from '../../../src/audit/index.ts';
import type { AuditEvent, AuditQuery, AuditQueryOptions } from '../../../src/audit/index.ts';
import { event, tempDir } from './helpers.ts';

const D = (c: string) => `sha256:${c.repeat(64)}`;
let dir: string;
let cleanup: () => Promise<void>;
const events: AuditEvent[] = [];

beforeAll(async () => {
  ({ dir, cleanup } = await tempDir());
  const upstreams = ['docker.io', 'ghcr.io', 'quay.io'];
  const repos = ['library/nginx', 'acme/app', 'acme/team/api', 'library/redis'];
  const decisions = ['allow', 'deny', 'warn'] as const;
  const start = Date.parse('2025-11-20T00:00:00Z');
  let clock = new Date(start);
  // Small files: the query crosses many of them.
  const sink = await JsonlAuditSink.open({ dir, maxFileBytes: 8192, now: () => clock });
  for (let i = 0; i < 300; i++) {
    const time = new Date(start + i * 15 * 60_000); // every 15 minutes: 75 hours in all
    clock = time;
    const tagged = i % 4 !== 3;
    const e = event({
      type: i % 10 === 9 ? 'blob' : 'manifest',
      time: time.toISOString(),
      requestId: `r${i}`,
      client: `10.0.0.${i % 5}`,
      identity: i % 7 === 0 ? 'node-a' : undefined,
      upstream: upstreams[i % 3]!,
      repository: repos[i % 4]!,
      reference: tagged ? `v${i % 6}` : D('0123456789abcdef'[i % 16]!),
      tag: tagged ? `v${i % 6}` : undefined,
      digest: D('0123456789abcdef'[i % 16]!),
      decision: decisions[i % 3],
      policy: i % 2 ? 'signed' : 'default',
      status: i % 3 === 1 ? 403 : 200,
    });
    events.push(e);
    await sink.append(e);
  }
  await sink.close();
});
afterAll(async () => {
  await cleanup();
});

async function ids(q: AuditQuery, o?: AuditQueryOptions): Promise<string[]> {
  const out: string[] = [];
  for await (const r of queryAuditDir(dir, q, o)) out.push(r.requestId);
  return out;
}
const expected = (pred: (e: AuditEvent) => boolean) => events.filter(pred).map((e) => e.requestId);

describe('queryAuditDir', () => {
  it('returns everything, oldest first, without filters', async () => {
    expect(await ids({})).toEqual(events.map((e) => e.requestId));
  });

  it.each<[string, AuditQuery, (e: AuditEvent) => boolean]>([
    ['upstream', { upstream: 'ghcr.io' }, (e) => e.upstream === 'ghcr.io'],
    ['repository glob, one component', { repository: 'acme/*' }, (e) => e.repository === 'acme/app'],
    [
      'repository glob, across components',
      { repository: 'acme/**' },
      (e) => e.repository.startsWith('acme/'),
    ],
    [
      'repository glob with the upstream',
      { repository: 'docker.io/library/*' },
      (e) => e.upstream === 'docker.io' && e.repository.startsWith('library/'),
    ],
    [
      'digest (resolved or asked for)',
      { digest: D('3') },
      (e) => e.digest === D('3') || e.reference === D('3'),
    ],
    ['tag', { tag: 'v2' }, (e) => e.tag === 'v2'],
    ['decision', { decision: 'deny' }, (e) => e.decision === 'deny'],
    ['policy', { policy: 'signed' }, (e) => e.policy === 'signed'],
    ['client address', { client: '10.0.0.3' }, (e) => e.client === '10.0.0.3'],
    ['client identity', { client: 'node-a' }, (e) => e.identity === 'node-a'],
    ['type', { type: 'blob' }, (e) => e.type === 'blob'],
    [
      'since and until',
      { since: new Date('2025-11-21T06:00:00Z'), until: new Date('2025-11-21T12:00:00Z') },
      (e) => e.time >= '2025-11-21T06:00:00.000Z' && e.time < '2025-11-21T12:00:00.000Z',
    ],
    [
      'several filters at once',
      {
        upstream: 'docker.io',
        decision: 'allow',
        policy: 'default',
        since: new Date('2025-11-21T00:00:00Z'),
      },
      (e) =>
        e.upstream === 'docker.io' &&
        e.decision === 'allow' &&
        e.policy === 'default' &&
        e.time >= '2025-11-21T00:00:00.000Z',
    ],
  ])('filters by %s', async (_, q, pred) => {
    const want = expected(pred);
    expect(want.length).toBeGreaterThan(0);
    expect(await ids(q)).toEqual(want);
  });

  it('returns nothing for a value that only appears in another member', async () => {
    expect(await ids({ tag: 'library/nginx' })).toEqual([]);
    expect(await ids({ policy: 'allow' })).toEqual([]);
  });

  it('returns the newest N, newest first, across files', async () => {
    const deny = expected((e) => e.decision === 'deny');
    expect(await ids({ decision: 'deny' }, { newestFirst: true, limit: 7 })).toEqual(
      deny.slice(-7).reverse(),
    );
    expect(await ids({}, { newestFirst: true, limit: 50 })).toEqual(
      events
        .slice(-50)
        .map((e) => e.requestId)
        .reverse(),
    );
  });

  it('returns the oldest N with a limit', async () => {
    expect(await ids({ tag: 'v1' }, { limit: 3 })).toEqual(expected((e) => e.tag === 'v1').slice(0, 3));
  });
});

describe('parseTimeBound', () => {
  const now = new Date('2025-11-23T12:00:00Z');
  it('takes a duration before now, an ISO date or an ISO date-time', () => {
    expect(parseTimeBound('24h', now)?.toISOString()).toBe('2025-11-22T12:00:00.000Z');
    expect(parseTimeBound('30m', now)?.toISOString()).toBe('2025-11-23T11:30:00.000Z');
    expect(parseTimeBound('2025-11-01', now)?.toISOString()).toBe('2025-11-01T00:00:00.000Z');
    expect(parseTimeBound('2025-11-01T10:00:00+01:00', now)?.toISOString()).toBe('2025-11-01T09:00:00.000Z');
  });
  it('rejects anything else', () => {
    expect(parseTimeBound('yesterday', now)).toBeUndefined();
    expect(parseTimeBound('24', now)).toBeUndefined();
    expect(parseTimeBound('2025-13-45', now)).toBeUndefined();
  });
});

describe('repositoryGlob', () => {
  it('keeps * within a path component and lets ** cross them', () => {
    expect(repositoryGlob('library/*').test('library/nginx')).toBe(true);
    expect(repositoryGlob('library/*').test('library/a/b')).toBe(false);
    expect(repositoryGlob('acme/**').test('acme/a/b')).toBe(true);
    expect(repositoryGlob('ngin?').test('nginx')).toBe(true);
    expect(repositoryGlob('a.b').test('axb')).toBe(false);
  });
});
