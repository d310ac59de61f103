import { describe, expect, it } from 'vitest';
import type { RegistryError } from '../../../src/oci/index.ts';
import { isRedirect, MAX_REDIRECTS, RedirectPolicy } from '../../../src/upstream/redirects.ts';
import { quiet, upstreamErrors } from './helpers.ts';

const from = new URL('https://registry.example/v2/r/blobs/sha256:x');

function policy(base = 'https://registry.example', allowHttp = false) {
  const { errors, refused } = upstreamErrors();
  return {
    redirects: new RedirectPolicy({
      host: 'registry.example',
      base: new URL(base),
      allow: ['cdn.internal', '*.corp.example:8443'],
      allowHttp,
      errors,
      log: quiet,
    }),
    refused,
  };
}

function refusal(run: () => unknown): RegistryError {
  try {
    run();
  } catch (err) {
    return err as RegistryError;
  }
  throw new Error('expected a refusal');
}

describe('RedirectPolicy', () => {
  it('follows the statuses distribution and CDNs use, and only those', () => {
    expect([301, 302, 303, 307, 308].every(isRedirect)).toBe(true);
    expect([200, 300, 304, 305, 404].some(isRedirect)).toBe(false);
  });

  it('resolves a relative Location against the URL that sent it', () => {
    const { redirects, refused } = policy();
    expect(redirects.next('/cdn/blob?sig=abc', from, 'blob r', 0).href).toBe(
      'https://registry.example/cdn/blob?sig=abc',
    );
    expect(redirects.next('https://cdn.example/b', from, 'blob r', 0).origin).toBe('https://cdn.example');
    expect(refused).toEqual([]);
  });

  it('refuses a missing, unparseable or non-http(s) Location as unusable', () => {
    const { redirects, refused } = policy();
    for (const location of [undefined, 'http://[bad', 'file:///etc/passwd', 'ftp://cdn.example/b']) {
      const err = refusal(() => redirects.next(location, from, 'blob r', 0));
      expect([err.code, err.detail]).toEqual(['UNAVAILABLE', { reason: 'redirect-unusable' }]);
    }
    expect(refused).toEqual(Array(4).fill('redirect-unusable'));
  });

  it('refuses a Location with credentials in it, without echoing them', () => {
    const { redirects } = policy();
    const err = refusal(() => redirects.next('https://user:hunter2@cdn.example/b', from, 'blob r', 0));
    expect(err.detail).toEqual({ reason: 'redirect-unusable' });
    expect(err.message).not.toContain('hunter2');
  });

  it('refuses https → http unless redirects.allowHttp, and allows http → http', () => {
    const err = refusal(() => policy().redirects.next('http://cdn.example/b', from, 'blob r', 0));
    expect(err.detail).toEqual({ reason: 'redirect-http', host: 'cdn.example' });
    expect(err.message).toContain('upstreams.registry.example.redirects.allowHttp');
    expect(
      policy('https://registry.example', true).redirects.next('http://cdn.example/b', from, 'b', 0).protocol,
    ).toBe('http:');
    expect(
      policy('http://registry.example').redirects.next('http://cdn.example/b', from, 'b', 0).protocol,
    ).toBe('http:');
  });

  it(`stops after ${MAX_REDIRECTS} hops`, () => {
    const { redirects, refused } = policy();
    expect(redirects.next('/b', from, 'blob r', MAX_REDIRECTS - 1).pathname).toBe('/b');
    const err = refusal(() => redirects.next('/b', from, 'blob r', MAX_REDIRECTS));
    expect(err.detail).toEqual({ reason: 'redirect-limit' });
    expect(refused).toEqual(['redirect-limit']);
  });

  it('lets the connector skip its address check only for hosts in redirects.allow', () => {
    const { redirects } = policy();
    expect(redirects.hostAllowed('cdn.internal', 443)).toBe(true);
    expect(redirects.hostAllowed('a.corp.example', 8443)).toBe(true);
    expect(redirects.hostAllowed('a.corp.example', 443)).toBe(false);
    expect(redirects.hostAllowed('registry.example', 443)).toBe(false);
  });
});
