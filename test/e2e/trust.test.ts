/**
 * Trust at pull time, end to end: a real distribution 2.8 registry (no referrers API, so bundles are
 * found through the referrers tag schema), signatures made by the offline test signer and pushed the
 * way cosign pushes them, pullwarden in between, and real clients (containerd through a hosts.toml
 * whose server is the proxy, skopeo through a path-prefix location).
 *
 * One registry, one containerd and one proxy are shared; every case uses its own repository, and the
 * policy list routes repositories to the policy under test (first match wins):
 *
 *   upstream.test/key/**        key-signed      cosign key "release"
 *   upstream.test/keyless/**    keyless-release keyless IDENTITY under root "test"
 *   upstream.test/threshold/**  two-signers     2 of { IDENTITY, any github.com/acme/ identity }
 *   upstream.test/attest/**     slsa-required   SLSA v1 attestation by IDENTITY
 *   upstream.test/warn/**       observe-only    key "release", mode warn
 *   everything else             deny-rest
 *
 * `fast.test` is the same registry under a second upstream name with tagTTL 1s (tag moves).
 * The reload case starts its own proxy, since a policy change re-scopes every cached decision.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { parse, stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer } from '../../src/app.ts';
import type { ServerHandle } from '../../src/app.ts';
import { loadConfig } from '../../src/config/index.ts';
import { startTestProxy } from '../support/app.ts';
import type { TestProxy } from '../support/app.ts';
import { startE2e } from '../support/e2e.ts';
import type { E2e } from '../support/e2e.ts';
import { writeHostsToml } from '../support/containerd.ts';
import type { Containerd } from '../support/containerd.ts';
import { images } from '../support/oci-layout.ts';
import type { WrittenLayout } from '../support/oci-layout.ts';
import { CommandError } from '../support/proc.ts';
import { blobGets } from '../support/registry.ts';
import type { Registry, RegistryRequest } from '../support/registry.ts';
import {
  COSIGN_SIGN_PREDICATE_TYPE,
  createKeyPair,
  createTestSigstore,
  GITHUB_ISSUER,
  pushBundleReferrer,
  pushClassicAttestation,
  pushClassicSignature,
  pushTestImage,
  signBundle,
  signClassic,
  signClassicAttestation,
} from '../support/signer.ts';
import type { ClassicSignature, TestKeyPair, TestLeaf, TestSigstore } from '../support/signer.ts';
import { pushLayout, skopeoCopy } from '../support/skopeo.ts';

const UPSTREAM = 'upstream.test';
const FAST = 'fast.test';
const IDENTITY = 'https://github.com/acme/widgets/.github/workflows/release.yml@refs/tags/v1';
const IDENTITY2 = 'https://github.com/acme/countersign/.github/workflows/approve.yml@refs/heads/main';
const SLSA = 'https://slsa.dev/provenance/v1';
const SLSA_02 = 'https://slsa.dev/provenance/v0.2';
const ACCEPT = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.docker.distribution.manifest.v2+json',
].join(', ');

const keyless = (subject: string) => ({ keyless: { root: 'test', issuer: GITHUB_ISSUER, subject } });

/** The shared proxy's policies; `direct` is the registry's own host:port, a third upstream name. */
const policies = (direct: string) => [
  {
    name: 'key-signed',
    match: [`${UPSTREAM}/key/**`, `${FAST}/key/**`, `${direct}/key/**`],
    action: 'verify',
    signatures: { attestors: [{ key: 'release' }] },
  },
  {
    name: 'keyless-release',
    match: [`${UPSTREAM}/keyless/**`],
    action: 'verify',
    signatures: { attestors: [keyless(IDENTITY)] },
  },
  {
    name: 'two-signers',
    match: [`${UPSTREAM}/threshold/**`],
    action: 'verify',
    // The attestors overlap (IDENTITY satisfies both): only counting signers, not signatures, stops one
    // identity that signs twice from meeting the threshold alone.
    signatures: {
      threshold: 2,
      attestors: [
        keyless(IDENTITY),
        { keyless: { root: 'test', issuer: GITHUB_ISSUER, subjectRegExp: 'https://github\\.com/acme/.+' } },
      ],
    },
  },
  {
    name: 'slsa-required',
    match: [`${UPSTREAM}/attest/**`],
    action: 'verify',
    attestations: [{ predicateType: SLSA, attestors: [keyless(IDENTITY)] }],
  },
  {
    name: 'observe-only',
    match: [`${UPSTREAM}/warn/**`],
    action: 'verify',
    mode: 'warn',
    signatures: { attestors: [{ key: 'release' }] },
  },
  { name: 'deny-rest', match: ['**'], action: 'deny' },
];

