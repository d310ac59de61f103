import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import bcrypt from 'bcryptjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { renderAdminPage } from '../../src/http/index.ts';
import type { Inventory } from '../../src/service/index.ts';
import { startTestProxy } from '../support/app.ts';
import type { TestProxy } from '../support/app.ts';
import { makeImage, startFakeUpstream } from '../support/fake-upstream.ts';
import type { FakeUpstream } from '../support/fake-upstream.ts';

const basic = (user: string, password: string) =>
  `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
const ACCEPT = 'application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json';

describe('the admin page', () => {
  let fake: FakeUpstream;
  let proxy: TestProxy;
  let dir: string;
  let admin: string;

  beforeAll(async () => {
    fake = await startFakeUpstream();
    makeImage(fake, 'acme/app', 'v1');
    makeImage(fake, 'acme/secret', 'v1');
    dir = await mkdtemp(join(tmpdir(), 'pw-admin-'));
    await writeFile(join(dir, 'admin.htpasswd'), `ops:${bcrypt.hashSync('watch', 4)}\n`);
    proxy = await startTestProxy({
      upstreams: { [fake.host]: { url: fake.url } },
      defaultUpstream: fake.host,
      policies: [
        { name: 'no-secret', match: [`${fake.host}/acme/secret`], action: 'deny' },
        { name: 'allow-rest', match: ['**'], action: 'allow' },
      ],
      admin: { listen: '127.0.0.1:0', htpasswd: join(dir, 'admin.htpasswd') },
    });
    admin = proxy.handle.adminAddress!;
  });
  afterAll(async () => {
    await proxy?.close();
    await fake?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('is off by default', async () => {
    const p = await startTestProxy({ upstreams: { [fake.host]: { url: fake.url } } });
    expect(p.handle.adminAddress).toBeUndefined();
    await p.close();
  });

  it('asks for credentials and refuses wrong ones', async () => {
    const none = await fetch(`${admin}/`);
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toContain('Basic');
    const wrong = await fetch(`${admin}/`, { headers: { authorization: basic('ops', 'nope') } });
    expect(wrong.status).toBe(401);
  });

  it('shows a denial just caused, the inventory and the cache, under a strict CSP', async () => {
    const headers = { accept: ACCEPT };
    expect((await fetch(`${proxy.url}/v2/acme/app/manifests/v1`, { headers })).status).toBe(200);
    expect((await fetch(`${proxy.url}/v2/acme/secret/manifests/v1`, { headers })).status).toBe(403);
    const res = await fetch(`${admin}/`, { headers: { authorization: basic('ops', 'watch') } });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-security-policy')).toContain("default-src 'none'");
    expect(res.headers.get('content-security-policy')).not.toContain('unsafe-inline');
    const html = await res.text();
    expect(html).toContain('denied by policy &quot;no-secret&quot;');
    expect(html).toContain(`${fake.host}/acme/secret:v1`);
    expect(html).toContain(`${fake.host}/acme/app:v1`);
    expect(html).not.toContain('<script');
    const json = (await (
      await fetch(`${admin}/inventory.json`, { headers: { authorization: basic('ops', 'watch') } })
    ).json()) as Inventory;
    expect(json.denials[0]).toMatchObject({ repository: 'acme/secret', policy: 'no-secret' });
    expect(json.entries.map((e) => e.repository)).toEqual(['acme/app', 'acme/secret']);
  });

  it('is read-only', async () => {
    const post = await fetch(`${admin}/`, {
      method: 'POST',
      headers: { authorization: basic('ops', 'watch') },
    });
    expect(post.status).toBe(404);
  });

  it('GET /v2/_catalog stays unimplemented on the registry API: it lists nothing', async () => {
    const res = await fetch(`${proxy.url}/v2/_catalog`);
    expect(res.status).toBe(404);
    expect(await res.text()).not.toContain('acme/app');
  });
});

describe("the admin page with the API's credentials", () => {
  it('lets only the listed identities in', async () => {
    const fake = await startFakeUpstream();
    const dir = await mkdtemp(join(tmpdir(), 'pw-admin-api-'));
    await writeFile(
      join(dir, 'htpasswd'),
      `ops:${bcrypt.hashSync('o', 4)}\nrobot:${bcrypt.hashSync('r', 4)}\n`,
    );
    const proxy = await startTestProxy({
      upstreams: { [fake.host]: { url: fake.url } },
      auth: { htpasswd: join(dir, 'htpasswd'), users: { ops: ['**'], robot: ['**'] } },
      admin: { listen: '127.0.0.1:0', identities: ['user:ops'] },
    });
    try {
      const url = `${proxy.handle.adminAddress!}/`;
      expect((await fetch(url)).status).toBe(401);
      expect((await fetch(url, { headers: { authorization: basic('ops', 'o') } })).status).toBe(200);
      // A pulling robot with valid API credentials is not an operator.
      const robot = await fetch(url, { headers: { authorization: basic('robot', 'r') } });
      expect(robot.status).toBe(403);
      expect(await robot.text()).toContain('user:robot may not view the admin page');
    } finally {
      await proxy.close();
      await fake.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('refuses admin.listen without credentials of either kind', async () => {
    const { configSchema } = await import('../../src/config/index.ts');
    const r = configSchema.safeParse({ upstreams: { 'a.io': {} }, admin: { listen: '127.0.0.1:5052' } });
    expect(r.success).toBe(false);
    expect(JSON.stringify(r.error?.issues)).toContain('needs exactly one of htpasswd');
  });
});

describe('renderAdminPage', () => {
  it('escapes every value that came from a client or upstream', () => {
    const evil = '<img src=x onerror=alert(1)>';
    const inventory: Inventory = {
      entries: [
        {
          upstream: 'docker.io',
          repository: evil,
          tag: '"><script>alert(1)</script>',
          digest: 'sha256:abc',
          digests: ['sha256:abc'],
          firstPull: '2026-01-01T00:00:00.000Z',
          lastPull: '2026-01-01T00:00:00.000Z',
          pulls: 1,
          clients: 1,
          identities: 0,
          denials: 1,
          decision: 'deny',
          policy: evil,
          signers: [evil],
          gates: [],
          moves: [],
        },
      ],
      denials: [
        {
          time: '2026-01-01T00:00:00.000Z',
          client: evil,
          upstream: 'docker.io',
          repository: evil,
          reference: evil,
          reasons: [evil],
          status: 403,
        },
      ],
      moves: [],
      cache: { hit: 1, miss: 1, stale: 0 },
      series: [{ start: '2026-01-01T00:00:00.000Z', pulls: 1, denials: 1 }],
    };
    const html = renderAdminPage({
      inventory,
      cache: { bytes: 0, blobs: 0 },
      windowMs: 86_400_000,
      now: new Date(),
    });
    expect(html).not.toContain('<img');
    expect(html).not.toContain('<script');
    expect(html).toContain('&lt;img src=x onerror=alert(1)&gt;');
  });
});
