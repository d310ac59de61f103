import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Digest } from '../../../src/oci/index.ts';
import { statementObject, TrustMaterialStore } from '../../../src/trust/index.ts';
import type { Attestor, FoundSignature } from '../../../src/trust/index.ts';
import {
  COSIGN_SIGN_PREDICATE_TYPE,
  createKeyPair,
  createTestSigstore,
  GITHUB_ISSUER,
  signBundle,
  signClassic,
  signClassicAttestation,
} from '../../support/signer.ts';
import type { TestKeyPair, TestLeaf, TestSigstore } from '../../support/signer.ts';
import { foundBundle, foundClassic, foundClassicAttestation, tempDir } from './helpers.ts';

const digestOf = (s: string): Digest => `sha256:${createHash('sha256').update(s).digest('hex')}` as Digest;
const SUBJECT = digestOf('the image manifest');
const OTHER = digestOf('another image manifest');
const REF = 'registry.test/acme/widgets';
const IDENTITY = 'https://github.com/acme/widgets/.github/workflows/release.yml@refs/tags/v1.2.3';
const SLSA = 'https://slsa.dev/provenance/v1';

let world: TestSigstore;
let otherWorld: TestSigstore;
let leaf: TestLeaf;
let key: TestKeyPair;
let store: TrustMaterialStore;
let cleanup: () => Promise<void>;

const keyless = (subject: string, root = 'test'): Attestor => ({
  keyless: { root, issuer: GITHUB_ISSUER, subject },
});

beforeAll(async () => {
  world = await createTestSigstore();
  otherWorld = await createTestSigstore({ name: 'other.local' });
  leaf = await world.issueLeaf({ subject: IDENTITY, issuer: GITHUB_ISSUER });
  key = createKeyPair();
  const tmp = await tempDir();
  cleanup = tmp.cleanup;
  store = await TrustMaterialStore.load({
    roots: {
      test: { file: await tmp.write('test-root.json', world.trustedRootJSON) },
      other: { file: await tmp.write('other-root.json', otherWorld.trustedRootJSON) },
    },
    keys: { release: { pem: key.publicKeyPem }, spare: { pem: createKeyPair('p384').publicKeyPem } },
    keyTlogRoot: 'test',
  });
});

afterAll(async () => {
  store.close();
  await cleanup();
});

function expectFail(outcome: ReturnType<TrustMaterialStore['verify']>, code: string): void {
  expect(outcome.ok, JSON.stringify(outcome)).toBe(false);
  if (!outcome.ok) expect(outcome.code, outcome.reason).toBe(code);
}

describe('key-based classic signatures', () => {
  it('verifies a signature made with the configured key', () => {
    const found = foundClassic(signClassic({ subject: SUBJECT, dockerReference: REF, key }));
    expect(store.verify(found, { key: 'release' }, SUBJECT)).toEqual({
      ok: true,
      signer: { kind: 'key', key: 'release' },
    });
  });

  it('refuses a tampered payload as signature-invalid', () => {
    const sig = signClassic({ subject: SUBJECT, dockerReference: REF, key });
    const tampered = Buffer.from(sig.payload.toString().replace(REF, 'registry.test/evil/widgets'));
    const found: FoundSignature = { ...foundClassic(sig), artifact: tampered };
    expectFail(store.verify(found, { key: 'release' }, SUBJECT), 'signature-invalid');
  });

  it('refuses a valid signature bound to another digest as digest-mismatch', () => {
    const found = foundClassic(signClassic({ subject: OTHER, dockerReference: REF, key }));
    expectFail(store.verify(found, { key: 'release' }, SUBJECT), 'digest-mismatch');
  });

  it('refuses a payload of another simplesigning type', () => {
    const found = foundClassic(
      signClassic({ subject: SUBJECT, dockerReference: REF, key, type: 'something else' }),
    );
    expectFail(store.verify(found, { key: 'release' }, SUBJECT), 'malformed');
  });

  it('refuses a signature by another configured key', () => {
    const found = foundClassic(signClassic({ subject: SUBJECT, dockerReference: REF, key }));
    expectFail(store.verify(found, { key: 'spare' }, SUBJECT), 'signature-invalid');
  });

  it('answers unknown-key for a key that is not configured', () => {
    const found = foundClassic(signClassic({ subject: SUBJECT, dockerReference: REF, key }));
    expectFail(store.verify(found, { key: 'nope' }, SUBJECT), 'unknown-key');
  });

  it('requires a transparency log entry when the attestor says tlog: true', () => {
    const bare = foundClassic(signClassic({ subject: SUBJECT, dockerReference: REF, key }));
    expectFail(store.verify(bare, { key: 'release', tlog: true }, SUBJECT), 'tlog-missing');
    const logged = foundClassic(
      signClassic({ subject: SUBJECT, dockerReference: REF, key, tlog: true, world }),
    );
    expect(store.verify(logged, { key: 'release', tlog: true }, SUBJECT).ok).toBe(true);
  });

  it('verifies P-384 and RSA keys', async () => {
    for (const alg of ['p384', 'rsa'] as const) {
      const k = createKeyPair(alg);
      const s = await TrustMaterialStore.load({ keys: { k: { pem: k.publicKeyPem } } });
      const found = foundClassic(signClassic({ subject: SUBJECT, dockerReference: REF, key: k }));
      expect(s.verify(found, { key: 'k' }, SUBJECT), alg).toEqual({
        ok: true,
        signer: { kind: 'key', key: 'k' },
      });
    }
  });

  it('refuses Ed25519 keys at load with a clear error', async () => {
    await expect(
      TrustMaterialStore.load({ keys: { ed: { pem: createKeyPair('ed25519').publicKeyPem } } }),
    ).rejects.toThrow(/key ed: ed25519 keys are not supported/);
  });
});