interface DetailSignature {
  kind: string;
  source: string;
  manifestDigest: string;
  predicateType?: string;
  ok: boolean;
  attestor?: string;
  signer?: { kind: string; subject?: string; issuer?: string; key?: string };
  failures?: { attestor: string; code: string; reason: string }[];
}

interface DeniedError {
  code: string;
  message: string;
  detail: {
    policy: string | null;
    result: string;
    reasons: string[];
    signatures: DetailSignature[];
    reason?: string;
  };
}

/** What a test expects of one `detail.signatures` entry. */
interface ExpectedSignature {
  source: string;
  /** Failure codes, one per attestor tried; [] for a signature that verified. */
  codes: string[];
  ok?: boolean;
}

/**
 * Asserts a policy denial: 403, one OCI error DENIED whose message names the policy, detail.policy,
 * and `detail.signatures` listing exactly the signatures expected (as a multiset: layers of one
 * `.sig` are ordered by digest) with their failure codes. Returns the error for further checks.
 */
async function expectDenied(
  res: Response,
  policy: string,
  signatures: ExpectedSignature[],
): Promise<DeniedError> {
  const text = await res.text();
  expect(res.status, text).toBe(403);
  const body = JSON.parse(text) as { errors: DeniedError[] };
  expect(body.errors).toHaveLength(1);
  const error = body.errors[0]!;
  expect(error.code).toBe('DENIED');
  expect(error.message).toContain(`policy "${policy}"`);
  expect(error.detail.policy).toBe(policy);
  expect(error.detail.result).toBe('deny');
  const key = (s: ExpectedSignature): string =>
    JSON.stringify([s.source, s.ok ?? false, [...s.codes].sort()]);
  const actual = error.detail.signatures.map((s) =>
    key({ source: s.source, ok: s.ok, codes: (s.failures ?? []).map((f) => f.code) }),
  );
  expect(actual.sort()).toEqual(signatures.map(key).sort());
  return error;
}

async function expectServed(res: Response, digest: string): Promise<Buffer> {
  const body = Buffer.from(await res.arrayBuffer());
  expect(res.status, body.toString('utf8')).toBe(200);
  expect(res.headers.get('docker-content-digest')).toBe(digest);
  return body;
}

function sha256(bytes: Buffer): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

/** A proxy like startTestProxy's, but with its log captured (pino JSON lines) for assertions. */
async function startLoggedProxy(config: Record<string, unknown>): Promise<{
  url: string;
  host: string;
  handle: ServerHandle;
  logs: Record<string, unknown>[];
  dir: string;
}> {
  const dir = await mkdtemp(join(tmpdir(), 'pw-trust-proxy-'));
  const file = join(dir, 'pullwarden.yaml');
  await writeFile(
    file,
    stringify({
      listen: '127.0.0.1:0',
      storage: { dir: join(dir, 'data') },
      log: { level: 'info' },
      ...config,
    }),
  );
  const logs: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (line.trim() !== '') logs.push(JSON.parse(line) as Record<string, unknown>);
      }
      done();
    },
  });
  const handle = await startServer(await loadConfig(file, {}), {
    logger: pino({ level: 'info' }, sink),
    defaultMetrics: false,
  });
  return { url: handle.address, host: handle.address.replace(/^http:\/\//, ''), handle, logs, dir };
}

/** Replace a YAML file the way editors and ConfigMap updates do: write a sibling, rename over it. */
async function rewriteConfig(path: string, edit: (config: Record<string, unknown>) => void): Promise<void> {
  const config = parse(await readFile(path, 'utf8')) as Record<string, unknown>;
  edit(config);
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, stringify(config));
  await rename(tmp, path);
}

async function poll<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 5_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(100);
  }
}

