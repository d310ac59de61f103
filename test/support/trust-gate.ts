/**
 * The trust-gate set-up the integration suites share: the in-process fake upstream, a cosign key pair
 * whose public half the proxy trusts as `release`, the real app in front of it (port 0), and helpers
 * to sign what the fake serves. Policies and upstream options are the suite's own.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTestProxy } from './app.ts';
import type { TestProxy } from './app.ts';
import { makeImage, makeIndex, startFakeUpstream } from './fake-upstream.ts';
import type { FakeImage, FakeIndex, FakeUpstream } from './fake-upstream.ts';
import { createKeyPair, fakeRegistryWriter, pushClassicSignature, signClassic } from './signer.ts';
import type { TestKeyPair } from './signer.ts';

/** Accept header asking for both an index and a single manifest (as containerd does). */
export const GATE_ACCEPT = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.oci.image.manifest.v1+json',
].join(', ');

/** A policy requiring a signature by the `release` key, for `match` (everything by default). */
export function signedPolicy(name = 'signed', match: string[] = ['**']): Record<string, unknown> {
  return { name, match, action: 'verify', signatures: { attestors: [{ key: 'release' }] } };
}

export interface TrustGateOptions {
  /** Prefix of the temp dir holding the public key. */
  prefix: string;
  /** Options of the fake's upstream entry besides `url` (tagTTL, retries, …). */
  upstream?: Record<string, unknown>;
  /** The policies, given the fake's host; default: {@link signedPolicy}. */
  policies?: (host: string) => Record<string, unknown>[];
  /** More top-level config (decisions, server, …). */
  config?: Record<string, unknown>;
}

export interface TrustGate {
  fake: FakeUpstream;
  proxy: TestProxy;
  /** The key the proxy trusts as `release`. */
  key: TestKeyPair;
  /** GET (or `method`) a manifest or blob through the proxy (default upstream: the fake). */
  get(repo: string, what: 'manifests' | 'blobs', ref: string, method?: string): Promise<Response>;
  /** A new image at `repo:tag` on the fake with a classic signature by `key`. */
  signed(repo: string, tag: string): Promise<FakeImage>;
  /** A new two-platform index at `repo:v1` on the fake whose index digest is signed by `key`. */
  signedIndex(repo: string): Promise<FakeIndex>;
  close(): Promise<void>;
}

/** Start the fake upstream and a proxy that verifies signatures by a fresh `release` key. */
export async function startTrustGate(options: TrustGateOptions): Promise<TrustGate> {
  const fake = await startFakeUpstream();
  const key = createKeyPair();
  const dir = await mkdtemp(join(tmpdir(), options.prefix));
  let proxy: TestProxy | undefined;
  const close = async (): Promise<void> => {
    await proxy?.close();
    await fake.close();
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const keyFile = join(dir, 'cosign.pub');
    await writeFile(keyFile, key.publicKeyPem);
    proxy = await startTestProxy({
      upstreams: { [fake.host]: { url: fake.url, ...options.upstream } },
      defaultUpstream: fake.host,
      trust: { roots: {}, keys: { release: { file: keyFile } }, refresh: '0s' },
      policies: options.policies?.(fake.host) ?? [signedPolicy()],
      ...options.config,
    });
  } catch (err) {
    await close();
    throw err;
  }
  const started = proxy;
  const sign = (repo: string, digest: string) =>
    pushClassicSignature(fakeRegistryWriter(fake), repo, digest, [
      signClassic({ subject: digest, dockerReference: `${fake.host}/${repo}`, key }),
    ]);
  return {
    fake,
    proxy: started,
    key,
    get: (repo, what, ref, method = 'GET') =>
      fetch(`${started.url}/v2/${repo}/${what}/${ref}`, { method, headers: { accept: GATE_ACCEPT } }),
    async signed(repo, tag) {
      const img = makeImage(fake, repo, tag);
      await sign(repo, img.manifestDigest);
      return img;
    },
    async signedIndex(repo) {
      const index = makeIndex(fake, repo, 'v1');
      await sign(repo, index.indexDigest);
      return index;
    },
    close,
  };
}
