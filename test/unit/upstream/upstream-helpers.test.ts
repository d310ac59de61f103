import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { parseRetryAfter, parseWwwAuthenticate, UndiciUpstream } from '../../../src/upstream/index.ts';
import { TokenCache, tokenLifetimeMs } from '../../../src/upstream/token-cache.ts';

describe('parseWwwAuthenticate', () => {
  it('parses a Docker Hub bearer challenge', () => {
    expect(
      parseWwwAuthenticate(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull"',
      ),
    ).toEqual([
      {
        scheme: 'bearer',
        params: {
          realm: 'https://auth.docker.io/token',
          service: 'registry.docker.io',
          scope: 'repository:library/nginx:pull',
        },
      },
    ]);
  });

  it('keeps commas inside quoted values and splits several challenges', () => {
    const challenges = parseWwwAuthenticate([
      'Basic realm="a, b", Bearer realm="https://x/token", scope="repository:r:pull,push", error=insufficient_scope',
    ]);
    expect(challenges.map((c) => c.scheme)).toEqual(['basic', 'bearer']);
    expect(challenges[0]?.params.realm).toBe('a, b');
    expect(challenges[1]?.params).toEqual({
      realm: 'https://x/token',
      scope: 'repository:r:pull,push',
      error: 'insufficient_scope',
    });
  });

  it('unescapes quoted pairs and survives malformed input', () => {
    expect(parseWwwAuthenticate('Bearer realm="a\\"b"')[0]?.params.realm).toBe('a"b');
    expect(parseWwwAuthenticate('Bearer realm="unterminated')).toEqual([{ scheme: 'bearer', params: {} }]);
    expect(parseWwwAuthenticate(undefined)).toEqual([]);
  });
});

describe('parseRetryAfter', () => {
  it('accepts delay-seconds and HTTP dates', () => {
    const now = Date.parse('2025-01-01T00:00:00Z');
    expect(parseRetryAfter('7', now)).toBe(7);
    expect(parseRetryAfter('Wed, 01 Jan 2025 00:00:30 GMT', now)).toBe(30);
    expect(parseRetryAfter('Tue, 31 Dec 2024 23:00:00 GMT', now)).toBe(0);
    expect(parseRetryAfter('soon', now)).toBeUndefined();
    expect(parseRetryAfter(undefined, now)).toBeUndefined();
  });
});

describe('TokenCache', () => {
  it('shares one fetch between concurrent callers of a scope and expires before the token does', async () => {
    let now = 0;
    let fetches = 0;
    const cache = new TokenCache({ now: () => now });
    const fetch = async () => {
      fetches++;
      await Promise.resolve();
      return { token: `t${fetches}`, lifetimeMs: 60_000 };
    };
    const tokens = await Promise.all([cache.obtain('s', fetch), cache.obtain('s', fetch)]);
    expect(tokens).toEqual(['t1', 't1']);
    now = 44_999;
    expect(cache.get('s')).toBe('t1');
    now = 45_000;
    expect(cache.get('s')).toBeUndefined();
    expect(await cache.obtain('s', fetch)).toBe('t2');
  });

  it('forgets an invalidated token and does not cache a failed fetch', async () => {
    const cache = new TokenCache();
    await cache.obtain('s', () => Promise.resolve({ token: 'a', lifetimeMs: 60_000 }));
    cache.invalidate('s', 'a');
    expect(cache.get('s')).toBeUndefined();
    await expect(cache.obtain('s', () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    expect(await cache.obtain('s', () => Promise.resolve({ token: 'b', lifetimeMs: 60_000 }))).toBe('b');
  });

  it('evicts the oldest scope beyond its size', async () => {
    const cache = new TokenCache({ maxEntries: 2 });
    for (const s of ['a', 'b', 'c'])
      await cache.obtain(s, () => Promise.resolve({ token: s, lifetimeMs: 60_000 }));
    expect([cache.get('a'), cache.get('b'), cache.get('c')]).toEqual([undefined, 'b', 'c']);
  });
});

describe('UndiciUpstream construction', () => {
  it('accepts a pino logger and defaults the base URL to https://<host>', async () => {
    const upstream = new UndiciUpstream({
      host: 'registry.example',
      logger: pino({ level: 'silent' }),
      config: {
        connectTimeout: 1000,
        headersTimeout: 1000,
        bodyTimeout: 1000,
        retries: 0,
        connections: 1,
        insecureSkipTLSVerify: false,
      },
    });
    expect(upstream.host).toBe('registry.example');
    await upstream.close();
  });
});

describe('tokenLifetimeMs', () => {
  it('clamps expires_in to between 60 s and an hour, and treats nonsense as 60 s', () => {
    expect(tokenLifetimeMs(300)).toBe(300_000);
    expect(tokenLifetimeMs(10 * 365 * 24 * 3600)).toBe(3_600_000);
    expect(tokenLifetimeMs(Number.MAX_VALUE)).toBe(3_600_000);
    for (const nonsense of [0, -5, 0.001, 30, Number.NaN, Infinity, '300', null, undefined, {}]) {
      expect(tokenLifetimeMs(nonsense), JSON.stringify(nonsense) ?? 'undefined').toBe(60_000);
    }
  });
});
