/**
 * A hostile client against the HTTP face: slow requests, write methods with large bodies, sniffable
 * responses and the metrics endpoint.
 */
import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import type { Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { queryAuditDir } from '../../src/audit/index.ts';
import type { AuditRecord } from '../../src/audit/index.ts';
import { startTestProxy } from '../support/app.ts';
import type { TestProxy } from '../support/app.ts';
import { makeImage, startFakeUpstream } from '../support/fake-upstream.ts';
import type { FakeUpstream } from '../support/fake-upstream.ts';
import { writeFile } from 'node:fs/promises';

const ALLOW_ALL = [{ name: 'allow-all', match: ['**'], action: 'allow' }];

let fake: FakeUpstream | undefined;
let proxy: TestProxy | undefined;
const dirs: string[] = [];

afterEach(async () => {
  await proxy?.close();
  await fake?.close();
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
  proxy = undefined;
  fake = undefined;
});

async function start(extra: Record<string, unknown> = {}): Promise<TestProxy> {
  fake = await startFakeUpstream();
  proxy = await startTestProxy({
    upstreams: { [fake.host]: { url: fake.url } },
    defaultUpstream: fake.host,
    policies: ALLOW_ALL,
    ...extra,
  });
  return proxy;
}

/** A raw TCP connection to the proxy that records what comes back and when it closes. */
async function rawSocket(
  url: string,
): Promise<{ socket: Socket; received: () => string; closed: Promise<void> }> {
  const { hostname, port } = new URL(url);
  const socket = connect({ host: hostname, port: Number(port) });
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  let data = '';
  socket.on('data', (chunk: Buffer) => (data += chunk.toString('latin1')));
  socket.on('error', () => undefined);
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  return { socket, received: () => data, closed };
}

/** The proxy's audit events that `keep` selects. */
async function auditEvents(p: TestProxy, keep: (e: AuditRecord) => boolean): Promise<AuditRecord[]> {
  const out: AuditRecord[] = [];
  for await (const r of queryAuditDir(p.config.audit.dir, {})) if (keep(r)) out.push(r);
  return out;
}

describe('slow and oversized requests', () => {
  it('cuts a request body that trickles in at 1 byte every 5 s (requestTimeout)', async () => {
    const p = await start({ server: { headersTimeout: '1s', requestTimeout: '2s' } });
    const { socket, closed } = await rawSocket(p.url);
    socket.write(
      'GET /v2/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n',
    );
    let sent = 0;
    let open = true;
    void closed.then(() => (open = false));
    while (open && sent < 100) {
      socket.write('x');
      sent++;
      await Promise.race([sleep(5_000), closed]);
    }
    await closed;
    // The server closed the connection long before the client finished its body.
    expect(sent).toBeLessThan(5);
  }, 30_000);

  it('cuts request headers that trickle in (headersTimeout)', async () => {
    const p = await start({ server: { headersTimeout: '1s', requestTimeout: '2s' } });
    const { socket, received, closed } = await rawSocket(p.url);
    socket.write('GET /v2/ HTTP/1.1\r\nHost: x\r\n');
    let sent = 0;
    let open = true;
    void closed.then(() => (open = false));
    while (open && sent < 100) {
      socket.write(`X-Slow-${sent}: y\r\n`);
      sent++;
      await Promise.race([sleep(5_000), closed]);
    }
    await closed;
    expect(sent).toBeLessThan(5);
    // An OCI error that says why, not Node's bare 408.
    expect(received()).toMatch(/^HTTP\/1\.1 400/);
    expect(received()).toContain('"code":"SIZE_INVALID"');
    expect(received()).toContain('server.headersTimeout');
    const text = await (await fetch(`${p.url}/metrics`)).text();
    expect(text).toContain('pullwarden_requests_limited_total{reason="request-timeout"} 1');
  }, 30_000);

  it('cuts a client that stops reading a blob response (sendTimeout), and counts it', async () => {
    const p = await start({ server: { sendTimeout: '1s' } });
    // Larger than what loopback socket buffers hold on both ends, so the proxy must wait on the client.
    const img = makeImage(fake!, 'acme/app', '1.0', { layerSize: 48 * 1024 * 1024 });
    expect((await fetch(`${p.url}/v2/acme/app/manifests/1.0`)).status).toBe(200);
    const { socket, received, closed } = await rawSocket(p.url);
    socket.write(`GET /v2/acme/app/blobs/${img.layerDigests[0]} HTTP/1.1\r\nHost: x\r\n\r\n`);
    // Read the first bytes, then nothing more: the kernel buffers fill and the response stalls.
    await new Promise<void>((resolve) => socket.once('data', () => resolve()));
    socket.pause();
    const limited = 'pullwarden_requests_limited_total{reason="send-timeout"} 1';
    let counted = false;
    for (let i = 0; i < 40 && !counted; i++) {
      await sleep(500);
      counted = (await (await fetch(`${p.url}/metrics`)).text()).includes(limited);
    }
    expect(counted).toBe(true);
    // Reading again: what was in flight arrives, then the connection ends short of the blob.
    socket.resume();
    const ended = await Promise.race([closed.then(() => true), sleep(10_000).then(() => false)]);
    expect(ended).toBe(true);
    expect(received().length).toBeLessThan(48 * 1024 * 1024);
    // A client that reads normally is not affected, even when the proxy itself takes its time.
    fake!.fault({ kind: 'manifest', method: 'GET' }, { delayHeadersMs: 2_500 }, { times: 1 });
    const other = makeImage(fake!, 'acme/app', '2.0');
    const slowUpstream = await fetch(`${p.url}/v2/acme/app/manifests/2.0`);
    expect(slowUpstream.status).toBe(200);
    expect(other.manifestDigest).toBe(slowUpstream.headers.get('docker-content-digest'));
  }, 40_000);

  for (const method of ['PUT', 'POST', 'PATCH', 'DELETE', 'OPTIONS', 'TRACE']) {
    it(`answers ${method} on /v2 with 405 UNSUPPORTED at once, without reading the body`, async () => {
      const p = await start();
      const { socket, received, closed } = await rawSocket(p.url);
      // Headers announce 10 MiB that never come: the answer must not wait for them.
      socket.write(
        `${method} /v2/acme/app/blobs/uploads/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 10485760\r\n\r\n`,
      );
      await closed;
      const text = received();
      expect(text).toMatch(/^HTTP\/1\.1 405/);
      expect(text).toContain('"code":"UNSUPPORTED"');
      expect(text.toLowerCase()).toContain('\r\nallow: get, head\r\n');
      const metrics = await (await fetch(`${p.url}/metrics`)).text();
      const reason = ['OPTIONS', 'TRACE'].includes(method) ? 'other-method' : 'write-method';
      expect(metrics).toContain(`pullwarden_requests_limited_total{reason="${reason}"} 1`);
      expect(text.toLowerCase()).toContain('x-content-type-options: nosniff');
    }, 15_000);
  }
});

describe('shutdown', () => {
  it('finishes the response in flight and answers a request that arrives meanwhile with an OCI 503', async () => {
    const p = await start();
    const img = makeImage(fake!, 'acme/app', '1.0', { layerSize: 2 * 1024 * 1024 });
    const layer = img.layerDigests[0]!;
    expect((await fetch(`${p.url}/v2/acme/app/manifests/1.0`)).status).toBe(200);
    // A slow upstream body keeps the first request in flight while the server closes.
    fake!.fault({ kind: 'blob', method: 'GET' }, { delayBodyMs: 20, chunkBytes: 128 * 1024 });
    const { socket, received, closed } = await rawSocket(p.url);
    socket.write(`GET /v2/acme/app/blobs/${layer} HTTP/1.1\r\nHost: x\r\n\r\n`);
    for (let i = 0; i < 100 && !received().includes('\r\n\r\n'); i++) await sleep(20);
    expect(received()).toMatch(/^HTTP\/1\.1 200/);
    const closing = p.close({ keepData: true });
    await sleep(50);
    socket.write('GET /v2/acme/app/manifests/1.0 HTTP/1.1\r\nHost: x\r\n\r\n');
    await Promise.race([closed, sleep(20_000)]);
    await closing;
    proxy = undefined;
    dirs.push(p.dir);
    // The refused request named an image: it has its event, as every other refusal.
    const refused = await auditEvents(p, (e) => e.type === 'manifest' && e.status === 503);
    expect(refused).toHaveLength(1);
    expect(refused[0]).toMatchObject({ repository: 'acme/app', decision: 'deny' });
    const text = received();
    const second = text.indexOf('HTTP/1.1 503');
    expect(second, text.slice(0, 300)).toBeGreaterThan(2 * 1024 * 1024);
    const tail = text.slice(second);
    expect(tail.toLowerCase()).toContain('content-type: application/json');
    expect(tail.toLowerCase()).toContain('retry-after: 1');
    expect(tail).toContain('"code":"UNAVAILABLE"');
    expect(tail).toContain('shutting down');
  }, 30_000);
});

function rawGet(url: string, path: string): Promise<{ status: number; body: string }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: hostname, port, path, method: 'GET' }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('names and references', () => {
  it('refuses path tricks in names and references with an OCI error before anything goes upstream', async () => {
    const p = await start();
    makeImage(fake!, 'acme/app', '1.0');
    const digest = `sha256:${'a'.repeat(64)}`;
    const cases: [string, string][] = [
      ['/v2/acme/../app/manifests/1.0', 'NAME_INVALID'],
      ['/v2/acme/./app/manifests/1.0', 'NAME_INVALID'],
      ['/v2/acme//app/manifests/1.0', 'NAME_INVALID'],
      ['/v2/acme/app%2f..%2fother/manifests/1.0', 'NAME_INVALID'],
      ['/v2/acme%2Fapp/manifests/1.0', 'NAME_INVALID'],
      ['/v2/acme/app%00/manifests/1.0', 'NAME_INVALID'],
      ['/v2/acme/app%0d%0aX-Injected:%201/manifests/1.0', 'NAME_INVALID'],
      ['/v2/acme/app/manifests/1.0%0d%0a', 'NAME_INVALID'],
      ['/v2/acme/app/manifests/%2e%2e', 'NAME_INVALID'],
      ['/v2/acme/app/manifests/..', 'MANIFEST_INVALID'],
      [`/v2/${'a'.repeat(256)}/manifests/1.0`, 'NAME_INVALID'],
      [`/v2/acme/app/manifests/${'t'.repeat(129)}`, 'MANIFEST_INVALID'],
      ['/v2/ACME/app/manifests/1.0', 'NAME_INVALID'],
      [`/v2/acme/app/manifests/1.0?ns=${encodeURIComponent(`${fake!.host}\r\nX: y`)}`, 'NAME_INVALID'],
      // Two upstreams named: refused, not "the first" (another hop may read the last).
      [`/v2/acme/app/manifests/1.0?ns=${fake!.host}&ns=${fake!.host}`, 'NAME_INVALID'],
      [`/v2/acme/app/blobs/${digest}?ns=${fake!.host}&ns=evil.example`, 'NAME_INVALID'],
      [`/v2/acme/app/blobs/${digest.toUpperCase()}`, 'DIGEST_INVALID'],
      [`/v2/acme/app/blobs/${digest.slice(0, -1)}`, 'DIGEST_INVALID'],
      [`/v2/acme/app/referrers/${digest}x`, 'DIGEST_INVALID'],
    ];
    for (const [path, code] of cases) {
      // node:http sends the path as written (fetch would resolve `..` and `.` first).
      const res = await rawGet(p.url, path);
      expect(res.status, path).toBe(400);
      const body = JSON.parse(res.body) as { errors: { code: string }[] };
      expect(body.errors[0]?.code, path).toBe(code);
    }
    expect(fake!.count()).toBe(0);
  });
});

