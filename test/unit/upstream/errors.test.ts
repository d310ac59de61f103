import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { AddressRefusedError } from '../../../src/upstream/address-guard.ts';
import { ociErrorCode, UpstreamErrors } from '../../../src/upstream/errors.ts';
import type { Exchange, UpstreamResponse } from '../../../src/upstream/exchange.ts';
import { BodyDeadlineError } from '../../../src/upstream/http-util.ts';
import { quiet, upstreamErrors } from './helpers.ts';

const manifestGet: Pick<Exchange, 'kind' | 'method' | 'repository' | 'what'> = {
  kind: 'manifest',
  method: 'GET',
  repository: 'library/nginx',
  what: 'manifest library/nginx:1.27',
};

function answer(statusCode: number, body = '', headers: UpstreamResponse['headers'] = {}): UpstreamResponse {
  return { statusCode, headers, body: Readable.from([Buffer.from(body)]) };
}

function errors() {
  const { errors: built, refused, warned } = upstreamErrors();
  return { built, refused, warned };
}

describe('UpstreamErrors.failure', () => {
  it("takes the upstream's not-found code from a 404 GET body, and never its message", async () => {
    const { built } = errors();
    const body = JSON.stringify({ errors: [{ code: 'NAME_UNKNOWN', message: 'secret detail' }] });
    const err = await built.failure(manifestGet, answer(404, body), 'MANIFEST_UNKNOWN');
    expect(err.code).toBe('NAME_UNKNOWN');
    expect(err.message).toBe('manifest library/nginx:1.27 is unknown to upstream registry.example');
  });

  it("uses the caller's not-found code for a HEAD, an empty body or a code outside the set", async () => {
    const { built } = errors();
    const denied = JSON.stringify({ errors: [{ code: 'DENIED' }] });
    for (const [ex, body] of [
      [{ ...manifestGet, method: 'HEAD' as const }, JSON.stringify({ errors: [{ code: 'NAME_UNKNOWN' }] })],
      [manifestGet, ''],
      [manifestGet, denied],
      [manifestGet, 'not json'],
    ] as const) {
      expect((await built.failure(ex, answer(404, body), 'BLOB_UNKNOWN')).code).toBe('BLOB_UNKNOWN');
    }
  });

  it('maps 401 and 403 to DENIED, naming the token service when the token request failed', async () => {
    const { built } = errors();
    for (const status of [401, 403]) {
      const err = await built.failure(manifestGet, answer(status), 'MANIFEST_UNKNOWN');
      expect([err.code, err.message]).toEqual([
        'DENIED',
        'upstream registry.example refused access to library/nginx',
      ]);
    }
    const token = { ...manifestGet, kind: 'token' as const, what: 'token for library/nginx' };
    const err = await built.failure(token, answer(404), 'UNAVAILABLE');
    expect(err.code).toBe('UNAVAILABLE');
    expect((await built.failure(token, answer(403), 'UNAVAILABLE')).message).toBe(
      'upstream registry.example token service refused access to library/nginx',
    );
  });

  it('maps 429 to TOOMANYREQUESTS and 5xx to UNAVAILABLE, keeping Retry-After', async () => {
    const { built } = errors();
    const limited = await built.failure(
      manifestGet,
      answer(429, '', { 'retry-after': '7' }),
      'MANIFEST_UNKNOWN',
    );
    expect([limited.code, limited.retryAfter]).toEqual(['TOOMANYREQUESTS', 7]);
    const down = await built.failure(manifestGet, answer(502), 'MANIFEST_UNKNOWN');
    expect([down.code, down.retryAfter, down.message]).toEqual([
      'UNAVAILABLE',
      undefined,
      'upstream registry.example answered 502 for manifest library/nginx:1.27',
    ]);
  });

  it('consumes or destroys every body it is handed', async () => {
    const { built } = errors();
    for (const status of [404, 401, 429, 500]) {
      const res = answer(status, '{"errors":[]}');
      await built.failure(manifestGet, res, 'MANIFEST_UNKNOWN');
      expect(res.body.destroyed || res.body.readableEnded).toBe(true);
    }
  });
});

describe('UpstreamErrors.transport', () => {
  it('names the timeout that ran out', () => {
    const { built } = errors();
    const coded = (code: string) => Object.assign(new Error(code), { code });
    const what = { what: 'blob r@sha256:x' };
    expect(built.transport(what, coded('UND_ERR_HEADERS_TIMEOUT')).message).toBe(
      'upstream registry.example sent no response within 2000 ms (blob r@sha256:x)',
    );
    expect(built.transport(what, coded('UND_ERR_BODY_TIMEOUT')).message).toBe(
      'upstream registry.example stalled for 3000 ms while sending blob r@sha256:x',
    );
    expect(built.transport(what, coded('UND_ERR_CONNECT_TIMEOUT')).message).toBe(
      'could not connect to upstream registry.example within 1000 ms',
    );
    expect(built.transport(what, new BodyDeadlineError(5)).message).toMatch(/too slowly .* abandoned$/);
    const reset = built.transport(what, new Error('x', { cause: coded('ECONNRESET') }));
    expect([reset.code, reset.message]).toEqual([
      'UNAVAILABLE',
      'upstream registry.example failed while sending blob r@sha256:x (ECONNRESET)',
    ]);
  });

  it('counts and logs a connector refusal found in the cause chain, with the hint to allow the host', () => {
    const { built, refused, warned } = errors();
    const refusal = new AddressRefusedError('cdn.internal', '10.0.0.5', 'private');
    const err = built.transport({ what: 'blob r@sha256:x' }, new Error('connect', { cause: refusal }));
    expect(err.code).toBe('UNAVAILABLE');
    expect(err.detail).toEqual({ reason: 'redirect-refused', host: 'cdn.internal' });
    expect(err.message).toContain('add it to upstreams.registry.example.redirects.allow');
    expect(refused).toEqual(['redirect-address']);
    expect(warned).toHaveLength(1);
  });
});

describe('UpstreamErrors.refuse', () => {
  it('counts the reason, puts it in the detail, and survives a throwing counter', () => {
    const { built, refused } = errors();
    const err = built.refuse('realm-host', 'no', { realm: 'https://evil.example' });
    expect(err.detail).toEqual({ reason: 'realm-host', realm: 'https://evil.example' });
    expect(refused).toEqual(['realm-host']);
    const throwing = new UpstreamErrors({
      host: 'h',
      config: { connectTimeout: 1, headersTimeout: 1, bodyTimeout: 1 },
      log: quiet,
      onRefused: () => {
        throw new Error('metrics broke');
      },
    });
    expect(throwing.refuse('redirect-limit', 'no').code).toBe('UNAVAILABLE');
  });
});

describe('ociErrorCode', () => {
  it('gives up on an error body larger than 16 KiB', async () => {
    const big = JSON.stringify({ errors: [{ code: 'NAME_UNKNOWN' }], pad: 'x'.repeat(20_000) });
    expect(await ociErrorCode(Readable.from([Buffer.from(big)]))).toBeUndefined();
  });
});