describe('keyless classic signatures', () => {
  const signed = (l: TestLeaf = leaf, integratedTime?: number): FoundSignature =>
    foundClassic(
      signClassic({
        subject: SUBJECT,
        dockerReference: REF,
        leaf: l,
        ...(integratedTime === undefined ? {} : { integratedTime }),
      }),
    );

  it('verifies with the right identity and issuer under the named root', () => {
    const found = signed();
    const cold = process.cpuUsage();
    expect(store.verify(found, keyless(IDENTITY, 'other'), SUBJECT).ok).toBe(false);
    expect(store.verify(found, keyless(IDENTITY), SUBJECT).ok).toBe(true);
    const first = process.cpuUsage(cold);
    const started = process.cpuUsage();
    const t0 = performance.now();
    const runs = 50;
    for (let i = 0; i < runs; i++) expect(store.verify(found, keyless(IDENTITY), SUBJECT).ok).toBe(true);
    const cpu = process.cpuUsage(started);
    console.log(
      `keyless classic verification: first decision ${((first.user + first.system) / 1000).toFixed(2)} ms CPU ` +
        `(two attestors tried), then ${((cpu.user + cpu.system) / 1000 / runs).toFixed(2)} ms CPU, ` +
        `${((performance.now() - t0) / runs).toFixed(2)} ms wall per signature (${runs} runs)`,
    );
    expect(store.verify(found, keyless(IDENTITY), SUBJECT)).toEqual({
      ok: true,
      signer: { kind: 'keyless', issuer: GITHUB_ISSUER, subject: IDENTITY },
    });
  });

  it('matches a glob subject, anchored', () => {
    const found = signed();
    expect(
      store.verify(found, keyless('https://github.com/acme/widgets/.github/workflows/*@refs/tags/*'), SUBJECT)
        .ok,
    ).toBe(true);
    expect(
      store.verify(
        found,
        { keyless: { root: 'test', issuer: GITHUB_ISSUER, subjectRegExp: 'https://github\\.com/acme/.*' } },
        SUBJECT,
      ).ok,
    ).toBe(true);
  });

  it('refuses another identity as identity-mismatch', () => {
    expectFail(
      store.verify(
        signed(),
        keyless('https://github.com/acme/gadgets/.github/workflows/release.yml@refs/tags/v1.2.3'),
        SUBJECT,
      ),
      'identity-mismatch',
    );
  });

  it('does not match a prefix or substring of the identity', () => {
    const found = signed();
    expectFail(store.verify(found, keyless('acme/widgets'), SUBJECT), 'identity-mismatch');
    expectFail(store.verify(found, keyless('https://github.com/acme/widgets'), SUBJECT), 'identity-mismatch');
    expectFail(
      store.verify(found, keyless('https://github.com/acme/widgets/.github/workflows/release.yml'), SUBJECT),
      'identity-mismatch',
    );
    expectFail(
      store.verify(
        found,
        { keyless: { root: 'test', issuer: GITHUB_ISSUER, subjectRegExp: 'acme/widgets' } },
        SUBJECT,
      ),
      'identity-mismatch',
    );
    // Dots are literal in a glob.
    expectFail(
      store.verify(found, keyless(IDENTITY.replace('github.com', 'github-com')), SUBJECT),
      'identity-mismatch',
    );
  });

  it('refuses another issuer as issuer-mismatch', () => {
    const found = signed();
    expectFail(
      store.verify(
        found,
        { keyless: { root: 'test', issuer: 'https://accounts.google.com', subject: IDENTITY } },
        SUBJECT,
      ),
      'issuer-mismatch',
    );
  });

  it('refuses the right identity under an untrusted root', async () => {
    const stranger = await otherWorld.issueLeaf({ subject: IDENTITY, issuer: GITHUB_ISSUER });
    expectFail(store.verify(signed(stranger), keyless(IDENTITY), SUBJECT), 'untrusted-root');
    // …and a genuine signature checked against another configured root.
    expectFail(store.verify(signed(), keyless(IDENTITY, 'other'), SUBJECT), 'untrusted-root');
    expectFail(store.verify(signed(), keyless(IDENTITY, 'missing'), SUBJECT), 'untrusted-root');
  });

  it('refuses a certificate expired at signing time', async () => {
    const now = Date.now();
    const old = await world.issueLeaf({
      subject: IDENTITY,
      issuer: GITHUB_ISSUER,
      notBefore: new Date(now - 30 * 60_000),
      notAfter: new Date(now - 20 * 60_000),
    });
    expectFail(
      store.verify(signed(old, Math.floor(now / 1000)), keyless(IDENTITY), SUBJECT),
      'certificate-expired',
    );
  });

  it('accepts a certificate that expired after signing (signing time comes from the log)', async () => {
    const now = Date.now();
    const old = await world.issueLeaf({
      subject: IDENTITY,
      issuer: GITHUB_ISSUER,
      notBefore: new Date(now - 30 * 60_000),
      notAfter: new Date(now - 20 * 60_000),
    });
    expect(
      store.verify(signed(old, Math.floor((now - 25 * 60_000) / 1000)), keyless(IDENTITY), SUBJECT).ok,
    ).toBe(true);
  });

  it('refuses a certificate without the codeSigning EKU', async () => {
    const noEku = await world.issueLeaf({ subject: IDENTITY, issuer: GITHUB_ISSUER, codeSigning: false });
    expectFail(store.verify(signed(noEku), keyless(IDENTITY), SUBJECT), 'no-codesigning-eku');
  });

  it('refuses a keyless signature without a transparency log entry', () => {
    const sig = signClassic({ subject: SUBJECT, dockerReference: REF, leaf, tlog: false });
    expectFail(store.verify(foundClassic(sig), keyless(IDENTITY), SUBJECT), 'tlog-missing');
  });

  it('refuses a keyless signature bound to another digest', () => {
    const found = foundClassic(signClassic({ subject: OTHER, dockerReference: REF, leaf }));
    expectFail(store.verify(found, keyless(IDENTITY), SUBJECT), 'digest-mismatch');
  });

  it('refuses a Rekor entry that names another key than the certificate', async () => {
    // The entry matches the signature and payload hash (what @sigstore/verify compares) but records
    // another signer: cosign's comparePublicKey refuses this, and so do we.
    const sig = signClassic({ subject: SUBJECT, dockerReference: REF, leaf, tlog: false });
    const other = await world.issueLeaf({ subject: IDENTITY, issuer: GITHUB_ISSUER });
    const body = {
      apiVersion: '0.0.1',
      kind: 'hashedrekord',
      spec: {
        data: {
          hash: { algorithm: 'sha256', value: createHash('sha256').update(sig.payload).digest('hex') },
        },
        signature: {
          content: sig.annotations['dev.cosignproject.cosign/signature'],
          publicKey: { content: Buffer.from(other.certPem).toString('base64') },
        },
      },
    };
    sig.annotations['dev.sigstore.cosign/bundle'] = world.logEntry(body).annotation;
    const outcome = store.verify(foundClassic(sig), keyless(IDENTITY), SUBJECT);
    expectFail(outcome, 'tlog-invalid');
    expect(!outcome.ok && outcome.reason).toMatch(/different signer key/);
  });

  it('refuses a key-signed signature for a keyless attestor and vice versa', () => {
    const keyed = foundClassic(signClassic({ subject: SUBJECT, dockerReference: REF, key }));
    expectFail(store.verify(keyed, keyless(IDENTITY), SUBJECT), 'identity-mismatch');
    expectFail(store.verify(signed(), { key: 'release' }, SUBJECT), 'unknown-key');
  });
});