describe('malformed HTTP', () => {
  /** Send `raw` on a fresh connection and parse the one answer that comes back before it closes. */
  async function rawExchange(
    url: string,
    raw: string,
  ): Promise<{ status: number; headers: string; body: { errors: { code: string; message: string }[] } }> {
    const { socket, received, closed } = await rawSocket(url);
    socket.write(raw);
    // Until the connection closes or one whole answer (headers and Content-Length bytes) is in.
    const complete = (): boolean => {
      const t = received();
      const at = t.indexOf('\r\n\r\n');
      const length = /\r\ncontent-length: *(\d+)/i.exec(t.slice(0, at));
      return at >= 0 && length !== null && Buffer.byteLength(t.slice(at + 4), 'latin1') >= Number(length[1]);
    };
    let open = true;
    void closed.then(() => (open = false));
    for (let i = 0; i < 100 && open && !complete(); i++) await sleep(50);
    socket.destroy();
    const text = received();
    const end = text.indexOf('\r\n\r\n');
    const head = text.slice(0, end);
    const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0);
    return { status, headers: head.toLowerCase(), body: JSON.parse(text.slice(end + 4)) as never };
  }

  const cases: [string, string, string, RegExp][] = [
    [
      'both Transfer-Encoding and Content-Length (request smuggling)',
      'GET /v2/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n',
      'SIZE_INVALID',
      /Content-Length can't be present with Transfer-Encoding/,
    ],
    [
      'a Content-Length that is not a number',
      'GET /v2/ HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\n',
      'SIZE_INVALID',
      /Content-Length/,
    ],
    [
      'a header name with a space in it',
      'GET /v2/ HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n',
      'NAME_INVALID',
      /header/,
    ],
    [
      'an oversize header block',
      `GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(32 * 1024)}\r\n\r\n`,
      'SIZE_INVALID',
      /header block/,
    ],
    [
      'a bad percent-encoding in the path',
      'GET /v2/acme/%zz/manifests/1.0 HTTP/1.1\r\nHost: x\r\n\r\n',
      'NAME_INVALID',
      /not a valid url/i,
    ],
    ['no Host header in HTTP/1.1', 'GET /v2/acme/app/manifests/1.0 HTTP/1.1\r\n\r\n', 'NAME_INVALID', /Host/],
    [
      'two Host headers (one proxy may route by the first, another by the last)',
      'GET /v2/acme/app/manifests/1.0 HTTP/1.1\r\nHost: x\r\nHost: 127.0.0.1:9\r\n\r\n',
      'NAME_INVALID',
      /one Host header/,
    ],
    ['a request line that is not HTTP', 'GET /v2/ HTTQ/1.1\r\nHost: x\r\n\r\n', 'NAME_INVALID', /HTTP/],
  ];
  for (const [what, raw, code, why] of cases) {
    it(`answers ${what} with 400 and an OCI error that says why, before anything goes upstream`, async () => {
      const p = await start();
      const res = await rawExchange(p.url, raw);
      expect(res.status).toBe(400);
      expect(res.headers).toContain('content-type: application/json');
      expect(res.headers).toContain('x-content-type-options: nosniff');
      expect(res.body.errors[0]?.code).toBe(code);
      expect(res.body.errors[0]?.message).toMatch(why);
      expect(fake!.count()).toBe(0);
    });
  }
});

