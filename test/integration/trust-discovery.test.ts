import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { RegistryError } from '../../src/oci/index.ts';
import type { Digest } from '../../src/oci/index.ts';
import { discoverEvidence, TrustMaterialStore } from '../../src/trust/index.ts';
import type { Attestor, Evidence } from '../../src/trust/index.ts';
import { UndiciUpstream } from '../../src/upstream/index.ts';
import { makeImage, startFakeUpstream } from '../support/fake-upstream.ts';
import type { FakeUpstream } from '../support/fake-upstream.ts';
import { startRegistry } from '../support/registry.ts';
import type { Registry } from '../support/registry.ts';
import {
  COSIGN_SIGN_PREDICATE_TYPE,
  createKeyPair,
  createTestSigstore,
  fakeRegistryWriter,
  GITHUB_ISSUER,
  pushBundleReferrer,
  pushClassicAttestation,
  pushClassicSignature,
  pushTestImage,
  signBundle,
  signClassic,
  signClassicAttestation,
} from '../support/signer.ts';
import type { TestKeyPair, TestLeaf, TestSigstore } from '../support/signer.ts';

const IDENTITY = 'https://github.com/acme/widgets/.github/workflows/release.yml@refs/tags/v1';
const SLSA = 'https://slsa.dev/provenance/v1';
const KEYLESS: Attestor = { keyless: { root: 'test', issuer: GITHUB_ISSUER, subject: IDENTITY } };

let world: TestSigstore;
let leaf: TestLeaf;
let key: TestKeyPair;
let store: TrustMaterialStore;
let dir: string;

function upstreamFor(url: string, host: string): UndiciUpstream {
  return new UndiciUpstream({
    host,
    config: {
      url,
      connectTimeout: 2_000,
      headersTimeout: 2_000,
      bodyTimeout: 2_000,
      retries: 0,
      connections: 4,
      insecureSkipTLSVerify: false,
    },
    retryDelayMs: 1,
  });
}

function summary(evidence: Evidence): string[] {
  return evidence.items.map(
    (i) => `${i.source} ${i.kind} ${i.predicateType ?? '-'}${i.parseError === undefined ? '' : ' !'}`,
  );
}

beforeAll(async () => {
  world = await createTestSigstore();
  leaf = await world.issueLeaf({ subject: IDENTITY, issuer: GITHUB_ISSUER });
  key = createKeyPair();
  dir = await mkdtemp(join(tmpdir(), 'pw-trust-discovery-'));
  const rootFile = join(dir, 'root.json');
  await writeFile(rootFile, JSON.stringify(world.trustedRootJSON));
  store = await TrustMaterialStore.load({
    roots: { test: { file: rootFile } },
    keys: { release: { pem: key.publicKeyPem } },
  });
});

afterAll(async () => {
  store.close();
  await rm(dir, { recursive: true, force: true });
});

describe('discovery against a real distribution registry', () => {
  let registry: Registry;
  let upstream: UndiciUpstream;

  beforeAll(async () => {
    registry = await startRegistry();
    upstream = upstreamFor(registry.url, registry.host);
  });

  afterAll(async () => {
    await upstream.close();
    await registry.stop();
  });

  it('finds .sig, .att and tag-schema bundles, verifies them, and counts round trips', async () => {
    const repo = 'acme/widgets';
    const image = await pushTestImage(registry.url, repo, 'v1');
    const subject = image.digest as Digest;
    await pushClassicSignature(registry.url, repo, subject, [
      signClassic({ subject, dockerReference: `${registry.host}/${repo}`, key }),
      signClassic({ subject, dockerReference: `${registry.host}/${repo}`, leaf }),
    ]);
    await pushClassicAttestation(registry.url, repo, subject, [
      signClassicAttestation({ subject, predicateType: SLSA, leaf }),
    ]);
    await pushBundleReferrer(
      registry.url,
      repo,
      image,
      signBundle({ subject, predicateType: COSIGN_SIGN_PREDICATE_TYPE, leaf }),
      COSIGN_SIGN_PREDICATE_TYPE,
    );
    await pushBundleReferrer(
      registry.url,
      repo,
      image,
      signBundle({ subject, predicateType: SLSA, leaf }),
      SLSA,
    );
    await registry.clearRequests();

    const evidence = await discoverEvidence(upstream, repo, subject);
    expect(evidence.problems).toEqual([]);
    expect(summary(evidence).sort()).toEqual(
      [
        `tag-schema signature ${COSIGN_SIGN_PREDICATE_TYPE}`,
        `tag-schema attestation ${SLSA}`,
        'cosign-sig signature -',
        'cosign-sig signature -',
        `cosign-att attestation ${SLSA}`,
      ].sort(),
    );
    // referrers API (404) + tag-schema index + 2 referrers + 2 bundles + .sig + 2 payloads + .att + 1 envelope
    expect(evidence.roundTrips).toBe(11);
    // distribution logs no "response completed" line for the referrers route it lacks (its mux 404s).
    const requests = (await registry.requests()).filter((r) => r.kind === 'manifest' || r.kind === 'blob');
    expect(requests.length).toBe(10);

    const outcomes = evidence.items.map((item) => ({
      item: `${item.source} ${item.kind}`,
      key: store.verify(item, { key: 'release' }, subject).ok,
      keyless: store.verify(item, KEYLESS, subject).ok,
    }));
    expect(outcomes.filter((o) => o.key).length).toBe(1);
    expect(outcomes.filter((o) => o.keyless).length).toBe(4);
  });

  it('reports nothing, without problems, for an unsigned digest', async () => {
    const image = await pushTestImage(registry.url, 'acme/unsigned', 'v1', 'unsigned');
    const evidence = await discoverEvidence(upstream, 'acme/unsigned', image.digest as Digest);
    expect(evidence).toMatchObject({ items: [], problems: [], roundTrips: 4 });
  });
});