describe('Sigstore bundles (DSSE)', () => {
  it('counts a cosign v3 signature bundle as a signature and verifies it', () => {
    const found = foundBundle(
      signBundle({ subject: SUBJECT, predicateType: COSIGN_SIGN_PREDICATE_TYPE, leaf }),
    );
    expect(found.kind).toBe('signature');
    expect(store.verify(found, keyless(IDENTITY), SUBJECT)).toEqual({
      ok: true,
      signer: { kind: 'keyless', issuer: GITHUB_ISSUER, subject: IDENTITY },
    });
    expectFail(store.verify(found, keyless(IDENTITY), OTHER), 'digest-mismatch');
  });

  it('verifies an attestation with its predicate type', () => {
    const found = foundBundle(
      signBundle({ subject: SUBJECT, predicateType: SLSA, predicate: { buildDefinition: {} }, leaf }),
    );
    expect(found).toMatchObject({ kind: 'attestation', predicateType: SLSA });
    expect(store.verify(found, keyless(IDENTITY), SUBJECT).ok).toBe(true);
  });

  it('verifies a key-signed bundle', () => {
    const found = foundBundle(
      signBundle({ subject: SUBJECT, predicateType: COSIGN_SIGN_PREDICATE_TYPE, key }),
    );
    expect(store.verify(found, { key: 'release' }, SUBJECT).ok).toBe(true);
  });

  it('keeps an outcome per found object, attestor and subject, and parses the statement once', () => {
    const json = signBundle({
      subject: SUBJECT,
      predicateType: SLSA,
      predicate: { buildDefinition: {} },
      key,
    });
    const found = foundBundle(json);
    const env = found.bundle.content.$case === 'dsseEnvelope' ? found.bundle.content.dsseEnvelope : undefined;
    const first = store.verify(found, { key: 'release' }, SUBJECT);
    expect(first.ok).toBe(true);
    // The same question again: the kept outcome, and the statement discovery and the reader share.
    expect(store.verify(found, { key: 'release' }, SUBJECT)).toBe(first);
    expect(statementObject(env!)).toBe(statementObject(env!));
    // Another subject, another attestor: asked anew, not answered from the kept outcome.
    expectFail(store.verify(found, { key: 'release' }, OTHER), 'digest-mismatch');
    expectFail(store.verify(found, { key: 'spare' }, SUBJECT), 'signature-invalid');
    // A forged copy is another object: verified on its own, never from the original's outcome.
    const forged = structuredClone(json);
    const fenv = forged.dsseEnvelope as { payload: string };
    const st = JSON.parse(Buffer.from(fenv.payload, 'base64').toString()) as { predicate: unknown };
    st.predicate = { forged: true };
    fenv.payload = Buffer.from(JSON.stringify(st)).toString('base64');
    expectFail(store.verify(foundBundle(forged), { key: 'release' }, SUBJECT), 'signature-invalid');
  });

  it('refuses a bundle whose envelope was altered', () => {
    const json = signBundle({ subject: SUBJECT, predicateType: SLSA, leaf });
    const env = json.dsseEnvelope as { payload: string };
    const statement = JSON.parse(Buffer.from(env.payload, 'base64').toString()) as { predicate: unknown };
    statement.predicate = { forged: true };
    env.payload = Buffer.from(JSON.stringify(statement)).toString('base64');
    const outcome = store.verify(foundBundle(json), keyless(IDENTITY), SUBJECT);
    expect(outcome.ok).toBe(false);
  });

  it('verifies a classic .att attestation', () => {
    const found = foundClassicAttestation(
      signClassicAttestation({ subject: SUBJECT, predicateType: SLSA, leaf }),
    );
    expect(found.predicateType).toBe(SLSA);
    expect(store.verify(found, keyless(IDENTITY), SUBJECT).ok).toBe(true);
    expectFail(store.verify(found, keyless(IDENTITY), OTHER), 'digest-mismatch');
  });
});

