/**
 * Tag resolution against a registry that converts on the fly: distribution 2.8 answers a schema2 tag
 * asked for without schema2 in Accept with a schema1 conversion whose digest exists only for that
 * Accept. pullwarden resolves every tag with its own full Accept list and chooses what to serve from
 * what the client accepts, so every client gets the real (fetchable) digest, whatever asked first.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestProxy } from '../support/app.ts';
import { startE2e } from '../support/e2e.ts';
import type { E2e } from '../support/e2e.ts';
import { images } from '../support/oci-layout.ts';
import type { WrittenLayout } from '../support/oci-layout.ts';
import type { Registry } from '../support/registry.ts';
import { pushLayout } from '../support/skopeo.ts';

const ACCEPT = {
  oci: 'application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json',
  docker: [
    'application/vnd.docker.distribution.manifest.v2+json',
    'application/vnd.docker.distribution.manifest.list.v2+json',
    'application/vnd.docker.distribution.manifest.v1+prettyjws',
  ].join(', '),
  any: '*/*',
} as const;
type AcceptName = keyof typeof ACCEPT;

/** Every order of the three Accept lists. */
const ORDERS: AcceptName[][] = [
  ['oci', 'docker', 'any'],
  ['oci', 'any', 'docker'],
  ['docker', 'oci', 'any'],
  ['docker', 'any', 'oci'],
  ['any', 'oci', 'docker'],
  ['any', 'docker', 'oci'],
];

describe('tag resolution does not depend on the client Accept list (real distribution 2.8)', () => {
  let e2e: E2e;
  let registry: Registry;
  let proxy: TestProxy;
  let docker: WrittenLayout;

  beforeAll(async () => {
    e2e = await startE2e({ prefix: 'pw-e2e-accept-' });
    registry = e2e.registry;
    docker = await e2e.layout('docker', images.dockerSchema2('e2e-accept'));
    // One tag per order, so that each order starts with nothing cached.
    for (let i = 0; i < ORDERS.length; i++) await pushLayout(docker, registry.host, `acme/docker:o${i}`);
    proxy = await e2e.proxy({
      upstreams: { [registry.host]: { url: registry.url, tagTTL: '1h' } },
      defaultUpstream: registry.host,
    });
  }, 180_000);

  afterAll(async () => {
    await e2e?.close();
  });

  it('the upstream itself converts for an OCI-only Accept (what the proxy must not store)', async () => {
    const res = await fetch(`${registry.url}/v2/acme/docker/manifests/o0`, {
      headers: { accept: ACCEPT.oci },
    });
    await res.arrayBuffer();
    expect(res.status).toBe(200);
    expect(res.headers.get('docker-content-digest')).not.toBe(docker.digest);
  });

  it.each(ORDERS.map((order, i) => [order.join(' → '), order, i] as const))(
    'answers 200 with the fetchable schema2 digest for %s',
    async (_name, order, i) => {
      for (const accept of order) {
        for (const method of ['HEAD', 'GET']) {
          const res = await fetch(`${proxy.url}/v2/acme/docker/manifests/o${i}`, {
            method,
            headers: { accept: ACCEPT[accept] },
          });
          const body = Buffer.from(await res.arrayBuffer());
          expect(res.status, `${method} ${accept}: ${body.toString()}`).toBe(200);
          expect(res.headers.get('docker-content-digest'), accept).toBe(docker.digest);
          expect(res.headers.get('content-type')).toBe(
            'application/vnd.docker.distribution.manifest.v2+json',
          );
          // The digest is fetchable, through the proxy and from the upstream itself.
          const byDigest = await fetch(`${proxy.url}/v2/acme/docker/manifests/${docker.digest}`, {
            headers: { accept: ACCEPT[accept] },
          });
          await byDigest.arrayBuffer();
          expect(byDigest.status, `by digest after ${accept}`).toBe(200);
        }
      }
    },
  );
});
