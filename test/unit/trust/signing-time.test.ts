/**
 * When an attestation was signed, as the policy's "newest decides" rule reads it: only times that are
 * signed count — a tlog entry's integratedTime under its SET, an RFC 3161 token's genTime — and the
 * bundle verifies through the real @sigstore/verify with the test world's TSA in the trust root.
 */
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Digest } from '../../../src/oci/index.ts';
import { CachingAttestationReader, TrustMaterialStore } from '../../../src/trust/index.ts';
import type { Attestor } from '../../../src/trust/index.ts';
import {
  createTestSigstore,
  GITHUB_ISSUER,
  signBundle,
  withRfc3161Timestamps,
} from '../../support/signer.ts';
import type { TestLeaf, TestSigstore } from '../../support/signer.ts';
import { foundBundle, tempDir } from './helpers.ts';

const SUBJECT = `sha256:${createHash('sha256').update('image').digest('hex')}` as Digest;
const IDENTITY = 'https://github.com/acme/widgets/.github/workflows/release.yml@refs/tags/v1.2.3';
const VULN = 'https://cosign.sigstore.dev/attestation/vuln/v1';
const NOW = Math.floor(Date.now() / 1000) * 1000;
const attestor: Attestor = { keyless: { root: 'test', issuer: GITHUB_ISSUER, subject: IDENTITY } };

let world: TestSigstore;
let leaf: TestLeaf;
let store: TrustMaterialStore;
let noTsa: TrustMaterialStore;
let cleanup: () => Promise<void>;

beforeAll(async () => {
  world = await createTestSigstore({ now: NOW });
  leaf = await world.issueLeaf({ subject: IDENTITY, issuer: GITHUB_ISSUER });
  const tmp = await tempDir();
  cleanup = tmp.cleanup;
  store = await TrustMaterialStore.load({
    roots: { test: { file: await tmp.write('root.json', world.trustedRootJSON) } },
  });
  noTsa = await TrustMaterialStore.load({
    roots: {
      test: { file: await tmp.write('no-tsa.json', { ...world.trustedRootJSON, timestampAuthorities: [] }) },
    },
  });
});

afterAll(async () => {
  store.close();
  noTsa.close();
  await cleanup();
});

const attestation = (integratedTime = NOW / 1000): Record<string, unknown> =>
  signBundle({ subject: SUBJECT, predicateType: VULN, predicate: { scanner: {} }, leaf, integratedTime });

describe('signing time of a verified attestation', () => {
  it('is the integratedTime its SET signs', () => {
    const found = foundBundle(attestation(NOW / 1000 - 30));
    expect(store.verify(found, attestor, SUBJECT).ok).toBe(true);
    expect(new CachingAttestationReader().signedAt(found)).toBe(NOW - 30_000);
  });

  it('is the genTime of an RFC 3161 token when the tlog entry has no SET (Rekor v2)', async () => {
    const found = foundBundle(await withRfc3161Timestamps(attestation(), world, [new Date(NOW - 20_000)]));
    const outcome = store.verify(found, attestor, SUBJECT);
    expect(outcome.ok, JSON.stringify(outcome)).toBe(true);
    expect(new CachingAttestationReader().signedAt(found)).toBe(NOW - 20_000);
  });

  it('does not take an integratedTime no SET signs (a pusher can rewrite it)', async () => {
    // The entry keeps its inclusion proof (which does not cover integratedTime) and the token; the
    // bundle's integratedTime is moved a day ahead, as someone wanting this scan to look newest would.
    const json = await withRfc3161Timestamps(attestation(), world, [new Date(NOW - 20_000)]);
    const material = json.verificationMaterial as { tlogEntries: Record<string, unknown>[] };
    material.tlogEntries = material.tlogEntries.map((e) => ({
      ...e,
      integratedTime: String(NOW / 1000 + 86_400),
    }));
    const found = foundBundle(json);
    expect(store.verify(found, attestor, SUBJECT).ok).toBe(true);
    expect(new CachingAttestationReader().signedAt(found)).toBe(NOW - 20_000);
  });

  it('is the earliest signed time when a bundle has several', async () => {
    const json = await withRfc3161Timestamps(attestation(NOW / 1000 - 10), world, [new Date(NOW - 40_000)], {
      keepSet: true,
    });
    const found = foundBundle(json);
    expect(store.verify(found, attestor, SUBJECT).ok).toBe(true);
    expect(new CachingAttestationReader().signedAt(found)).toBe(NOW - 40_000);
  });

  it('fails verification when the token is from no TSA of the trust root', async () => {
    const found = foundBundle(await withRfc3161Timestamps(attestation(), world, [new Date(NOW - 20_000)]));
    const outcome = noTsa.verify(found, attestor, SUBJECT);
    expect(outcome.ok).toBe(false);
  });

  it('fails verification when the token timestamps other bytes', async () => {
    const json = await withRfc3161Timestamps(attestation(), world, [new Date(NOW - 20_000)]);
    const other = await withRfc3161Timestamps(attestation(), world, [new Date(NOW - 20_000)]);
    const material = json.verificationMaterial as Record<string, unknown>;
    material.timestampVerificationData = (
      other.verificationMaterial as Record<string, unknown>
    ).timestampVerificationData;
    expect(store.verify(foundBundle(json), attestor, SUBJECT).ok).toBe(false);
  });
});
