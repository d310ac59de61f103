/**
 * Every `/v2` request that names a repository leaves an audit event, against the real server and a
 * real distribution registry: refusals at routing (an upstream that is not configured, by `ns=`, path
 * prefix or no default), at authentication (401 anonymous, 403 for an identity outside its globs),
 * by policy (with the digest and tag decided), tag lists and referrers (refused for a repository a
 * deny policy governs), and a tag move seen by a client that accepts no index. `audit query` (the CLI,
 * as a process) finds them by upstream, digest, decision and identity.
 */
import { generateKeyPairSync } from 'node:crypto';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryAuditDir } from '../../src/audit/index.ts';
import type { AuditQuery, AuditRecord } from '../../src/audit/index.ts';
import type { TestProxy } from '../support/app.ts';
import { startE2e } from '../support/e2e.ts';
import type { E2e } from '../support/e2e.ts';
import { images } from '../support/oci-layout.ts';
import type { WrittenLayout } from '../support/oci-layout.ts';
import { run } from '../support/proc.ts';
import type { Registry } from '../support/registry.ts';
import { pushLayout } from '../support/skopeo.ts';

const CLI = join(import.meta.dirname, '../../src/cli/run.ts');
const TOKEN = 'ci-secret-token-0123456789abcdef';
const ACCEPT = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.docker.distribution.manifest.v2+json',
].join(', ');
/** A client that takes single manifests only (no index, no manifest list). */
const NO_INDEX =
  'application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json';

