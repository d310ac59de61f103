import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import bcrypt from 'bcryptjs';
import { Agent, fetch } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryAuditDir } from '../../src/audit/index.ts';
import { startTestProxy } from '../support/app.ts';
import type { TestProxy } from '../support/app.ts';
import { makeImage, startFakeUpstream } from '../support/fake-upstream.ts';
import type { FakeUpstream } from '../support/fake-upstream.ts';

const run = promisify(execFile);

/** A throwaway CA with a server certificate for 127.0.0.1 and a client certificate. */
async function makePki(dir: string, serverCN = '127.0.0.1'): Promise<void> {
  const ssl = (...args: string[]) => run('openssl', args, { cwd: dir });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  await ssl(
    'req',
    '-x509',
    ...ec,
    '-keyout',
    'ca.key',
    '-out',
    'ca.pem',
    '-days',
    '2',
    '-subj',
    '/CN=pullwarden-test-ca',
  );
  await writeFile(join(dir, 'san.ext'), 'subjectAltName=IP:127.0.0.1\n');
  for (const [name, cn, ext] of [
    ['server', serverCN, ['-extfile', 'san.ext']],
    ['client', 'node-7', []],
  ] as const) {
    await ssl('req', ...ec, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`);
    await ssl(
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      'ca.pem',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-out',
      `${name}.pem`,
      '-days',
      '2',
      ...ext,
    );
  }
}

const basic = (user: string, password: string) =>
  `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

describe('pull authentication', () => {
  let fake: FakeUpstream;
  let proxy: TestProxy;
  let dir: string;

  beforeAll(async () => {
    fake = await startFakeUpstream();
    makeImage(fake, 'acme/app', 'v1');
    makeImage(fake, 'acme/secret', 'v1');
    makeImage(fake, 'library/public', 'v1');
    dir = await mkdtemp(join(tmpdir(), 'pw-auth-'));
    await writeFile(join(dir, 'htpasswd'), `robot:${bcrypt.hashSync('s3cret', 10)}\n`);
    await writeFile(join(dir, 'ci.token'), 'tok-123\n');
    proxy = await startTestProxy({
      upstreams: { [fake.host]: { url: fake.url } },
      defaultUpstream: fake.host,
      policies: [{ name: 'allow-all', match: ['**'], action: 'allow' }],
      auth: {
        htpasswd: join(dir, 'htpasswd'),
        users: { robot: [`${fake.host}/acme/app`] },
        tokens: [{ name: 'ci', tokenFile: join(dir, 'ci.token'), repositories: [`${fake.host}/acme/**`] }],
        anonymous: [`${fake.host}/library/*`],
      },
    });
  });

  afterAll(async () => {
    await proxy?.close();
    await fake?.close();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  const get = (path: string, authorization?: string) =>
    fetch(`${proxy.url}${path}`, { headers: authorization ? { authorization } : {} });

  it('challenges anonymous clients with a Basic WWW-Authenticate that registry clients understand', async () => {
    const ping = await get('/v2/');
    expect(ping.status).toBe(401);
    expect(ping.headers.get('www-authenticate')).toMatch(/^Basic realm="pullwarden"/);
    const res = await get('/v2/acme/app/manifests/v1');
    expect(res.status).toBe(401);
    expect(await res.json()).toMatchObject({ errors: [{ code: 'UNAUTHORIZED' }] });
    expect(fake.count({ kind: 'manifest' })).toBe(0);
  });

  it('lets an htpasswd user pull exactly its repositories', async () => {
    expect((await get('/v2/', basic('robot', 's3cret'))).status).toBe(200);
    expect((await get('/v2/acme/app/manifests/v1', basic('robot', 's3cret'))).status).toBe(200);
    const other = await get('/v2/acme/secret/manifests/v1', basic('robot', 's3cret'));
    expect(other.status).toBe(403);
    expect(await other.json()).toMatchObject({
      errors: [{ code: 'DENIED', detail: { reason: 'not-authorized' } }],
    });
    expect((await get('/v2/acme/app/manifests/v1', basic('robot', 'wrong'))).status).toBe(401);
  });

  it('accepts static tokens as bearer or as a password, and serves anonymous globs without credentials', async () => {
    expect((await get('/v2/acme/secret/manifests/v1', 'Bearer tok-123')).status).toBe(200);
    expect((await get('/v2/acme/secret/manifests/v1', basic('anything', 'tok-123'))).status).toBe(200);
    expect((await get('/v2/acme/secret/manifests/v1', 'Bearer nope')).status).toBe(401);
    expect((await get('/v2/library/public/manifests/v1')).status).toBe(200);
  });

  it('writes the identity into audit events and never a secret into them', async () => {
    const events = [];
    for await (const e of queryAuditDir(proxy.config.audit.dir, {})) events.push(e);
    expect(events.some((e) => e.identity === 'user:robot' && e.repository === 'acme/app')).toBe(true);
    expect(events.some((e) => e.identity === 'token:ci')).toBe(true);
    const raw = JSON.stringify(events);
    expect(raw).not.toContain('s3cret');
    expect(raw).not.toContain('tok-123');
  });

  it('picks up new htpasswd users without a restart', async () => {
    const file = join(dir, 'htpasswd');
    const next = `${await readFile(file, 'utf8')}late:${bcrypt.hashSync('pw2', 10)}\n`;
    await writeFile(`${file}.new`, next);
    await rename(`${file}.new`, file);
    await expect
      .poll(async () => (await get('/v2/', basic('late', 'pw2'))).status, { timeout: 5_000, interval: 100 })
      .toBe(200);
  });
});

describe('TLS serving', () => {
  let fake: FakeUpstream;
  let proxy: TestProxy;
  let dir: string;

  beforeAll(async () => {
    fake = await startFakeUpstream();
    makeImage(fake, 'acme/app', 'v1');
    dir = await mkdtemp(join(tmpdir(), 'pw-tls-'));
    await makePki(dir);
    proxy = await startTestProxy({
      upstreams: { [fake.host]: { url: fake.url } },
      defaultUpstream: fake.host,
      policies: [{ name: 'allow-all', match: ['**'], action: 'allow' }],
      server: {
        tls: {
          certFile: join(dir, 'server.pem'),
          keyFile: join(dir, 'server.key'),
          clientCAFile: join(dir, 'ca.pem'),
          requireClientCert: true,
        },
      },
      auth: { users: { 'node-7': ['**'] } },
    });
  });

  afterAll(async () => {
    await proxy?.close();
    await fake?.close();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  const agent = async (withClientCert: boolean) =>
    new Agent({
      connect: {
        ca: await readFile(join(dir, 'ca.pem')),
        ...(withClientCert
          ? { cert: await readFile(join(dir, 'client.pem')), key: await readFile(join(dir, 'client.key')) }
          : {}),
      },
    });

  it('serves HTTPS, authenticates a client certificate as its subject, and refuses clients without one', async () => {
    expect(proxy.url.startsWith('https://')).toBe(true);
    const withCert = await agent(true);
    const res = await fetch(`${proxy.url}/v2/acme/app/manifests/v1`, { dispatcher: withCert });
    expect(res.status).toBe(200);
    await res.arrayBuffer();
    const events = [];
    for await (const e of queryAuditDir(proxy.config.audit.dir, {})) events.push(e);
    expect(events.at(-1)).toMatchObject({ identity: 'cert:node-7', repository: 'acme/app' });
    const noCert = await agent(false);
    await expect(fetch(`${proxy.url}/v2/`, { dispatcher: noCert })).rejects.toThrow();
  });

  it('reloads the server certificate when the files change', async () => {
    const before = await fetch(`${proxy.url}/healthz`, { dispatcher: await agent(true) });
    expect(before.status).toBe(200);
    // A new certificate from the same CA, with another serial: the live server must present it.
    const serial = async (): Promise<string> =>
      (await run('openssl', ['x509', '-in', join(dir, 'server.pem'), '-noout', '-serial'])).stdout.trim();
    const old = await serial();
    const renewed = await mkdtemp(join(tmpdir(), 'pw-tls-renew-'));
    try {
      const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
      await run(
        'openssl',
        ['req', ...ec, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1'],
        { cwd: renewed },
      );
      await run(
        'openssl',
        [
          'x509',
          '-req',
          '-in',
          'server.csr',
          '-CA',
          join(dir, 'ca.pem'),
          '-CAkey',
          join(dir, 'ca.key'),
          '-CAcreateserial',
          '-out',
          'server.pem',
          '-days',
          '2',
          '-extfile',
          join(dir, 'san.ext'),
        ],
        { cwd: renewed },
      );
      await writeFile(join(dir, 'server.key'), await readFile(join(renewed, 'server.key')));
      await writeFile(join(dir, 'server.pem'), await readFile(join(renewed, 'server.pem')));
      const fresh = await serial();
      expect(fresh).not.toBe(old);
      const presented = async (): Promise<string> => {
        const { stdout } = await run('bash', [
          '-c',
          `echo | openssl s_client -connect ${proxy.host} -cert ${join(dir, 'client.pem')} -key ${join(dir, 'client.key')} 2>/dev/null | openssl x509 -noout -serial`,
        ]);
        return stdout.trim();
      };
      await expect.poll(presented, { timeout: 5_000, interval: 150 }).toBe(fresh);
    } finally {
      await rm(renewed, { recursive: true, force: true });
    }
  });
});