describe('robustness and version', () => {
  it('turns a parse error into malformed', () => {
    const found: FoundSignature = {
      ...foundClassic(signClassic({ subject: SUBJECT, dockerReference: REF, key })),
      parseError: 'bad layer',
    };
    expectFail(store.verify(found, { key: 'release' }, SUBJECT), 'malformed');
  });

  it('never throws, whatever the bundle holds', () => {
    const found = foundClassic(signClassic({ subject: SUBJECT, dockerReference: REF, leaf }));
    const broken = {
      ...found,
      bundle: { ...found.bundle, verificationMaterial: undefined },
    } as unknown as FoundSignature;
    expectFail(store.verify(broken, keyless(IDENTITY), SUBJECT), 'malformed');
    const noArtifact: FoundSignature = { ...found };
    delete noArtifact.artifact;
    expect(store.verify(noArtifact, keyless(IDENTITY), SUBJECT).ok).toBe(false);
  });

  it('changes version when keys or roots change, and not otherwise', async () => {
    const a = await TrustMaterialStore.load({ keys: { k: { pem: key.publicKeyPem } } });
    const b = await TrustMaterialStore.load({ keys: { k: { pem: key.publicKeyPem } } });
    const c = await TrustMaterialStore.load({ keys: { k: { pem: createKeyPair().publicKeyPem } } });
    expect(a.version).toBe(b.version);
    expect(a.version).not.toBe(c.version);
    expect(store.version).not.toBe(a.version);
  });
});