describe('the audit trail records every request that names a repository (real server, real distribution)', () => {
  let e2e: E2e;
  let work: string;
  let registry: Registry;
  let proxy: TestProxy;
  let host: string;
  let ok: WrittenLayout;
  let unsigned: WrittenLayout;
  let indexA: WrittenLayout;
  let indexB: WrittenLayout;

  beforeAll(async () => {
    e2e = await startE2e({ prefix: 'pw-audit-trail-' });
    work = e2e.work;
    registry = e2e.registry;
    host = registry.host;
    [ok, unsigned, indexA, indexB] = await Promise.all([
      e2e.layout('ok', images.singleArch('trail-ok')),
      e2e.layout('unsigned', images.singleArch('trail-unsigned')),
      e2e.layout('ia', images.twoPlatformIndex('trail-index-a')),
      e2e.layout('ib', images.twoPlatformIndex('trail-index-b')),
    ]);
    await Promise.all([
      pushLayout(ok, host, 'ok/app:v1'),
      pushLayout(ok, host, 'private/app:v1'),
      pushLayout(ok, host, 'team/app:v1'),
      pushLayout(ok, host, 'blocked/app:v1'),
      pushLayout(unsigned, host, 'signed/app:v1'),
      pushLayout(indexA, host, 'drift/app:v1'),
    ]);
    const tokenFile = join(work, 'ci.token');
    await writeFile(tokenFile, `${TOKEN}\n`);
    const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    proxy = await e2e.proxy({
      upstreams: { [host]: { url: registry.url, tagTTL: '0s' } },
      defaultUpstream: host,
      trust: { refresh: '0s', keys: { release: { pem: publicKey.export({ type: 'spki', format: 'pem' }) } } },
      policies: [
        { name: 'ok', match: [`${host}/ok/**`, `${host}/private/**`, `${host}/team/**`], action: 'allow' },
        {
          name: 'must-be-signed',
          match: [`${host}/signed/**`],
          action: 'verify',
          signatures: { attestors: [{ key: 'release' }] },
        },
        { name: 'no-drift', match: [`${host}/drift/**`], action: 'allow', tags: { onMove: 'deny' } },
        { name: 'blocked', match: [`${host}/blocked/**`], action: 'deny' },
      ],
      auth: {
        tokens: [{ name: 'ci', tokenFile, repositories: [`${host}/private/**`] }],
        anonymous: [`${host}/ok/**`, `${host}/blocked/**`, `${host}/signed/**`, `${host}/drift/**`],
      },
    });
  }, 180_000);

  afterAll(async () => {
    await e2e?.close();
  });

  const get = async (path: string, headers: Record<string, string> = {}, method = 'GET') => {
    const res = await fetch(`${proxy.url}${path}`, {
      method,
      headers: { accept: ACCEPT, 'user-agent': 'containerd/1.6.20', ...headers },
    });
    const body = method === 'HEAD' ? '' : await res.text();
    return { status: res.status, body, digest: res.headers.get('docker-content-digest') };
  };
  const events = async (query: AuditQuery = {}): Promise<AuditRecord[]> => {
    const out: AuditRecord[] = [];
    for await (const r of queryAuditDir(proxy.config.audit.dir, query)) out.push(r);
    return out;
  };
  /** `pullwarden audit query --config FILE ARGS --json`, as a process. */
  const auditQuery = async (...args: string[]): Promise<AuditRecord[]> => {
    const r = await run(process.execPath, [
      CLI,
      'audit',
      'query',
      '--config',
      proxy.config.source,
      ...args,
      '--json',
    ]);
    return r.stdout
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as AuditRecord);
  };

  it('routing refusals (ns=, path prefix, an unconfigured docker.io) are events with the host asked for', async () => {
    expect((await get('/v2/x/app/manifests/1.0?ns=evil.example.com', {}, 'HEAD')).status).toBe(403);
    expect((await get('/v2/library/nginx/manifests/1.27?ns=docker.io')).status).toBe(403);
    const prefixed = await get('/v2/evil.example.com/x/app/tags/list');
    expect(prefixed.status).toBe(403);
    expect(prefixed.body).toContain('upstream-not-configured');
    const digest = `sha256:${'a'.repeat(64)}`;
    expect((await get(`/v2/evil.example.com/x/app/blobs/${digest}`)).status).toBe(403);

    const evil = await auditQuery('--upstream', 'evil.example.com');
    expect(evil.map((e) => [e.type, e.method, e.repository, e.reference, e.decision, e.status])).toEqual([
      ['manifest', 'HEAD', 'x/app', '1.0', 'deny', 403],
      ['tags', 'GET', 'x/app', '', 'deny', 403],
      ['blob', 'GET', 'x/app', digest, 'deny', 403],
    ]);
    expect(evil[0]).toMatchObject({ tag: '1.0', identity: 'anonymous', userAgent: 'containerd/1.6.20' });
    expect(evil[0]?.reasons?.[0]).toContain('"evil.example.com" is not configured');
    expect(evil[2]?.digest).toBe(digest);
    expect(await auditQuery('--upstream', 'docker.io', '--decision', 'deny')).toEqual([
      expect.objectContaining({ repository: 'library/nginx', reference: '1.27', status: 403 }),
    ]);
  });

  it('auth refusals: 401 as anonymous (a wrong token too), 403 for an identity outside its globs; never the secret', async () => {
    expect((await get('/v2/private/app/manifests/v1')).status).toBe(401);
    expect(
      (await get('/v2/private/app/manifests/v1', { authorization: 'Bearer wrong-token-xyz' })).status,
    ).toBe(401);
    const bearer = { authorization: `Bearer ${TOKEN}` };
    expect((await get('/v2/ok/app/tags/list', bearer)).status).toBe(200); // anonymous glob: allowed
    const outside = await get(`/v2/${host}/team/app/manifests/v1`, bearer);
    expect(outside.status).toBe(403);
    expect((await get('/v2/private/app/manifests/v1', bearer)).status).toBe(200);

    const anonymous = await auditQuery('--identity', 'anonymous', '--repository', 'private/*');
    expect(anonymous.map((e) => [e.type, e.status, e.decision])).toEqual([
      ['manifest', 401, 'deny'],
      ['manifest', 401, 'deny'],
    ]);
    const ci = await auditQuery('--identity', 'token:ci');
    expect(ci.map((e) => [e.type, e.repository, e.status, e.decision])).toEqual([
      ['tags', 'ok/app', 200, 'allow'],
      ['manifest', 'team/app', 403, 'deny'],
      ['manifest', 'private/app', 200, 'allow'],
    ]);
    expect(ci[1]?.reasons?.[0]).toContain('token:ci may not pull');
    for (const file of await readdir(proxy.config.audit.dir)) {
      const text = await readFile(join(proxy.config.audit.dir, file), 'utf8');
      expect(text).not.toContain(TOKEN);
      expect(text).not.toContain('wrong-token-xyz');
    }
  });

  it('a policy denial by tag records the digest and tag it decided; --digest finds it', async () => {
    const denied = await get('/v2/signed/app/manifests/v1');
    expect(denied.status).toBe(403);
    expect(denied.body).toContain(unsigned.digest);
    const found = await auditQuery('--digest', unsigned.digest);
    expect(found).toEqual([
      expect.objectContaining({
        type: 'manifest',
        repository: 'signed/app',
        reference: 'v1',
        tag: 'v1',
        digest: unsigned.digest,
        decision: 'deny',
        policy: 'must-be-signed',
        status: 403,
      }),
    ]);
  });

  it('tag lists and referrers are events; a repository a deny policy governs lists nothing (403)', async () => {
    const listed = await get('/v2/ok/app/tags/list');
    expect(listed.status).toBe(200);
    expect(JSON.parse(listed.body)).toEqual({ name: 'ok/app', tags: ['v1'] });
    const refused = await get('/v2/blocked/app/tags/list');
    expect(refused.status).toBe(403);
    expect(refused.body).toContain('"code":"DENIED"');
    expect(refused.body).not.toContain('v1');
    expect((await get(`/v2/ok/app/referrers/${ok.digest}`)).status).toBe(200);
    expect((await get(`/v2/blocked/app/referrers/${ok.digest}`)).status).toBe(403);

    const tags = await events({ type: 'tags', upstream: host });
    expect(
      tags
        .filter((e) => e.identity === 'anonymous')
        .map((e) => [e.repository, e.decision, e.policy, e.status]),
    ).toEqual([
      ['ok/app', 'allow', 'ok', 200],
      ['blocked/app', 'deny', 'blocked', 403],
    ]);
    const referrers = await auditQuery('--type', 'referrers');
    expect(referrers.map((e) => [e.repository, e.digest, e.decision, e.status])).toEqual([
      ['ok/app', ok.digest, 'allow', 200],
      ['blocked/app', ok.digest, 'deny', 403],
    ]);
  });

  it('a tag move seen by a client that accepts no index is recorded (event, metric, tags history)', async () => {
    // First sight pins the tag (onMove: deny); this client cannot take the index it is.
    const first = await get('/v2/drift/app/manifests/v1', { accept: NO_INDEX });
    expect(first.status).toBe(404);
    await pushLayout(indexB, host, 'drift/app:v1');
    const moved = await get('/v2/drift/app/manifests/v1', { accept: NO_INDEX });
    expect(moved.status).toBe(403);
    expect(moved.body).toContain('tag-moved');
    const move = await auditQuery('--type', 'tag-moved', '--repository', 'drift/app');
    expect(move).toEqual([expect.objectContaining({ tag: 'v1', old: indexA.digest, new: indexB.digest })]);
    const refusal = await auditQuery('--repository', 'drift/app', '--decision', 'deny');
    expect(refusal).toEqual([
      expect.objectContaining({ type: 'manifest', digest: indexB.digest, status: 403 }),
    ]);
    const metrics = await (
      await fetch(`${proxy.url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })
    ).text();
    expect(metrics).toMatch(
      new RegExp(`pullwarden_tag_moves_total\\{upstream="${host.replace(/\./g, '\\.')}"\\} 1`),
    );
    const history = await run(process.execPath, [
      CLI,
      'tags',
      'history',
      `${host}/drift/app:v1`,
      '--config',
      proxy.config.source,
      '--json',
    ]);
    const parsed = JSON.parse(history.stdout) as { history: { digest: string }[] };
    expect(parsed.history.map((h) => h.digest)).toEqual([indexA.digest, indexB.digest]);
  });

  it('a push attempt (the proxy is read-only) is refused and audited with the repository it names', async () => {
    const put = await fetch(`${proxy.url}/v2/ok/app/manifests/v2`, {
      method: 'PUT',
      headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' },
      body: '{}',
    });
    expect(put.status).toBe(405);
    const post = await fetch(`${proxy.url}/v2/evil.example.com/x/app/blobs/uploads/`, { method: 'POST' });
    expect(post.status).toBe(405);
    const pushes = (await events({ decision: 'deny' })).filter(
      (e) => e.method === 'PUT' || e.method === 'POST',
    );
    expect(pushes.map((e) => [e.type, e.method, e.upstream, e.repository, e.reference, e.status])).toEqual([
      ['manifest', 'PUT', host, 'ok/app', 'v2', 405],
      ['blob', 'POST', 'evil.example.com', 'x/app', '', 405],
    ]);
  });

  it('tags pin refuses a digest the upstream does not have in the repository, unless --force', async () => {
    const pin = (...args: string[]) =>
      run(
        process.execPath,
        [CLI, 'tags', 'pin', `${host}/drift/app:v1`, ...args, '--config', proxy.config.source],
        {
          allowFailure: true,
        },
      );
    // In the registry, but in another repository; and one that exists nowhere.
    for (const digest of [unsigned.digest, `sha256:${'b'.repeat(64)}`]) {
      const refused = await pin(digest);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toContain(
        `${host}/drift/app has no manifest ${digest} upstream; not pinned (--force`,
      );
    }
    const history = async () =>
      JSON.parse(
        (
          await run(process.execPath, [
            CLI,
            'tags',
            'history',
            `${host}/drift/app:v1`,
            '--config',
            proxy.config.source,
            '--json',
          ])
        ).stdout,
      ) as {
        pin: { digest: string } | null;
      };
    expect((await history()).pin?.digest).toBe(indexA.digest);
    const accepted = await pin(indexB.digest);
    expect(accepted.code, accepted.stderr).toBe(0);
    expect(accepted.stdout).toBe(`${host}/drift/app:v1 pinned to ${indexB.digest}\n`);
    const forced = await pin(unsigned.digest, '--force');
    expect(forced.code).toBe(0);
    expect(forced.stdout).toContain('(--force: not checked against the upstream)');
    expect((await history()).pin?.digest).toBe(unsigned.digest);
  });
});
