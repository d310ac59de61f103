import { describe, expect, it } from 'vitest';
import {
  errorStatus,
  isNotFoundError,
  notFoundCodes,
  normalizeRepository,
  parseAccept,
  parseDigest,
  parseImageReference,
  parseManifestReference,
  parseRepositoryName,
  RegistryError,
} from '../../src/oci/index.ts';

const hex = 'a'.repeat(64);

describe('repository names', () => {
  it('accepts the distribution-spec grammar', () => {
    for (const n of ['library/nginx', 'a', 'a/b/c', 'my-org/my_app', 'x__y', 'a.b/c-d']) {
      expect(parseRepositoryName(n)).toBe(n);
    }
  });
  it('rejects path tricks, upper case and over-long names with NAME_INVALID', () => {
    for (const n of ['..', 'a/../b', 'A/b', '/a', 'a/', 'a//b', 'a%2fb', '-a', 'a'.repeat(256), '']) {
      expect(() => parseRepositoryName(n)).toThrow(expect.objectContaining({ code: 'NAME_INVALID' }));
    }
  });
  it('adds library/ only for one-component docker.io names', () => {
    expect(normalizeRepository('docker.io', 'nginx')).toBe('library/nginx');
    expect(normalizeRepository('docker.io', 'bitnami/nginx')).toBe('bitnami/nginx');
    expect(normalizeRepository('ghcr.io', 'nginx')).toBe('nginx');
  });
});

describe('digests and references', () => {
  it('validates digests', () => {
    expect(parseDigest(`sha256:${hex}`)).toBe(`sha256:${hex}`);
    for (const d of ['sha256:abc', `sha256:${'A'.repeat(64)}`, `md5:${hex}`, `sha256:${hex}0`]) {
      expect(() => parseDigest(d)).toThrow(expect.objectContaining({ code: 'DIGEST_INVALID' }));
    }
  });
  it('tells tags from digests', () => {
    expect(parseManifestReference('1.27')).toEqual({ kind: 'tag', tag: '1.27' });
    expect(parseManifestReference(`sha256:${hex}`)).toEqual({ kind: 'digest', digest: `sha256:${hex}` });
    expect(() => parseManifestReference('sha256:zz')).toThrow(
      expect.objectContaining({ code: 'DIGEST_INVALID' }),
    );
    expect(() => parseManifestReference('.bad')).toThrow(RegistryError);
  });
  it('parses image references the way Docker does', () => {
    expect(parseImageReference('nginx')).toEqual({
      host: 'docker.io',
      repository: 'library/nginx',
      tag: 'latest',
    });
    expect(parseImageReference('ghcr.io/acme/app:1.0')).toEqual({
      host: 'ghcr.io',
      repository: 'acme/app',
      tag: '1.0',
    });
    expect(parseImageReference(`localhost:5000/a/b@sha256:${hex}`)).toEqual({
      host: 'localhost:5000',
      repository: 'a/b',
      digest: `sha256:${hex}`,
    });
    expect(parseImageReference('acme/app:2')).toEqual({
      host: 'docker.io',
      repository: 'acme/app',
      tag: '2',
    });
  });
});

describe('error catalogue', () => {
  it('maps every code to a 4xx or 5xx status', () => {
    for (const status of Object.values(errorStatus)) expect(status).toBeGreaterThanOrEqual(400);
    expect(new RegistryError('DENIED', 'x').status).toBe(403);
    expect(new RegistryError('UNSUPPORTED', 'x').status).toBe(405);
  });

  it('calls exactly the three "no such thing" codes not-found, and nothing that is not a RegistryError', () => {
    expect([...notFoundCodes].sort()).toEqual(['BLOB_UNKNOWN', 'MANIFEST_UNKNOWN', 'NAME_UNKNOWN']);
    for (const code of notFoundCodes) expect(isNotFoundError(new RegistryError(code, 'x'))).toBe(true);
    for (const code of ['UNAVAILABLE', 'TOOMANYREQUESTS', 'DENIED', 'MANIFEST_INVALID'] as const) {
      expect(isNotFoundError(new RegistryError(code, 'x'))).toBe(false);
    }
    expect(isNotFoundError(Object.assign(new Error('x'), { code: 'MANIFEST_UNKNOWN' }))).toBe(false);
  });
});

describe('Accept parsing', () => {
  it('splits, strips parameters and drops q=0', () => {
    expect(parseAccept(['a/b, c/d;q=0.5', 'e/f;q=0'])).toEqual(['a/b', 'c/d']);
  });
});
