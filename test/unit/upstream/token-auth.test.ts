import { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import { describe, expect, it } from 'vitest';
import type { Exchange } from '../../../src/upstream/exchange.ts';
import { readLimited } from '../../../src/upstream/http-util.ts';
import { TokenAuth } from '../../../src/upstream/token-auth.ts';
import type { AuthTransport } from '../../../src/upstream/token-auth.ts';
import { registryFailure as failure } from '../../support/registry-error.ts';
import { quiet, upstreamErrors } from './helpers.ts';

interface Call {
  url: string;
  kind: string;
  authorization: string | undefined;
}

type Answer = { status: number; headers?: Record<string, string>; body?: string };

/** A transport that answers from `route` and records every request it was asked to send. */
function fakeTransport(route: (url: URL, authorization: string | undefined) => Answer) {
  const calls: Call[] = [];
  const transport: AuthTransport = {
    dispatch(ex, authorization) {
      calls.push({ url: ex.url.href, kind: ex.kind, authorization });
      const a = route(ex.url, authorization);
      return Promise.resolve({
        statusCode: a.status,
        headers: a.headers ?? {},
        body: Readable.from([Buffer.from(a.body ?? '')]),
      } as unknown as Dispatcher.ResponseData);
    },
    async readBody(_ex, res, limit) {
      return (await readLimited(res.body, limit)) ?? Buffer.alloc(0);
    },
  };
  return { transport, calls };
}

function auth(
  route: (url: URL, authorization: string | undefined) => Answer,
  options: { base?: string; realms?: string[]; username?: string; password?: string } = {},
) {
  const { transport, calls } = fakeTransport(route);
  const { errors, refused } = upstreamErrors();
  const tokenAuth = new TokenAuth({
    host: 'registry.example',
    base: new URL(options.base ?? 'https://registry.example'),
    credentials: { username: options.username, password: options.password },
    realms: options.realms ?? [],
    transport,
    errors,
    log: quiet,
  });
  return { tokenAuth, calls, refused };
}

function manifestExchange(
  repository: string,
  url = `https://registry.example/v2/${repository}/manifests/1`,
): Exchange {
  return {
    kind: 'manifest',
    method: 'HEAD',
    url: new URL(url),
    headers: {},
    repository,
    what: `manifest ${repository}:1`,
    authenticate: true,
    signal: undefined,
  };
}

/** A registry that wants a bearer token from `realm`, and a token service there. */
function bearerRegistry(realm: string) {
  return (url: URL, authorization: string | undefined): Answer => {
    if (url.pathname === '/token') {
      return {
        status: 200,
        body: JSON.stringify({ token: `t-${url.searchParams.get('scope')}`, expires_in: 300 }),
      };
    }
    if (authorization?.startsWith('Bearer t-') === true) return { status: 200 };
    return {
      status: 401,
      headers: { 'www-authenticate': `Bearer realm="${realm}",service="registry.example"` },
    };
  };
}

describe('TokenAuth', () => {
  it('answers a bearer challenge once and reuses the token for the scope', async () => {
    const { tokenAuth, calls } = auth(bearerRegistry('https://registry.example/token'));
    expect((await tokenAuth.exchange(manifestExchange('library/nginx'))).statusCode).toBe(200);
    expect(calls.map((c) => c.kind)).toEqual(['manifest', 'token', 'manifest']);
    const token = new URL(calls[1]!.url);
    expect(token.searchParams.get('scope')).toBe('repository:library/nginx:pull');
    expect(token.searchParams.get('service')).toBe('registry.example');
    expect(calls[2]?.authorization).toBe('Bearer t-repository:library/nginx:pull');

    await tokenAuth.exchange(manifestExchange('library/nginx'));
    expect(calls).toHaveLength(4);
    expect(calls[3]?.authorization).toBe('Bearer t-repository:library/nginx:pull');
  });

  it('fetches the token of a new scope up front once the realm is known', async () => {
    const { tokenAuth, calls } = auth(bearerRegistry('https://registry.example/token'));
    await tokenAuth.exchange(manifestExchange('a/one'));
    await tokenAuth.exchange(manifestExchange('a/two'));
    expect(calls.map((c) => c.kind)).toEqual(['manifest', 'token', 'manifest', 'token', 'manifest']);
  });

  it('refuses a realm off the upstream host unless configured, sending no credentials', async () => {
    const elsewhere = bearerRegistry('https://auth.elsewhere.example/token');
    const refusedSetup = auth(elsewhere, { username: 'u', password: 'secret' });
    const err = await failure(refusedSetup.tokenAuth.exchange(manifestExchange('r')));
    expect(err.detail).toEqual({ reason: 'realm-host', realm: 'https://auth.elsewhere.example' });
    expect(refusedSetup.refused).toEqual(['realm-host']);
    expect(refusedSetup.calls.map((c) => c.kind)).toEqual(['manifest']);
    expect(refusedSetup.calls[0]?.authorization).toBeUndefined();

    const allowed = auth(elsewhere, { realms: ['auth.elsewhere.example'], username: 'u', password: 'p' });
    expect((await allowed.tokenAuth.exchange(manifestExchange('r'))).statusCode).toBe(200);
    expect(allowed.calls[1]?.authorization).toBe(`Basic ${Buffer.from('u:p').toString('base64')}`);
  });

  it("trusts docker.io's auth.docker.io realm without configuration", () => {
    const { tokenAuth } = auth(bearerRegistry('x'), { base: 'https://registry-1.docker.io' });
    expect(tokenAuth.realmAllowed('auth.docker.io', 443)).toBe(true);
    expect(tokenAuth.realmAllowed('auth.elsewhere.example', 443)).toBe(false);
  });

  it('refuses a plain-http or non-URL realm from an https upstream', async () => {
    for (const realm of ['http://registry.example/token', 'not a url', 'ftp://registry.example/token']) {
      const { tokenAuth, calls, refused } = auth(bearerRegistry(realm));
      const err = await failure(tokenAuth.exchange(manifestExchange('r')));
      expect(err.detail).toEqual({ reason: 'realm-unusable' });
      expect(refused).toEqual(['realm-unusable']);
      expect(calls).toHaveLength(1);
    }
  });

  it('answers a basic challenge, then sends basic auth up front', async () => {
    const basic = `Basic ${Buffer.from('u:p').toString('base64')}`;
    const { tokenAuth, calls } = auth(
      (_url, authorization) =>
        authorization === basic
          ? { status: 200 }
          : { status: 401, headers: { 'www-authenticate': 'Basic realm="registry"' } },
      { username: 'u', password: 'p' },
    );
    await tokenAuth.exchange(manifestExchange('r'));
    await tokenAuth.exchange(manifestExchange('r'));
    expect(calls.map((c) => c.authorization)).toEqual([undefined, basic, basic]);
  });

  it('is DENIED when the credentials are refused or there are none to send', async () => {
    const always401 = () => ({ status: 401, headers: { 'www-authenticate': 'Basic realm="r"' } });
    const withCredentials = auth(always401, { username: 'u', password: 'p' });
    expect((await failure(withCredentials.tokenAuth.exchange(manifestExchange('r')))).code).toBe('DENIED');
    expect(withCredentials.calls).toHaveLength(2);
    const without = auth(always401);
    expect((await failure(without.tokenAuth.exchange(manifestExchange('r')))).code).toBe('DENIED');
    expect(without.calls).toHaveLength(1);
  });

  it('sends nothing to an origin other than the registry (a blob CDN)', async () => {
    const { tokenAuth, calls } = auth(() => ({ status: 200 }), { username: 'u', password: 'p' });
    await tokenAuth.exchange(manifestExchange('r', 'https://cdn.example/blob?sig=1'));
    expect(calls).toEqual([
      { url: 'https://cdn.example/blob?sig=1', kind: 'manifest', authorization: undefined },
    ]);
  });

  it('is UNAVAILABLE when the token service sends no usable token', async () => {
    for (const body of [
      '{}',
      'not json',
      JSON.stringify({ token: 'has space' }),
      JSON.stringify({ token: '' }),
    ]) {
      const { tokenAuth } = auth((url) =>
        url.pathname === '/token'
          ? { status: 200, body }
          : { status: 401, headers: { 'www-authenticate': 'Bearer realm="https://registry.example/token"' } },
      );
      const err = await failure(tokenAuth.exchange(manifestExchange('r')));
      expect([err.code, err.message]).toEqual([
        'UNAVAILABLE',
        'upstream registry.example token service sent no usable token',
      ]);
    }
  });

  it('takes access_token as the OAuth 2 alias of token', async () => {
    const { tokenAuth, calls } = auth((url, authorization) => {
      if (url.pathname === '/token') return { status: 200, body: JSON.stringify({ access_token: 'oauth' }) };
      if (authorization === 'Bearer oauth') return { status: 200 };
      return {
        status: 401,
        headers: { 'www-authenticate': 'Bearer realm="https://registry.example/token"' },
      };
    });
    expect((await tokenAuth.exchange(manifestExchange('r'))).statusCode).toBe(200);
    expect(calls[2]?.authorization).toBe('Bearer oauth');
  });
});
