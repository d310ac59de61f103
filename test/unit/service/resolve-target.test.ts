import { describe, expect, it } from 'vitest';
import { canonicalHost, RegistryError } from '../../../src/oci/index.ts';
import { configuredUpstream, resolveImageReference } from '../../../src/service/index.ts';
import type { UpstreamNames } from '../../../src/service/index.ts';

const hex = 'c'.repeat(64);
const configured = new Set(['docker.io', 'ghcr.io', '127.0.0.1:5000']);
const aliases = new Map([['corp', '127.0.0.1:5000']]);
const names: UpstreamNames = {
  resolveHost: (h) => (configured.has(h) ? h : aliases.get(h)),
  defaultUpstream: 'docker.io',
};

describe('resolving an image reference as users write it', () => {
  it('puts a bare name on the default upstream under library/, tag latest', () => {
    expect(resolveImageReference('nginx', names)).toEqual({
      target: { upstream: 'docker.io', repository: 'library/nginx' },
      reference: { kind: 'tag', tag: 'latest' },
      tag: 'latest',
    });
  });

  it("takes Docker Hub's other names as docker.io, whatever their case", () => {
    for (const host of ['index.docker.io', 'registry-1.docker.io', 'Registry.Hub.Docker.com']) {
      expect(resolveImageReference(`${host}/busybox:1`, names).target).toEqual({
        upstream: 'docker.io',
        repository: 'library/busybox',
      });
    }
    expect(canonicalHost('GHCR.io')).toBe('ghcr.io');
  });

  it('prefers the digest to the tag, and keeps the tag beside it', () => {
    expect(resolveImageReference(`127.0.0.1:5000/acme/app:1.0@sha256:${hex}`, names)).toEqual({
      target: { upstream: '127.0.0.1:5000', repository: 'acme/app' },
      reference: { kind: 'digest', digest: `sha256:${hex}` },
      tag: '1.0',
    });
  });

  it('refuses a host that is not configured with DENIED, naming it, before any I/O', () => {
    let thrown: unknown;
    try {
      resolveImageReference('evil.example.com/acme/app:1', names);
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(RegistryError);
    expect(thrown).toMatchObject({
      code: 'DENIED',
      message: 'upstream registry "evil.example.com" is not configured on this proxy',
      detail: { upstream: 'evil.example.com', reason: 'upstream-not-configured' },
    });
  });

  it('maps a configured alias to its upstream, a bare-name alias too (as the router does)', () => {
    expect(configuredUpstream('corp', names)).toBe('127.0.0.1:5000');
    expect(resolveImageReference('corp/acme/app:2', names).target).toEqual({
      upstream: '127.0.0.1:5000',
      repository: 'acme/app',
    });
    // Not an alias: Docker's rule puts it on the default upstream.
    expect(resolveImageReference('acme/app:2', names).target).toEqual({
      upstream: 'docker.io',
      repository: 'acme/app',
    });
  });
});
