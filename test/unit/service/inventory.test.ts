import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { JsonlAuditSink } from '../../../src/audit/index.ts';
import type { Digest } from '../../../src/oci/index.ts';
import { buildInventory } from '../../../src/service/index.ts';
import { event, tempDir } from '../audit/helpers.ts';
import { runCli } from '../../support/cli.ts';

const sha = (b: Buffer): Digest => `sha256:${createHash('sha256').update(b).digest('hex')}` as Digest;
const MT = 'application/vnd.oci.image.manifest.v1+json';

let dir: string;
let cleanup: () => Promise<void>;
const blobs = new Map<string, Buffer>();
let d1: Digest;
let d2: Digest;
const readBlob = (digest: Digest) => Promise.resolve(blobs.get(digest));

/** A cached manifest whose config says `created`. */
function image(created: string): Digest {
  const config = Buffer.from(JSON.stringify({ created, os: 'linux', architecture: 'amd64' }));
  blobs.set(sha(config), config);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MT,
      config: {
        mediaType: 'application/vnd.oci.image.config.v1+json',
        digest: sha(config),
        size: config.length,
      },
      layers: [],
    }),
  );
  blobs.set(sha(manifest), manifest);
  return sha(manifest);
}

beforeEach(async () => {
  ({ dir, cleanup } = await tempDir('pw-inventory-'));
  d1 = image('2025-01-01T00:00:00Z');
  d2 = image('2026-02-20T00:00:00Z');
  const sink = await JsonlAuditSink.open({ dir });
  const base = {
    upstream: 'docker.io',
    repository: 'library/nginx',
    reference: '1.27',
    tag: '1.27',
    mediaType: MT,
  };
  await sink.append(event({ ...base, time: '2026-03-01T10:00:00.000Z', client: '10.0.0.1', digest: d1 }));
  await sink.append(
    event({ ...base, time: '2026-03-01T11:00:00.000Z', client: '10.0.0.2', digest: d1, identity: 'robot' }),
  );
  await sink.append(
    event({
      type: 'tag-moved',
      ...base,
      time: '2026-03-01T11:30:00.000Z',
      old: d1,
      new: d2,
      digest: d2,
      decision: undefined,
    }),
  );
  await sink.append(
    event({
      ...base,
      time: '2026-03-01T12:00:00.000Z',
      client: '10.0.0.1',
      digest: d2,
      signers: [
        {
          kind: 'keyless',
          issuer: 'https://token.actions.githubusercontent.com',
          subject: 'repo:acme/nginx',
        },
      ],
      policy: 'signed',
    }),
  );
  await sink.append(
    event({
      upstream: 'ghcr.io',
      repository: 'acme/secret',
      reference: 'v1',
      tag: 'v1',
      time: '2026-03-01T12:30:00.000Z',
      decision: 'deny',
      policy: 'no-secret',
      reasons: ['denied by policy "no-secret"'],
      status: 403,
      digest: undefined,
      mediaType: undefined,
    }),
  );
  await sink.close();
});
afterEach(async () => {
  await cleanup();
});

const now = new Date('2026-03-01T13:00:00Z');