describe('malformed requests that name an image', () => {
  it('audits the refusal of a request with two Host headers (decision deny, nothing upstream)', async () => {
    const p = await start();
    makeImage(fake!, 'acme/app', '1.0');
    const { socket, closed } = await rawSocket(p.url);
    socket.write('GET /v2/acme/app/manifests/1.0 HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n');
    await Promise.race([closed, sleep(10_000)]);
    const refused = await auditEvents(p, (e) => e.status === 400);
    expect(refused).toHaveLength(1);
    expect(refused[0]).toMatchObject({ type: 'manifest', repository: 'acme/app', decision: 'deny' });
    expect(refused[0]?.reasons?.[0]).toMatch(/one Host header/);
    expect(fake!.count()).toBe(0);
  });
});

describe('query parameters', () => {
  it('refuses a repeated, malformed or badly encoded query parameter with an OCI error, before anything goes upstream', async () => {
    const p = await start();
    makeImage(fake!, 'acme/app', '1.0');
    const digest = `sha256:${'a'.repeat(64)}`;
    const tags = '/v2/acme/app/tags/list';
    const referrers = `/v2/acme/app/referrers/${digest}`;
    const cases: [string, string, string][] = [
      [`${tags}?n=1&n=2`, 'SIZE_INVALID', 'query-parameter-repeated'],
      [`${tags}?n=abc`, 'SIZE_INVALID', 'query-parameter-invalid'],
      [`${tags}?n=-1`, 'SIZE_INVALID', 'query-parameter-invalid'],
      [`${tags}?n=1e3`, 'SIZE_INVALID', 'query-parameter-invalid'],
      [`${tags}?n=${'9'.repeat(10)}`, 'SIZE_INVALID', 'query-parameter-invalid'],
      [`${tags}?last=a&last=b`, 'MANIFEST_INVALID', 'query-parameter-repeated'],
      [`${tags}?last=..%2Fother`, 'MANIFEST_INVALID', 'query-parameter-invalid'],
      [`${tags}?n=%zz`, 'NAME_INVALID', 'query-encoding-invalid'],
      [`${tags}?last=%C0%AF`, 'NAME_INVALID', 'query-encoding-invalid'],
      [`${referrers}?artifactType=a/b&artifactType=c/d`, 'MANIFEST_INVALID', 'query-parameter-repeated'],
      [`${referrers}?artifactType=notamediatype`, 'MANIFEST_INVALID', 'query-parameter-invalid'],
      [`${referrers}?artifactType=a/b,c/d`, 'MANIFEST_INVALID', 'query-parameter-invalid'],
      [`${referrers}?artifactType=a/b%3B%20x%3Dy`, 'MANIFEST_INVALID', 'query-parameter-invalid'],
      [`${referrers}?artifactType=%`, 'NAME_INVALID', 'query-encoding-invalid'],
      [`/v2/acme/app/manifests/1.0?ns=%zz`, 'NAME_INVALID', 'query-encoding-invalid'],
      [
        `/v2/acme/app/manifests/1.0?ns=${fake!.host}&ns=${fake!.host}`,
        'NAME_INVALID',
        'query-parameter-repeated',
      ],
    ];
    for (const [path, code, reason] of cases) {
      const res = await rawGet(p.url, path);
      expect(res.status, path).toBe(400);
      const body = JSON.parse(res.body) as { errors: { code: string; message: string; detail: unknown }[] };
      expect(body.errors[0], path).toMatchObject({ code, detail: { reason } });
      expect(body.errors[0]?.message, path).toMatch(/query (parameter|string)/);
    }
    expect(fake!.count()).toBe(0);
    // One value of each, and an empty filter, are answered.
    for (const path of [
      `${tags}?n=1&last=0.9`,
      `${tags}?n=0`,
      `${referrers}?artifactType=`,
      `${referrers}?artifactType=application/vnd.dev.cosign.artifact.sig.v1%2Bjson`,
    ]) {
      expect((await rawGet(p.url, path)).status, path).toBe(200);
    }
  });
});