describe('discovery against the fake upstream', () => {
  let fake: FakeUpstream | undefined;
  let upstream: UndiciUpstream | undefined;

  afterEach(async () => {
    await upstream?.close();
    await fake?.close();
    fake = undefined;
    upstream = undefined;
  });

  it('uses the referrers API when the upstream has it', async () => {
    fake = await startFakeUpstream({ referrersApi: true });
    upstream = upstreamFor(fake.url, fake.host);
    const img = makeImage(fake, 'acme/app', 'v1');
    const subject = img.manifestDigest as Digest;
    const descriptor = { mediaType: img.mediaType, digest: subject, size: img.manifestBytes.length };
    const writer = fakeRegistryWriter(fake);
    await pushBundleReferrer(
      writer,
      'acme/app',
      descriptor,
      signBundle({ subject, predicateType: COSIGN_SIGN_PREDICATE_TYPE, leaf }),
      COSIGN_SIGN_PREDICATE_TYPE,
      {
        tagSchema: false,
      },
    );
    await pushClassicSignature(writer, 'acme/app', subject, [
      signClassic({ subject, dockerReference: 'x/acme/app', key }),
    ]);
    fake.resetCounts();

    const evidence = await discoverEvidence(upstream, 'acme/app', subject);
    expect(summary(evidence)).toEqual([
      `referrers signature ${COSIGN_SIGN_PREDICATE_TYPE}`,
      'cosign-sig signature -',
    ]);
    expect(fake.count({ kind: 'referrers' })).toBe(1);
    expect(fake.count({ kind: 'manifest', ref: subject.replace(':', '-') })).toBe(0);
    // referrers + 1 referrer manifest + 1 bundle + .sig + 1 payload + .att (404)
    expect(evidence.roundTrips).toBe(6);
    expect(fake.count()).toBe(6);
    const [bundle, classic] = evidence.items;
    expect(store.verify(bundle!, KEYLESS, subject).ok).toBe(true);
    expect(store.verify(classic!, { key: 'release' }, subject).ok).toBe(true);
  });

  it("reads cosign's OCI 1.1 signature artifacts from the referrers API", async () => {
    fake = await startFakeUpstream({ referrersApi: true });
    upstream = upstreamFor(fake.url, fake.host);
    const img = makeImage(fake, 'acme/app', 'v1');
    const subject = img.manifestDigest as Digest;
    const sig = signClassic({ subject, dockerReference: 'x/acme/app', leaf });
    const empty = fake.putBlob('acme/app', '{}');
    const manifest = {
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      artifactType: 'application/vnd.dev.cosign.artifact.sig.v1+json',
      config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: empty, size: 2 },
      layers: [
        {
          mediaType: 'application/vnd.dev.cosign.simplesigning.v1+json',
          digest: fake.putBlob('acme/app', sig.payload),
          size: sig.payload.length,
          annotations: sig.annotations,
        },
      ],
      subject: { mediaType: img.mediaType, digest: subject, size: img.manifestBytes.length },
    };
    fake.putManifest('acme/app', undefined, JSON.stringify(manifest), manifest.mediaType);
    const evidence = await discoverEvidence(upstream, 'acme/app', subject);
    expect(summary(evidence)).toEqual(['referrers signature -']);
    expect(store.verify(evidence.items[0]!, KEYLESS, subject).ok).toBe(true);
  });

  it('records a corrupt layer as a parse error and keeps going', async () => {
    fake = await startFakeUpstream({ referrersApi: true });
    upstream = upstreamFor(fake.url, fake.host);
    const img = makeImage(fake, 'acme/app', 'v1');
    const subject = img.manifestDigest as Digest;
    const writer = fakeRegistryWriter(fake);
    const good = signClassic({ subject, dockerReference: 'x/acme/app', key });
    await pushClassicSignature(writer, 'acme/app', subject, [
      good,
      { payload: Buffer.from('not json'), annotations: {} },
    ]);
    const evidence = await discoverEvidence(upstream, 'acme/app', subject);
    expect(evidence.items).toHaveLength(2);
    const broken = evidence.items.find((i) => i.parseError !== undefined);
    expect(broken?.parseError).toMatch(/signature annotation/);
    expect(store.verify(broken!, { key: 'release' }, subject)).toMatchObject({
      ok: false,
      code: 'malformed',
    });
  });

  it('throws UNAVAILABLE when nothing was found and the upstream failed', async () => {
    fake = await startFakeUpstream({ referrersApi: true });
    upstream = upstreamFor(fake.url, fake.host);
    const img = makeImage(fake, 'acme/app', 'v1');
    fake.fault({ kind: 'referrers' }, { status: 503 });
    const err = await discoverEvidence(upstream, 'acme/app', img.manifestDigest as Digest).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(RegistryError);
    expect((err as RegistryError).code).toBe('UNAVAILABLE');
  });

  it('keeps what it found when one place fails, and records the problem', async () => {
    fake = await startFakeUpstream({ referrersApi: true });
    upstream = upstreamFor(fake.url, fake.host);
    const img = makeImage(fake, 'acme/app', 'v1');
    const subject = img.manifestDigest as Digest;
    await pushClassicSignature(fakeRegistryWriter(fake), 'acme/app', subject, [
      signClassic({ subject, dockerReference: 'x', key }),
    ]);
    fake.fault({ kind: 'referrers' }, { status: 503 });
    const evidence = await discoverEvidence(upstream, 'acme/app', subject);
    expect(evidence.items).toHaveLength(1);
    expect(evidence.problems.join('\n')).toMatch(/^referrers: /);
  });
});