describe('trust decisions at pull time against a real registry', () => {
  let e2e: E2e;
  let work: string;
  let registry: Registry;
  let containerd: Containerd;
  let proxy: Awaited<ReturnType<typeof startLoggedProxy>>;
  let hostsDir: string;
  let leakyHostsDir: string;
  let world: TestSigstore;
  let rogue: TestSigstore;
  let leaf: TestLeaf;
  let key: TestKeyPair;
  let rootFile: string;
  let keyFile: string;
  let signed: WrittenLayout;
  let unsigned: WrittenLayout;
  let keylessImage: WrittenLayout;
  let multi: WrittenLayout;

  /** GET (or HEAD) a manifest through the proxy, routed with ns= as containerd does. */
  const manifest = (
    repo: string,
    reference: string,
    opts: { upstream?: string; method?: 'GET' | 'HEAD' } = {},
  ): Promise<Response> =>
    fetch(
      `${proxy.url}/v2/${repo}/manifests/${reference}?ns=${encodeURIComponent(opts.upstream ?? UPSTREAM)}`,
      { method: opts.method ?? 'GET', headers: { accept: ACCEPT } },
    );

  const blob = (
    repo: string,
    digest: string,
    opts: { upstream?: string; method?: 'GET' | 'HEAD' } = {},
  ): Promise<Response> =>
    fetch(`${proxy.url}/v2/${repo}/blobs/${digest}?ns=${encodeURIComponent(opts.upstream ?? UPSTREAM)}`, {
      method: opts.method ?? 'GET',
    });

  const signWithKey = (repo: string, subject: string, sigKey = key): ClassicSignature =>
    signClassic({ subject, dockerReference: `${UPSTREAM}/${repo}`, key: sigKey });

  const signKeyless = (repo: string, subject: string, by: TestLeaf = leaf): ClassicSignature =>
    signClassic({ subject, dockerReference: `${UPSTREAM}/${repo}`, leaf: by });

  /** A small image (not unpackable: for HTTP checks only) with classic signatures at its `.sig`. */
  async function imageWith(repo: string, signatures: (digest: string) => ClassicSignature[]) {
    const image = await pushTestImage(registry.url, repo, 'v1', `content of ${repo}`);
    const sigs = signatures(image.digest);
    if (sigs.length > 0) await pushClassicSignature(registry.url, repo, image.digest, sigs);
    return image;
  }

  /** Upstream requests for one repository since the last clearRequests(). */
  async function upstreamRequests(repo: string): Promise<RegistryRequest[]> {
    return (await registry.requests()).filter((r) => r.repository === repo);
  }

  beforeAll(async () => {
    e2e = await startE2e({ prefix: 'pw-e2e-trust-', containerd: true });
    work = e2e.work;
    ({ registry, containerd } = e2e);
    [world, rogue] = await Promise.all([
      createTestSigstore({ name: 'test.local' }),
      createTestSigstore({ name: 'rogue.local' }),
    ]);
    leaf = await world.issueLeaf({ subject: IDENTITY, issuer: GITHUB_ISSUER });
    key = createKeyPair();
    rootFile = join(work, 'trusted_root.json');
    keyFile = join(work, 'cosign.pub');
    await writeFile(rootFile, JSON.stringify(world.trustedRootJSON));
    await writeFile(keyFile, key.publicKeyPem);

    proxy = await startLoggedProxy({
      upstreams: {
        [UPSTREAM]: { url: registry.url, tagTTL: '5m' },
        [FAST]: { url: registry.url, tagTTL: '1s' },
        // The registry under its real name, for containerd pulls that could fall back to it.
        [registry.host]: { url: registry.url },
      },
      defaultUpstream: UPSTREAM,
      // refresh 0s: never reach for the public-good TUF repository (there is no public-good root
      // here anyway).
      trust: { roots: { test: { file: rootFile } }, keys: { release: { file: keyFile } }, refresh: '0s' },
      policies: policies(registry.host),
    });

    [signed, unsigned, keylessImage, multi] = await Promise.all([
      e2e.layout('signed', images.singleArch('trust-signed')),
      e2e.layout('unsigned', images.singleArch('trust-unsigned')),
      e2e.layout('keyless', images.singleArch('trust-keyless')),
      e2e.layout('multi', images.twoPlatformIndex('trust-multi')),
    ]);
    await Promise.all([
      pushLayout(signed, registry.host, 'key/app:v1'),
      pushLayout(unsigned, registry.host, 'key/unsigned:v1'),
      pushLayout(keylessImage, registry.host, 'keyless/app:v1'),
      pushLayout(multi, registry.host, 'key/multi-a:v1'),
      pushLayout(multi, registry.host, 'key/multi-b:v1'),
      pushLayout(multi, registry.host, 'key/multi-c:v1'),
    ]);
    await pushClassicSignature(registry.url, 'key/app', signed.digest, [
      signWithKey('key/app', signed.digest),
    ]);
    await pushClassicSignature(registry.url, 'keyless/app', keylessImage.digest, [
      signKeyless('keyless/app', keylessImage.digest),
    ]);
    // The index is signed (in a and b); its platform manifests are not signed anywhere.
    for (const repo of ['key/multi-a', 'key/multi-b']) {
      await pushClassicSignature(registry.url, repo, multi.digest, [signWithKey(repo, multi.digest)]);
    }

    // server = the proxy: a refusal has nothing to fall back to.
    hostsDir = join(work, 'certs.d');
    await writeHostsToml(hostsDir, UPSTREAM, proxy.url);
    await writeHostsToml(hostsDir, registry.host, proxy.url);
    // The misconfiguration the docs warn about: the proxy as a mirror, the real registry as server.
    leakyHostsDir = join(work, 'certs-leaky.d');
    await writeHostsToml(leakyHostsDir, registry.host, proxy.url, { server: registry.url });
  }, 120_000);

  afterAll(async () => {
    await proxy?.handle.close();
    if (proxy !== undefined) await rm(proxy.dir, { recursive: true, force: true });
    await e2e?.close();
  });

  it('1. containerd pulls a key-signed image (classic .sig) through hosts.toml with the upstream digest', async () => {
    const image = await containerd.pull(`${UPSTREAM}/key/app:v1`, { hostsDir });
    expect(image.digest).toBe(signed.digest);
    const admitted = proxy.logs.find(
      (l) => l.msg === 'manifest admitted' && l.repository === 'key/app' && l.digest === signed.digest,
    );
    expect(admitted).toMatchObject({
      policy: 'key-signed',
      result: 'allow',
      signers: [{ kind: 'key', key: 'release' }],
    });
    await containerd.removeImages();
  });

  it('2. skopeo copies an image with a keyless classic signature of the right identity', async () => {
    const dest = join(work, 'skopeo-keyless');
    await skopeoCopy(`docker://${proxy.host}/${UPSTREAM}/keyless/app:v1`, `oci:${dest}:v1`, {
      preserveDigests: true,
    });
    const written = JSON.parse(await readFile(join(dest, 'index.json'), 'utf8')) as {
      manifests: { digest: string }[];
    };
    expect(written.manifests[0]!.digest).toBe(keylessImage.digest);
    const admitted = proxy.logs.find((l) => l.msg === 'manifest admitted' && l.repository === 'keyless/app');
    expect(admitted).toMatchObject({
      policy: 'keyless-release',
      signers: [{ kind: 'keyless', issuer: GITHUB_ISSUER, subject: IDENTITY }],
    });
  });

  it('3. refuses an unsigned image: 403, ctr pull fails, no upstream blob request, no fallback', async () => {
    await registry.clearRequests();
    await expect(containerd.pull(`${UPSTREAM}/key/unsigned:v1`, { hostsDir })).rejects.toBeInstanceOf(
      CommandError,
    );
    // The same image under the registry's real name, which containerd could reach itself: with
    // server = the proxy it has nothing to fall back to either.
    await expect(containerd.pull(`${registry.host}/key/unsigned:v1`, { hostsDir })).rejects.toBeInstanceOf(
      CommandError,
    );
    expect(await containerd.images()).toEqual([]);
    const seen = await upstreamRequests('key/unsigned');
    // The proxy did reach the upstream for this image (tag, manifest, signature lookup)…
    expect(seen.some((r) => r.kind === 'manifest' && r.reference === unsigned.digest)).toBe(true);
    expect(seen.some((r) => r.kind === 'manifest' && r.reference?.endsWith('.sig'))).toBe(true);
    // …but fetched none of its blobs, and containerd never went around it.
    expect(blobGets(seen)).toEqual([]);
    expect(seen.filter((r) => /containerd/i.test(r.userAgent))).toEqual([]);

    const denied = await expectDenied(await manifest('key/unsigned', 'v1'), 'key-signed', []);
    expect(denied.message).toContain('no signature found');
    await expectDenied(await manifest('key/unsigned', 'v1', { upstream: registry.host }), 'key-signed', []);
  });

  it('3b. control: with the real registry as hosts.toml server, containerd falls back past the 403', async () => {
    // Shows that the "no fallback" assertions above can fail: this is what they would see.
    await registry.clearRequests();
    const leaked = await containerd.pull(`${registry.host}/key/unsigned:v1`, { hostsDir: leakyHostsDir });
    expect(leaked.digest).toBe(unsigned.digest);
    const seen = await upstreamRequests('key/unsigned');
    expect(blobGets(seen).filter((r) => /containerd/i.test(r.userAgent)).length).toBeGreaterThan(0);
    await containerd.removeImages();
  });

  it('13. a blob of a denied image requested directly by digest: 403 and no upstream blob request', async () => {
    await registry.clearRequests();
    const image = unsigned.images[0]!;
    for (const digest of [image.config.digest, ...image.layers.map((l) => l.digest)]) {
      for (const method of ['GET', 'HEAD'] as const) {
        const res = await blob('key/unsigned', digest, { method });
        expect(res.status, `${method} ${digest}`).toBe(403);
        if (method === 'GET') {
          const body = (await res.json()) as { errors: DeniedError[] };
          expect(body.errors[0]).toMatchObject({ code: 'DENIED', detail: { reason: 'blob-not-admitted' } });
        }
      }
    }
    expect((await upstreamRequests('key/unsigned')).filter((r) => r.kind === 'blob')).toEqual([]);
  });

  it('4. a tampered payload is signature-invalid', async () => {
    const repo = 'key/tampered';
    await imageWith(repo, (digest) => {
      const sig = signWithKey(repo, digest);
      const payload = Buffer.from(
        sig.payload.toString('utf8').replace(`${UPSTREAM}/${repo}`, `${UPSTREAM}/evil`),
      );
      return [{ payload, annotations: sig.annotations }];
    });
    const denied = await expectDenied(await manifest(repo, 'v1'), 'key-signed', [
      { source: 'cosign-sig', codes: ['signature-invalid'] },
    ]);
    expect(denied.message).toContain('1 signature found, none verified');
  });

  it('5. a wrong identity is identity-mismatch, and so are a prefix and an extension of the right one', async () => {
    const repo = 'keyless/wrong-identity';
    const prefix = IDENTITY.slice(0, IDENTITY.indexOf('@')); // …/release.yml without @refs/tags/v1
    expect(IDENTITY.startsWith(prefix) && prefix !== IDENTITY).toBe(true);
    const leaves = await Promise.all(
      [
        'https://github.com/evil/widgets/.github/workflows/release.yml@refs/tags/v1',
        prefix,
        `${IDENTITY}-rc1`,
      ].map((subject) => world.issueLeaf({ subject, issuer: GITHUB_ISSUER })),
    );
    await imageWith(repo, (digest) => leaves.map((l) => signKeyless(repo, digest, l)));
    const denied = await expectDenied(await manifest(repo, 'v1'), 'keyless-release', [
      { source: 'cosign-sig', codes: ['identity-mismatch'] },
      { source: 'cosign-sig', codes: ['identity-mismatch'] },
      { source: 'cosign-sig', codes: ['identity-mismatch'] },
    ]);
    const reasons = denied.detail.signatures.map((s) => s.failures?.[0]?.reason ?? '');
    expect(reasons.some((r) => r.includes(`"${prefix}"`))).toBe(true);
    expect(reasons.some((r) => r.includes(`"${IDENTITY}-rc1"`))).toBe(true);
  });

  it('6. the right identity from an untrusted Sigstore is untrusted-root', async () => {
    const repo = 'keyless/untrusted-root';
    const stranger = await rogue.issueLeaf({ subject: IDENTITY, issuer: GITHUB_ISSUER });
    await imageWith(repo, (digest) => [signKeyless(repo, digest, stranger)]);
    await expectDenied(await manifest(repo, 'v1'), 'keyless-release', [
      { source: 'cosign-sig', codes: ['untrusted-root'] },
    ]);
  });

  it('7. a valid signature bound to another digest is digest-mismatch', async () => {
    const repo = 'key/other-digest';
    const other = await pushTestImage(registry.url, repo, 'other', 'another image');
    const image = await imageWith(repo, () => [signWithKey(repo, other.digest)]);
    const denied = await expectDenied(await manifest(repo, 'v1'), 'key-signed', [
      { source: 'cosign-sig', codes: ['digest-mismatch'] },
    ]);
    expect(denied.detail.signatures[0]!.failures![0]!.reason).toContain(other.digest);
    expect(denied.detail.signatures[0]!.failures![0]!.reason).toContain(image.digest);
  });

  it('8. a certificate expired at signing time is certificate-expired', async () => {
    const repo = 'keyless/expired';
    const now = Date.now();
    const old = await world.issueLeaf({
      subject: IDENTITY,
      issuer: GITHUB_ISSUER,
      notBefore: new Date(now - 30 * 60_000),
      notAfter: new Date(now - 20 * 60_000),
    });
    await imageWith(repo, (digest) => [
      signClassic({
        subject: digest,
        dockerReference: `${UPSTREAM}/${repo}`,
        leaf: old,
        integratedTime: Math.floor(now / 1000),
      }),
    ]);
    await expectDenied(await manifest(repo, 'v1'), 'keyless-release', [
      { source: 'cosign-sig', codes: ['certificate-expired'] },
    ]);
  });

  it('9. threshold 2: one signer signing twice is denied, two distinct signers are allowed', async () => {
    const [again, second] = await Promise.all([
      world.issueLeaf({ subject: IDENTITY, issuer: GITHUB_ISSUER }),
      world.issueLeaf({ subject: IDENTITY2, issuer: GITHUB_ISSUER }),
    ]);
    const twice = 'threshold/one-signer';
    await imageWith(twice, (digest) => [signKeyless(twice, digest, leaf), signKeyless(twice, digest, again)]);
    // Both signatures verify (ok, no failures), yet the identity counts once.
    const denied = await expectDenied(await manifest(twice, 'v1'), 'two-signers', [
      { source: 'cosign-sig', codes: [], ok: true },
      { source: 'cosign-sig', codes: [], ok: true },
    ]);
    expect(denied.message).toContain('1 of 2 required signatures');
    expect(denied.message).toContain('one signer counts once');
    expect(denied.detail.signatures.map((s) => s.signer?.subject)).toEqual([IDENTITY, IDENTITY]);

    const both = 'threshold/two-signers';
    const image = await imageWith(both, (digest) => [
      signKeyless(both, digest, leaf),
      signKeyless(both, digest, second),
    ]);
    await expectServed(await manifest(both, 'v1'), image.digest);
  });

  it('10. warn mode serves an unsigned image and records the decision (log line and metric)', async () => {
    const repo = 'warn/app';
    const metricLine = 'pullwarden_decisions_total{policy="observe-only",result="warn"} 1';
    const metrics = async (): Promise<string> => (await fetch(`${proxy.url}/metrics`)).text();
    expect(await metrics()).not.toContain(metricLine);

    const image = await imageWith(repo, () => []);
    const res = await manifest(repo, 'v1');
    const body = await expectServed(res, image.digest);
    // The client sees that it was served in warn mode.
    expect(res.headers.get('x-pullwarden-decision')).toBe('warn');
    // The closure is admitted too: the client can fetch the layers.
    const layer = (JSON.parse(body.toString('utf8')) as { layers: { digest: string }[] }).layers[0]!.digest;
    expect((await blob(repo, layer)).status).toBe(200);

    expect(await metrics()).toContain(metricLine);
    const line = proxy.logs.find((l) => l.msg === 'manifest served in warn mode' && l.repository === repo);
    expect(line).toMatchObject({ result: 'warn', policy: 'observe-only', digest: image.digest, tag: 'v1' });
    expect((line?.reasons as string[])[0]).toContain('no signature found');
  });

  it('12. a tag moved upstream to an unsigned digest is denied; the admitted digest stays pullable', async () => {
    const repo = 'key/moving';
    const first = await imageWith(repo, (digest) => [signWithKey(repo, digest)]);
    const firstBody = await expectServed(await manifest(repo, 'v1', { upstream: FAST }), first.digest);
    const firstLayer = (JSON.parse(firstBody.toString('utf8')) as { layers: { digest: string }[] }).layers[0]!
      .digest;
    expect((await blob(repo, firstLayer, { upstream: FAST })).status).toBe(200);

    const moved = await pushTestImage(registry.url, repo, 'v1', 'the unsigned replacement');
    expect(moved.digest).not.toBe(first.digest);
    // tagTTL is 1s for fast.test: the next resolution after that asks the upstream again.
    const res = await poll('the tag to resolve to the new digest', async () => {
      const r = await manifest(repo, 'v1', { upstream: FAST });
      if (r.status === 200) {
        await r.arrayBuffer();
        return undefined;
      }
      return r;
    });
    const denied = await expectDenied(res, 'key-signed', []);
    expect(denied.message).toContain('no signature found');
    const line = proxy.logs.find((l) => l.msg === 'manifest denied' && l.repository === repo);
    expect(line).toMatchObject({ digest: moved.digest, tag: 'v1', upstream: FAST });

    await expectServed(await manifest(repo, first.digest, { upstream: FAST }), first.digest);
    expect((await blob(repo, firstLayer, { upstream: FAST })).status).toBe(200);
    await expectDenied(await manifest(repo, moved.digest, { upstream: FAST }), 'key-signed', []);
  });

  it('14. an index signed only at the top: all platforms pull by tag; a platform manifest alone is denied', async () => {
    const pulled = await containerd.pull(`${UPSTREAM}/key/multi-a:v1`, { hostsDir, allPlatforms: true });
    expect(pulled.digest).toBe(multi.digest);
    expect(pulled.platforms.sort()).toEqual(['linux/amd64', 'linux/arm64']);
    await containerd.removeImages();

    const child = multi.images[1]!;
    // Admitted in multi-a, but that says nothing about multi-b, where the index was not pulled yet.
    await expectDenied(await manifest('key/multi-b', child.digest), 'key-signed', []);
    expect((await blob('key/multi-b', child.layers[0]!.digest)).status).toBe(403);
    // multi-c: the index is not signed at all, so neither it nor its children pass.
    await expectDenied(await manifest('key/multi-c', 'v1'), 'key-signed', []);
    await expectDenied(await manifest('key/multi-c', child.digest), 'key-signed', []);

    // Once the (signed) index is admitted in multi-b, its platform manifests are served there too,
    // even though the child was denied a moment ago (that deny must not outlive the index admission).
    await expectServed(await manifest('key/multi-b', 'v1'), multi.digest);
    await expectServed(await manifest('key/multi-b', child.digest), child.digest);
    expect((await blob('key/multi-b', child.layers[0]!.digest)).status).toBe(200);
  });

  it('15. a v0.3 bundle (DSSE, cosign v3) found through the referrers tag schema satisfies a keyless policy', async () => {
    const repo = 'keyless/bundle';
    const image = await pushTestImage(registry.url, repo, 'v1', 'bundle-signed');
    await pushBundleReferrer(
      registry.url,
      repo,
      image,
      signBundle({ subject: image.digest, predicateType: COSIGN_SIGN_PREDICATE_TYPE, leaf }),
      COSIGN_SIGN_PREDICATE_TYPE,
    );
    await registry.clearRequests();
    await expectServed(await manifest(repo, 'v1'), image.digest);
    const seen = await upstreamRequests(repo);
    // distribution 2.8 has no referrers API (its router answers 404 and does not log it) and there is
    // no .sig for this image: what verified was the bundle read through the tag schema.
    expect((await fetch(`${registry.url}/v2/${repo}/referrers/${image.digest}`)).status).toBe(404);
    expect(seen.some((r) => r.kind === 'manifest' && r.reference?.endsWith('.sig') && r.status === 404)).toBe(
      true,
    );
    expect(seen.some((r) => r.kind === 'manifest' && r.reference === image.digest.replace(':', '-'))).toBe(
      true,
    );
    const admitted = proxy.logs.find((l) => l.msg === 'manifest admitted' && l.repository === repo);
    expect(admitted).toMatchObject({ signers: [{ kind: 'keyless', subject: IDENTITY }] });

    // The same bundle shape by a wrong identity is checked, not skipped.
    const wrongRepo = 'keyless/bundle-wrong';
    const wrong = await pushTestImage(registry.url, wrongRepo, 'v1', 'bundle-wrong');
    const evil = await world.issueLeaf({ subject: `${IDENTITY}-evil`, issuer: GITHUB_ISSUER });
    await pushBundleReferrer(
      registry.url,
      wrongRepo,
      wrong,
      signBundle({ subject: wrong.digest, predicateType: COSIGN_SIGN_PREDICATE_TYPE, leaf: evil }),
      COSIGN_SIGN_PREDICATE_TYPE,
    );
    await expectDenied(await manifest(wrongRepo, 'v1'), 'keyless-release', [
      { source: 'tag-schema', codes: ['identity-mismatch'] },
    ]);
  });

  it('16. a required SLSA v1 attestation: present allowed, absent denied with "missing attestation"', async () => {
    const ok = 'attest/ok';
    const image = await pushTestImage(registry.url, ok, 'v1', 'attested');
    await pushClassicAttestation(registry.url, ok, image.digest, [
      signClassicAttestation({
        subject: image.digest,
        predicateType: SLSA,
        leaf,
        predicate: { buildType: 'x' },
      }),
    ]);
    await expectServed(await manifest(ok, 'v1'), image.digest);

    const none = 'attest/none';
    await pushTestImage(registry.url, none, 'v1', 'not attested');
    const missing = await expectDenied(await manifest(none, 'v1'), 'slsa-required', []);
    expect(missing.message).toContain(`missing attestation ${SLSA}`);

    const old = 'attest/old-predicate';
    const oldImage = await pushTestImage(registry.url, old, 'v1', 'attested with slsa 0.2');
    await pushClassicAttestation(registry.url, old, oldImage.digest, [
      signClassicAttestation({ subject: oldImage.digest, predicateType: SLSA_02, leaf }),
    ]);
    const wrong = await expectDenied(await manifest(old, 'v1'), 'slsa-required', [
      { source: 'cosign-att', codes: ['wrong-predicate'] },
    ]);
    expect(wrong.message).toContain(`missing attestation ${SLSA} (found only ${SLSA_02})`);
  });

  it('17. cosign-verify style reads: .sig manifest and layer, referrers and bundle, under enforce', async () => {
    // Classic: the .sig of the signed image in key/app.
    const sigTag = `${signed.digest.replace(':', '-')}.sig`;
    const sigRes = await manifest('key/app', sigTag);
    const sigBytes = Buffer.from(await sigRes.arrayBuffer());
    expect(sigRes.status, sigBytes.toString('utf8')).toBe(200);
    const sigManifest = JSON.parse(sigBytes.toString('utf8')) as {
      config: { digest: string };
      layers: { digest: string; annotations: Record<string, string> }[];
    };
    expect(sigManifest.layers[0]!.annotations['dev.cosignproject.cosign/signature']).toBeTruthy();
    const layerRes = await blob('key/app', sigManifest.layers[0]!.digest);
    const payload = Buffer.from(await layerRes.arrayBuffer());
    expect(layerRes.status).toBe(200);
    expect(sha256(payload)).toBe(sigManifest.layers[0]!.digest);
    expect(JSON.parse(payload.toString('utf8'))).toMatchObject({
      critical: { image: { 'docker-manifest-digest': signed.digest } },
    });
    expect((await blob('key/app', sigManifest.config.digest)).status).toBe(200);

    // cosign v3: referrers (answered from the tag schema), the referrer manifest and its bundle layer.
    const repo = 'keyless/bundle';
    const subject = (await manifest(repo, 'v1', { method: 'HEAD' })).headers.get('docker-content-digest')!;
    const referrers = (await (
      await fetch(`${proxy.url}/v2/${repo}/referrers/${subject}?ns=${UPSTREAM}`)
    ).json()) as { manifests: { digest: string; artifactType?: string }[] };
    expect(referrers.manifests).toHaveLength(1);
    const referrer = referrers.manifests[0]!;
    const refBytes = await expectServed(await manifest(repo, referrer.digest), referrer.digest);
    const bundleLayer = (JSON.parse(refBytes.toString('utf8')) as { layers: { digest: string }[] })
      .layers[0]!;
    const bundleRes = await blob(repo, bundleLayer.digest);
    const bundle = Buffer.from(await bundleRes.arrayBuffer());
    expect(bundleRes.status).toBe(200);
    expect(JSON.parse(bundle.toString('utf8'))).toHaveProperty('dsseEnvelope');
  });

  it('11. a policy change applies without restart: reload() and the file watcher', async () => {
    const repo = 'reload/app';
    const image = await pushTestImage(registry.url, repo, 'v1', 'reload me');
    const own: TestProxy = await startTestProxy({
      upstreams: { [UPSTREAM]: { url: registry.url } },
      defaultUpstream: UPSTREAM,
      trust: { roots: { test: { file: rootFile } }, refresh: '0s' },
      policies: [{ name: 'open', match: ['**'], action: 'allow' }],
    });
    try {
      const get = (): Promise<Response> =>
        fetch(`${own.url}/v2/${repo}/manifests/v1?ns=${UPSTREAM}`, { headers: { accept: ACCEPT } });
      const setPolicy = (policy: Record<string, unknown>): Promise<void> =>
        rewriteConfig(own.config.source, (c) => {
          c.policies = [policy];
        });
      await expectServed(await get(), image.digest);

      await setPolicy({ name: 'lockdown', match: ['**'], action: 'deny' });
      await own.handle.reload();
      const denied = await expectDenied(await get(), 'lockdown', []);
      expect(denied.message).toBe('denied by policy "lockdown"');

      // No reload() call from here on: the watcher must notice the file.
      await setPolicy({ name: 'reopened', match: ['**'], action: 'allow' });
      const served = await poll('the watcher to apply "reopened"', async () => {
        const r = await get();
        if (r.status === 200) return r;
        await r.arrayBuffer();
        return undefined;
      });
      await expectServed(served, image.digest);

      await setPolicy({ name: 'lockdown-2', match: ['**'], action: 'deny' });
      const again = await poll('the watcher to apply "lockdown-2"', async () => {
        const r = await get();
        if (r.status === 403) return r;
        await r.arrayBuffer();
        return undefined;
      });
      await expectDenied(again, 'lockdown-2', []);
    } finally {
      await own.close();
    }
  });
});
