import { describe, expect, it } from 'vitest';
import { parseRegistryPath, parseRange, splitUrl } from '../../../src/http/index.ts';
import type { RoutingConfig } from '../../../src/http/index.ts';

const hex = 'b'.repeat(64);
const configured = new Set(['docker.io', 'ghcr.io', '127.0.0.1:5000', '[::1]:5000']);
const aliases = new Map([['corp', '127.0.0.1:5000']]);
const config: RoutingConfig = {
  resolveHost: (h) => (configured.has(h) ? h : aliases.get(h)),
  defaultUpstream: 'docker.io',
};

function route(url: string) {
  const { path, ns } = splitUrl(url);
  return parseRegistryPath(path, ns, config);
}

describe('routing requests to upstreams', () => {
  it('answers the base endpoint', () => {
    expect(route('/v2/')).toEqual({ kind: 'base' });
  });

  it('routes by ns= as containerd sends it, URL-encoded', () => {
    expect(route('/v2/library/nginx/manifests/1.27?ns=docker.io')).toMatchObject({
      kind: 'manifest',
      target: { upstream: 'docker.io', repository: 'library/nginx' },
      reference: { kind: 'tag', tag: '1.27' },
    });
    expect(route('/v2/app/blobs/sha256:' + hex + '?ns=127.0.0.1%3A5000')).toMatchObject({
      kind: 'blob',
      target: { upstream: '127.0.0.1:5000', repository: 'app' },
    });
  });

  it('adds library/ for one-component docker.io names (ctr does not)', () => {
    expect(route('/v2/nginx/manifests/latest?ns=docker.io')).toMatchObject({
      target: { upstream: 'docker.io', repository: 'library/nginx' },
    });
    expect(route('/v2/nginx/manifests/latest')).toMatchObject({
      target: { upstream: 'docker.io', repository: 'library/nginx' },
    });
  });

  it('routes by host prefix for podman registries.conf locations', () => {
    expect(route('/v2/ghcr.io/acme/app/manifests/1.0')).toMatchObject({
      target: { upstream: 'ghcr.io', repository: 'acme/app' },
    });
    expect(route('/v2/127.0.0.1:5000/x/y/tags/list')).toMatchObject({
      kind: 'tags',
      target: { upstream: '127.0.0.1:5000', repository: 'x/y' },
    });
    expect(route('/v2/[::1]:5000/x/manifests/sha256:' + hex)).toMatchObject({
      target: { upstream: '[::1]:5000', repository: 'x' },
      reference: { kind: 'digest' },
    });
  });

  it('accepts configured aliases in ns= and as a path prefix', () => {
    expect(route('/v2/corp/team/app/manifests/1.0')).toMatchObject({
      target: { upstream: '127.0.0.1:5000', repository: 'team/app' },
    });
    expect(route('/v2/team/app/manifests/1.0?ns=corp')).toMatchObject({
      target: { upstream: '127.0.0.1:5000', repository: 'team/app' },
    });
  });

  it('maps Docker Hub aliases to docker.io', () => {
    expect(route('/v2/library/nginx/manifests/1?ns=registry-1.docker.io')).toMatchObject({
      target: { upstream: 'docker.io' },
    });
  });

  it('refuses unconfigured hosts with DENIED, by ns= or by prefix', () => {
    for (const url of [
      '/v2/a/manifests/1?ns=evil.example',
      '/v2/evil.example/a/manifests/1',
      '/v2/localhost/a/blobs/sha256:' + hex,
    ]) {
      expect(() => route(url)).toThrow(expect.objectContaining({ code: 'DENIED' }));
    }
  });

  it('rejects path tricks and bad names before any I/O', () => {
    expect(() => route('/v2/a/../b/manifests/1')).toThrow(expect.objectContaining({ code: 'NAME_INVALID' }));
    expect(() => route('/v2/a%2fb/manifests/1')).toThrow(expect.objectContaining({ code: 'NAME_INVALID' }));
    expect(() => route('/v2/a/%2e%2e/manifests/1')).toThrow(
      expect.objectContaining({ code: 'NAME_INVALID' }),
    );
    expect(() => route('/v2/' + 'a/'.repeat(600) + 'manifests/1')).toThrow(
      expect.objectContaining({ code: 'NAME_INVALID' }),
    );
    expect(() => route('/v2/A/manifests/1')).toThrow(expect.objectContaining({ code: 'NAME_INVALID' }));
    expect(() => route('/v2/a/blobs/sha256:xyz')).toThrow(
      expect.objectContaining({ code: 'DIGEST_INVALID' }),
    );
    expect(() => route('/v2/a/manifests/1?ns=a%20b')).toThrow(
      expect.objectContaining({ code: 'NAME_INVALID' }),
    );
  });

  it('recognises upload paths so they can be refused', () => {
    expect(route('/v2/a/blobs/uploads/')).toEqual({ kind: 'upload', name: 'a' });
    expect(route('/v2/a/blobs/uploads/123')).toEqual({ kind: 'upload', name: 'a' });
  });

  it('parses referrers', () => {
    expect(route('/v2/a/referrers/sha256:' + hex + '?ns=ghcr.io')).toMatchObject({
      kind: 'referrers',
      target: { upstream: 'ghcr.io', repository: 'a' },
    });
  });
});

describe('Range', () => {
  it('parses the forms clients send', () => {
    expect(parseRange(undefined, 10)).toBeUndefined();
    expect(parseRange('bytes=0-4', 10)).toEqual({ start: 0, end: 4 });
    expect(parseRange('bytes=5-', 10)).toEqual({ start: 5, end: 9 });
    expect(parseRange('bytes=-3', 10)).toEqual({ start: 7, end: 9 });
    expect(parseRange('bytes=2-100', 10)).toEqual({ start: 2, end: 9 });
    expect(parseRange('bytes=0-1,3-4', 10)).toBeUndefined();
  });
  it('refuses unsatisfiable ranges', () => {
    expect(() => parseRange('bytes=10-', 10)).toThrow(expect.objectContaining({ code: 'RANGE_INVALID' }));
  });
});