describe('buildInventory', () => {
  it('answers per tag: digests, pulls, clients, decision, signers, age and moves', async () => {
    const inv = await buildInventory({ auditDir: dir, readBlob }, { now });
    expect(inv.entries).toHaveLength(2);
    const [nginx, secret] = inv.entries;
    expect(nginx).toMatchObject({
      upstream: 'docker.io',
      repository: 'library/nginx',
      tag: '1.27',
      digest: d2,
      digests: [d1, d2],
      pulls: 3,
      clients: 2,
      identities: 1,
      firstPull: '2026-03-01T10:00:00.000Z',
      lastPull: '2026-03-01T12:00:00.000Z',
      decision: 'allow',
      policy: 'signed',
      signers: ['https://token.actions.githubusercontent.com repo:acme/nginx'],
      created: '2026-02-20T00:00:00Z',
      moves: [{ time: '2026-03-01T11:30:00.000Z', old: d1, new: d2 }],
      denials: 0,
    });
    expect(secret).toMatchObject({
      repository: 'acme/secret',
      decision: 'deny',
      policy: 'no-secret',
      denials: 1,
    });
    expect(inv.denials).toEqual([
      expect.objectContaining({ repository: 'acme/secret', reasons: ['denied by policy "no-secret"'] }),
    ]);
    expect(inv.moves).toHaveLength(1);
    expect(inv.series.reduce((a, s) => a + s.pulls, 0)).toBe(4);
    expect(inv.series.reduce((a, s) => a + s.denials, 0)).toBe(1);
  });

  it('filters: denied, unsigned, older-than, repository, since', async () => {
    const names = async (o: Parameters<typeof buildInventory>[1]) =>
      (await buildInventory({ auditDir: dir, readBlob }, { now, ...o })).entries.map((e) => e.repository);
    expect(await names({ denied: true })).toEqual(['acme/secret']);
    expect(await names({ unsigned: true })).toEqual(['acme/secret']);
    // nginx:1.27 is now d2, created 9 days ago; d1 (2025) is no longer what the tag points at.
    expect(await names({ olderThanMs: 7 * 86_400_000 })).toEqual(['library/nginx']);
    expect(await names({ olderThanMs: 30 * 86_400_000 })).toEqual([]);
    expect(await names({ repository: 'library/*' })).toEqual(['library/nginx']);
    const since = await buildInventory(
      { auditDir: dir, readBlob },
      { now, since: new Date('2026-03-01T11:45:00Z') },
    );
    expect(since.entries.find((e) => e.repository === 'library/nginx')).toMatchObject({
      pulls: 1,
      clients: 1,
    });
  });

  it('lists refusals of tag lists and unknown upstreams among the denials, not as pulled tags', async () => {
    const sink = await JsonlAuditSink.open({ dir });
    await sink.append(
      event({
        type: 'tags',
        upstream: 'evil.example.com',
        repository: 'x/y',
        reference: '',
        tag: undefined,
        digest: undefined,
        time: '2026-03-01T12:45:00.000Z',
        decision: 'deny',
        reasons: ['upstream "evil.example.com" is not configured'],
        status: 403,
      }),
    );
    await sink.close();
    const inv = await buildInventory({ auditDir: dir, readBlob }, { now });
    expect(inv.denials[0]).toMatchObject({
      upstream: 'evil.example.com',
      reasons: ['upstream "evil.example.com" is not configured'],
    });
    expect(inv.entries.map((e) => e.upstream)).not.toContain('evil.example.com');
  });

  it('merges the chains of replicas on a shared storage directory by time', async () => {
    const { auditChainDirs } = await import('../../../src/audit/index.ts');
    const base = { upstream: 'docker.io', repository: 'acme/web', reference: 'v2', tag: 'v2', mediaType: MT };
    // Replica "a" saw the newer pull (d2) but its chain is read first.
    const a = await JsonlAuditSink.open({ dir: join(dir, 'shared', 'a') });
    await a.append(
      event({ ...base, time: '2026-03-01T12:50:00.000Z', client: '10.1.0.1', digest: d2, policy: 'new' }),
    );
    await a.close();
    const b = await JsonlAuditSink.open({ dir: join(dir, 'shared', 'b') });
    await b.append(
      event({ ...base, time: '2026-03-01T09:00:00.000Z', client: '10.2.0.1', digest: d1, policy: 'old' }),
    );
    await b.close();
    const dirs = await auditChainDirs(join(dir, 'shared'));
    expect(dirs).toEqual([join(dir, 'shared', 'a'), join(dir, 'shared', 'b')]);
    const inv = await buildInventory({ auditDir: dirs, readBlob }, { now });
    expect(inv.entries).toEqual([
      expect.objectContaining({
        repository: 'acme/web',
        digest: d2,
        digests: [d2, d1],
        policy: 'new',
        clients: 2,
        firstPull: '2026-03-01T09:00:00.000Z',
        lastPull: '2026-03-01T12:50:00.000Z',
      }),
    ]);
  });

  it('leaves the age unknown when the blobs are not cached', async () => {
    const inv = await buildInventory({ auditDir: dir }, { now });
    expect(inv.entries[0]!.created).toBeUndefined();
    expect((await buildInventory({ auditDir: dir }, { now, olderThanMs: 1 })).entries).toEqual([]);
  });
});

describe('pullwarden inventory', () => {
  it('prints a table and --json, and rejects a bad --older-than', async () => {
    const run = (argv: string[]) => runCli(argv, dir);
    const t = await run(['inventory', '--dir', dir]);
    expect(t.code).toBe(0);
    const [header, ...rows] = t.stdout.trimEnd().split('\n');
    expect(header).toMatch(/^IMAGE\s+DIGEST\s+DECISION\s+POLICY\s+PULLS/);
    expect(rows).toHaveLength(2);
    expect(rows[0]).toContain('docker.io/library/nginx:1.27');
    expect(rows[1]).toMatch(/ghcr\.io\/acme\/secret:v1\s+-\s+deny\s+no-secret/);
    const j = await run(['inventory', '--dir', dir, '--json', '--denied']);
    expect(j.code).toBe(0);
    const parsed = JSON.parse(j.stdout) as { entries: { repository: string }[] };
    expect(parsed.entries.map((e) => e.repository)).toEqual(['acme/secret']);
    expect((await run(['inventory', '--dir', dir, '--older-than', 'ninety'])).code).toBe(2);
  });
});