describe('response headers', () => {
  it('sends X-Content-Type-Options: nosniff on every answer, errors included', async () => {
    const p = await start();
    makeImage(fake!, 'acme/app', '1.0');
    for (const path of [
      '/v2/',
      '/v2/acme/app/manifests/1.0',
      '/v2/acme/app/manifests/missing',
      '/v2/../etc',
      '/nowhere',
      '/healthz',
      '/readyz',
      '/metrics',
    ]) {
      const res = await fetch(`${p.url}${path}`);
      await res.arrayBuffer();
      expect(res.headers.get('x-content-type-options'), path).toBe('nosniff');
    }
  });
});

describe('/metrics', () => {
  async function withToken(extra: Record<string, unknown> = {}): Promise<TestProxy> {
    const dir = await mkdtemp(join(tmpdir(), 'pw-metrics-'));
    dirs.push(dir);
    const tokenFile = join(dir, 'token');
    await writeFile(tokenFile, 'prometheus-secret\n');
    return start({
      auth: {
        tokens: [{ name: 'prometheus', tokenFile, repositories: ['**'] }],
      },
      ...extra,
    });
  }

  it('needs the same credentials as /v2 when pull auth is configured', async () => {
    const p = await withToken();
    const anonymous = await fetch(`${p.url}/metrics`);
    expect(anonymous.status).toBe(401);
    expect(await anonymous.text()).not.toContain('pullwarden_');
    const wrong = await fetch(`${p.url}/metrics`, { headers: { authorization: 'Bearer nope' } });
    expect(wrong.status).toBe(401);
    const ok = await fetch(`${p.url}/metrics`, { headers: { authorization: 'Bearer prometheus-secret' } });
    expect(ok.status).toBe(200);
    expect(await ok.text()).toContain('pullwarden_http_requests_total');
  });

  it('can be opened on the registry port with metrics.auth: false', async () => {
    const p = await withToken({ metrics: { auth: false } });
    expect((await fetch(`${p.url}/metrics`)).status).toBe(200);
  });

  it('moves to metrics.listen, and the registry port no longer serves it', async () => {
    const p = await withToken({ metrics: { listen: '127.0.0.1:0' } });
    const main = await fetch(`${p.url}/metrics`, { headers: { authorization: 'Bearer prometheus-secret' } });
    expect(main.status).toBe(404);
    expect(await main.text()).not.toContain('pullwarden_');
    const address = p.handle.metricsAddress;
    expect(address).toBeDefined();
    const res = await fetch(`${address}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    expect(await res.text()).toContain('pullwarden_http_requests_total');
    // The metrics port serves metrics only, never the registry.
    expect((await fetch(`${address}/v2/`)).status).toBe(404);
  });
});

describe('disk headroom (storage.reserve)', () => {
  it('refuses cache fills below the reserve with 503 and a reason, keeps auditing, and warns on /readyz and /metrics', async () => {
    // No test machine has 99.9 % of its disk free: the reserve is not met.
    const p = await start({ storage: { dir: join(await tmpDir(), 'data'), reserve: '99.9%' } });
    const img = makeImage(fake!, 'acme/app', '1.0');
    const manifest = await fetch(`${p.url}/v2/acme/app/manifests/1.0`);
    expect(manifest.status).toBe(200);
    fake!.resetCounts();

    const blob = await fetch(`${p.url}/v2/acme/app/blobs/${img.layerDigests[0]}`);

    expect(blob.status).toBe(503);
    expect(blob.headers.get('retry-after')).toBe('30');
    const body = (await blob.json()) as { errors: { code: string; message: string }[] };
    expect(body.errors[0]?.message).toContain('storage.reserve');
    const ready = await fetch(`${p.url}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({
      status: 'warning',
      warnings: [expect.stringContaining('storage.reserve')],
    });
    const metrics = await (await fetch(`${p.url}/metrics`)).text();
    expect(metrics).toContain('pullwarden_storage_headroom_low 1');
    expect(metrics).toMatch(/pullwarden_storage_free_bytes \d+/);
  });

  it('reports ready without warnings when the reserve is met', async () => {
    const p = await start({ storage: { dir: join(await tmpDir(), 'data'), reserve: '1MiB' } });
    expect(await (await fetch(`${p.url}/readyz`)).json()).toEqual({ status: 'ready' });
    expect(await (await fetch(`${p.url}/metrics`)).text()).toContain('pullwarden_storage_headroom_low 0');
  });
});

async function tmpDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'pw-headroom-'));
  dirs.push(d);
  return d;
}
