/**
 * A hostile upstream tries to make the proxy connect where it was not told to: blob redirects and
 * token realms pointing at loopback (every spelling of it) and at cloud metadata. A loopback "canary"
 * listener counts every TCP connection it receives; a refused redirect must leave it at zero.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { RegistryError } from '../../src/oci/index.ts';
import type { Digest } from '../../src/oci/index.ts';
import { UndiciUpstream } from '../../src/upstream/index.ts';
import { startTestProxy } from '../support/app.ts';
import { startCanary } from '../support/canary.ts';
import type { Canary } from '../support/canary.ts';
import type { TestProxy } from '../support/app.ts';
import { makeImage, sha256, startFakeUpstream } from '../support/fake-upstream.ts';
import type { FakeUpstream } from '../support/fake-upstream.ts';

const ALLOW_ALL = [{ name: 'allow-all', match: ['**'], action: 'allow' }];

let fake: FakeUpstream | undefined;
let proxy: TestProxy | undefined;
let upstream: UndiciUpstream | undefined;
const canaries: Canary[] = [];

afterEach(async () => {
  await proxy?.close();
  await upstream?.close();
  await fake?.close();
  await Promise.all(canaries.splice(0).map((c) => c.close()));
  proxy = undefined;
  upstream = undefined;
  fake = undefined;
});

async function canaryOn(address: '127.0.0.1' | '::1'): Promise<Canary> {
  const c = await startCanary(address);
  canaries.push(c);
  return c;
}

async function errorOf(res: Response): Promise<{ code: string; message: string }> {
  const body = (await res.json()) as { errors: { code: string; message: string }[] };
  return body.errors[0] ?? { code: '', message: '' };
}

describe('blob redirects to non-public addresses', () => {
  const spellings: [string, (c: { v4: Canary; v6: Canary }) => string][] = [
    ['127.0.0.1', ({ v4 }) => `http://127.0.0.1:${v4.port}/blob`],
    ['localhost', ({ v4 }) => `http://localhost:${v4.port}/blob`],
    ['2130706433 (decimal)', ({ v4 }) => `http://2130706433:${v4.port}/blob`],
    ['0x7f.1 (hex, short form)', ({ v4 }) => `http://0x7f.1:${v4.port}/blob`],
    ['0177.0.0.1 (octal)', ({ v4 }) => `http://0177.0.0.1:${v4.port}/blob`],
    ['[::ffff:127.0.0.1] (IPv4-mapped)', ({ v4 }) => `http://[::ffff:127.0.0.1]:${v4.port}/blob`],
    ['[::1]', ({ v6 }) => `http://[::1]:${v6.port}/blob`],
    ['a relative Location on another port', ({ v4 }) => `//127.0.0.1:${v4.port}/blob`],
  ];

  for (const [name, location] of spellings) {
    it(`refuses a redirect to ${name} without connecting, caches nothing, and says why`, async () => {
      const v4 = await canaryOn('127.0.0.1');
      const v6 = await canaryOn('::1');
      fake = await startFakeUpstream();
      proxy = await startTestProxy({ upstreams: { [fake.host]: { url: fake.url } }, policies: ALLOW_ALL });
      const img = makeImage(fake, 'acme/app', '1.0');
      const layer = img.layerDigests[0]!;
      await fetch(`${proxy.url}/v2/acme/app/manifests/1.0?ns=${fake.host}`);
      fake.fault({ kind: 'blob', method: 'GET' }, { redirect: location({ v4, v6 }) }, { times: 1 });

      const res = await fetch(`${proxy.url}/v2/acme/app/blobs/${layer}?ns=${fake.host}`);

      expect(res.status).toBe(503);
      const err = await errorOf(res);
      expect(err.code).toBe('UNAVAILABLE');
      expect(err.message).toMatch(/a loopback .*address/);
      expect(err.message).toContain(`upstreams.${fake.host}.redirects.allow`);
      expect(v4.connections + v6.connections).toBe(0);
      // Nothing was cached: the next pull (the upstream behaves again) is a miss with the right bytes.
      const again = await fetch(`${proxy.url}/v2/acme/app/blobs/${layer}?ns=${fake.host}`);
      expect(again.status).toBe(200);
      expect(again.headers.get('x-pullwarden-cache')).toBe('miss');
      expect(sha256(Buffer.from(await again.arrayBuffer()))).toBe(layer);
    });
  }

  it('refuses a redirect to cloud metadata (169.254.169.254) and private ranges', async () => {
    fake = await startFakeUpstream();
    proxy = await startTestProxy({ upstreams: { [fake.host]: { url: fake.url } }, policies: ALLOW_ALL });
    const img = makeImage(fake, 'acme/app', '1.0');
    const layer = img.layerDigests[0]!;
    await fetch(`${proxy.url}/v2/acme/app/manifests/1.0?ns=${fake.host}`);
    for (const [target, reason] of [
      ['http://169.254.169.254/latest/meta-data/', /link-local/],
      ['http://10.0.0.1/x', /private/],
      ['http://100.64.0.1/x', /CGNAT/],
      ['http://[fd00::1]/x', /unique local/],
      ['http://[fe80::1]/x', /link-local/],
      ['http://0.0.0.0:1/x', /this-network/],
    ] as const) {
      fake.fault({ kind: 'blob', method: 'GET' }, { redirect: target }, { times: 1 });
      const res = await fetch(`${proxy.url}/v2/acme/app/blobs/${layer}?ns=${fake.host}`);
      expect(res.status, target).toBe(503);
      expect((await errorOf(res)).message, target).toMatch(reason);
    }
  });

  it('follows a redirect to a host the operator allowed in redirects.allow', async () => {
    const canary = await canaryOn('127.0.0.1');
    fake = await startFakeUpstream();
    proxy = await startTestProxy({
      upstreams: { [fake.host]: { url: fake.url, redirects: { allow: [canary.host] } } },
      policies: ALLOW_ALL,
    });
    const img = makeImage(fake, 'acme/app', '1.0', { layerSize: 64 * 1024 });
    const layer = img.layerDigests[0]!;
    canary.respond = () => Promise.resolve({ status: 200, body: img.layers[0]! });
    await fetch(`${proxy.url}/v2/acme/app/manifests/1.0?ns=${fake.host}`);
    fake.fault({ kind: 'blob', method: 'GET' }, { redirect: `http://${canary.host}/cdn/blob?sig=1` });

    const res = await fetch(`${proxy.url}/v2/acme/app/blobs/${layer}?ns=${fake.host}`);

    expect(res.status).toBe(200);
    expect(sha256(Buffer.from(await res.arrayBuffer()))).toBe(layer);
    expect(canary.connections).toBe(1);
    expect(canary.requests[0]?.authorization).toBeUndefined();
  });

  it('refuses a name that resolves to loopback at connect time (custom DNS answer), allowed or not by spelling', async () => {
    const canary = await canaryOn('127.0.0.1');
    fake = await startFakeUpstream();
    const img = makeImage(fake, 'acme/app', '1.0');
    const resolved: string[] = [];
    upstream = new UndiciUpstream({
      host: fake.host,
      config: {
        url: fake.url,
        connectTimeout: 2_000,
        headersTimeout: 2_000,
        bodyTimeout: 2_000,
        retries: 2,
        connections: 4,
        insecureSkipTLSVerify: false,
      },
      retryDelayMs: 5,
      // A public-looking name whose DNS answer is loopback (DNS rebinding): the check happens on the
      // address the connection would use, so the name does not help.
      lookup: (hostname, _options, callback) => {
        resolved.push(hostname);
        callback(null, [
          { address: '127.0.0.1', family: 4 },
          { address: '::1', family: 6 },
        ]);
      },
    });
    fake.fault({ kind: 'blob' }, { redirect: `http://cdn.example.com:${canary.port}/blob` });

    const err = await upstream.getBlob('acme/app', img.layerDigests[0] as Digest).then(
      () => undefined,
      (e: unknown) => e,
    );

    expect(err).toBeInstanceOf(RegistryError);
    expect((err as RegistryError).code).toBe('UNAVAILABLE');
    expect((err as RegistryError).message).toContain('cdn.example.com');
    expect((err as RegistryError).message).toMatch(/loopback/);
    expect(resolved).toContain('cdn.example.com');
    expect(canary.connections).toBe(0);
    // Not retried: a refusal is a decision, not a flaky connection.
    expect(fake.count({ kind: 'blob' })).toBe(1);
  });

  it('still reaches an upstream whose own configured URL is loopback (only redirect targets are checked)', async () => {
    fake = await startFakeUpstream({ redirectBlobs: true });
    proxy = await startTestProxy({
      upstreams: { [fake.host]: { url: fake.url, redirects: { allow: [new URL(fake.cdnUrl).host] } } },
      policies: ALLOW_ALL,
    });
    const img = makeImage(fake, 'acme/app', '1.0');
    await fetch(`${proxy.url}/v2/acme/app/manifests/1.0?ns=${fake.host}`);
    const res = await fetch(`${proxy.url}/v2/acme/app/blobs/${img.layerDigests[0]}?ns=${fake.host}`);
    expect(res.status).toBe(200);
    expect(sha256(Buffer.from(await res.arrayBuffer()))).toBe(img.layerDigests[0]);
    expect(fake.count({ origin: 'cdn' })).toBe(1);
  });
});

describe('token realms', () => {
  it('refuses a realm off the upstream host: no credentials sent, not remembered for later requests', async () => {
    const canary = await canaryOn('127.0.0.1');
    fake = await startFakeUpstream({ auth: 'bearer', username: 'robot', password: 's3cret' });
    proxy = await startTestProxy({
      upstreams: { [fake.host]: { url: fake.url, username: 'robot', password: 's3cret' } },
      policies: ALLOW_ALL,
    });
    makeImage(fake, 'acme/app', '1.0');
    makeImage(fake, 'acme/other', '1.0');
    fake.setRealm(`http://127.0.0.1:${canary.port}/token`);

    const res = await fetch(`${proxy.url}/v2/acme/app/manifests/1.0?ns=${fake.host}`);

    expect(res.status).toBe(503);
    const err = await errorOf(res);
    expect(err.message).toContain(`upstreams.${fake.host}.auth.realms`);
    expect(err.message).not.toContain('s3cret');
    expect(canary.connections).toBe(0);
    expect(fake.count({ kind: 'token' })).toBe(0);

    // The realm did not stick: once the upstream announces its own realm again, pulls work, and the
    // hostile realm is never contacted for any repository.
    fake.setRealm(undefined);
    for (const repo of ['acme/app', 'acme/other']) {
      const ok = await fetch(`${proxy.url}/v2/${repo}/manifests/1.0?ns=${fake.host}`);
      expect(ok.status, repo).toBe(200);
    }
    expect(canary.connections).toBe(0);
    expect(
      fake.requests.filter((r) => r.kind === 'token').every((r) => r.authorization?.startsWith('Basic ')),
    ).toBe(true);
  });

  it('sends credentials to a realm in auth.realms, and logs a realm change', async () => {
    const canary = await canaryOn('127.0.0.1');
    fake = await startFakeUpstream({ auth: 'bearer', username: 'robot', password: 's3cret' });
    // The canary relays token requests to the fake's token service: a separate auth host, as
    // registry-1.docker.io uses auth.docker.io.
    canary.respond = async (url, authorization) => {
      const r = await fetch(`${fake!.url}${url}`, { headers: authorization ? { authorization } : {} });
      return { status: r.status, body: Buffer.from(await r.arrayBuffer()) };
    };
    const warnings: { obj: object; msg: string }[] = [];
    upstream = new UndiciUpstream({
      host: fake.host,
      config: {
        url: fake.url,
        username: 'robot',
        password: 's3cret',
        connectTimeout: 2_000,
        headersTimeout: 2_000,
        bodyTimeout: 2_000,
        retries: 0,
        connections: 4,
        insecureSkipTLSVerify: false,
        auth: { realms: [canary.host] },
      },
      logger: { debug() {}, info() {}, warn: (obj, msg) => warnings.push({ obj, msg }), error() {} },
    });
    makeImage(fake, 'acme/app', '1.0');

    await upstream.headManifest('acme/app', '1.0');
    fake.setRealm(`http://${canary.host}/token`);
    fake.fault({ kind: 'manifest' }, { status: 401 }, { times: 1 });
    await upstream.headManifest('acme/app', '1.0');

    expect(canary.requests).toHaveLength(1);
    expect(canary.requests[0]?.authorization).toBe(`Basic ${Buffer.from('robot:s3cret').toString('base64')}`);
    const change = warnings.find((w) => w.msg === 'upstream token realm changed');
    expect(change?.obj).toMatchObject({ to: `http://${canary.host}/token` });
  });
});
