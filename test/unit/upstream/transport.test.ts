import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { RegistryError } from '../../../src/oci/index.ts';
import { UpstreamErrors } from '../../../src/upstream/errors.ts';
import type { Exchange } from '../../../src/upstream/exchange.ts';
import type { UpstreamRequestInfo } from '../../../src/upstream/options.ts';
import { Transport } from '../../../src/upstream/transport.ts';
import { freePort } from '../../support/ports.ts';
import { quiet } from './helpers.ts';

const config = {
  connectTimeout: 2_000,
  headersTimeout: 2_000,
  bodyTimeout: 2_000,
  retries: 2,
  connections: 2,
  insecureSkipTLSVerify: false,
};

let server: Server | undefined;
let transport: Transport | undefined;

afterEach(async () => {
  await transport?.close();
  await new Promise((resolve) => (server === undefined ? resolve(undefined) : server.close(resolve)));
  server = undefined;
  transport = undefined;
});

/** A real HTTP server on 127.0.0.1:0 answering each request with the next status of `statuses`. */
async function serve(statuses: number[], body = 'x'): Promise<{ url: string; hits: () => number }> {
  let hits = 0;
  server = createServer((req, res) => {
    const status = statuses[Math.min(hits, statuses.length - 1)] ?? 200;
    hits++;
    res.writeHead(status, { 'content-type': 'text/plain', 'x-ua': req.headers['user-agent'] ?? '' });
    res.end(body);
  });
  await new Promise<void>((resolve) => server?.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}/v2/r/manifests/1`, hits: () => hits };
}

function start(retries = 2) {
  const requests: UpstreamRequestInfo[] = [];
  const errors = new UpstreamErrors({ host: 'registry.example', config, log: quiet, onRefused: undefined });
  transport = new Transport({
    host: 'registry.example',
    config: { ...config, retries },
    log: quiet,
    errors,
    trustedHost: () => true,
    onRequest: (info) => requests.push(info),
    retryDelayMs: 1,
    userAgent: 'pullwarden-test',
    lookup: undefined,
  });
  return { transport, requests };
}

function exchange(url: string): Exchange {
  return {
    kind: 'manifest',
    method: 'GET',
    url: new URL(url),
    headers: {},
    repository: 'r',
    what: 'manifest r:1',
    authenticate: false,
    signal: undefined,
  };
}

describe('Transport', () => {
  it('retries a 5xx once, and reports every attempt', async () => {
    const { url, hits } = await serve([503, 200]);
    const { transport, requests } = start();
    const res = await transport.dispatch(exchange(url), undefined);
    expect(res.statusCode).toBe(200);
    expect(res.headers['x-ua']).toBe('pullwarden-test');
    await res.body.dump();
    expect(hits()).toBe(2);
    expect(requests.map((r) => r.status)).toEqual([503, 200]);
  });

  it('does not retry a 501 (it means never)', async () => {
    const notImplemented = await serve([501, 200]);
    const res = await start().transport.dispatch(exchange(notImplemented.url), undefined);
    expect(res.statusCode).toBe(501);
    await res.body.dump();
    expect(notImplemented.hits()).toBe(1);
  });

  it('does not retry a 5xx with retries: 0', async () => {
    const { url, hits } = await serve([503, 200]);
    const res = await start(0).transport.dispatch(exchange(url), undefined);
    expect(res.statusCode).toBe(503);
    await res.body.dump();
    expect(hits()).toBe(1);
  });

  it('answers the second 5xx as it is', async () => {
    const { url, hits } = await serve([502, 502, 200]);
    const res = await start().transport.dispatch(exchange(url), undefined);
    expect(res.statusCode).toBe(502);
    await res.body.dump();
    expect(hits()).toBe(2);
  });

  it('retries a refused connection `retries` times, then is UNAVAILABLE', async () => {
    const port = await freePort();
    const { transport, requests } = start(2);
    const err = await transport
      .dispatch(exchange(`http://127.0.0.1:${port}/v2/`), undefined)
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RegistryError);
    expect((err as RegistryError).message).toBe(
      'upstream registry.example failed while sending manifest r:1 (ECONNREFUSED)',
    );
    expect(requests.map((r) => r.status)).toEqual(['error', 'error', 'error']);
  });

  it('reads a buffered body up to its limit and refuses a longer one', async () => {
    const { url } = await serve([200, 200], 'abcdef');
    const { transport } = start();
    const ex = exchange(url);
    expect((await transport.readBody(ex, await transport.dispatch(ex, undefined), 6)).toString()).toBe(
      'abcdef',
    );
    const err = (await transport
      .readBody(ex, await transport.dispatch(ex, undefined), 5)
      .catch((e: unknown) => e)) as RegistryError;
    expect([err.code, err.message]).toEqual([
      'UNAVAILABLE',
      'upstream registry.example sent more than 5 bytes for manifest r:1',
    ]);
  });
});
