import type { Bundle } from '@sigstore/bundle';
import { describe, expect, it } from 'vitest';
import type { Digest } from '../../../src/oci/index.ts';
import {
  decisionDetail,
  formatDenyMessage,
  MAX_ITEMS_CHECKED,
  PolicyConfigError,
  PolicyEngine,
  policiesSchema,
  trustSchema,
} from '../../../src/policy/index.ts';
import type { PoliciesInput, Policy } from '../../../src/policy/index.ts';
import type {
  Attestor,
  Evidence,
  FoundSignature,
  SignatureVerifier,
  SignerIdentity,
  VerifyOutcome,
} from '../../../src/trust/types.ts';

const GITHUB = 'https://token.actions.githubusercontent.com';
const DIGEST = `sha256:${'a'.repeat(64)}` as Digest;
const OTHER = `sha256:${'b'.repeat(64)}` as Digest;
const SLSA = 'https://slsa.dev/provenance/v1';
const trust = trustSchema.parse({ keys: { release: { file: '/k.pub' }, second: { file: '/k2.pub' } } });

let counter = 0;
const manifestDigest = () => `sha256:${(++counter).toString(16).padStart(64, '0')}` as Digest;

/**
 * A stand-in for the Sigstore verifier: each found item carries the identity that "signed" it; it
 * verifies under an attestor when that identity is the attestor's (key name, or issuer + subject).
 * The real verifier is tested in test/unit/trust; the policy module only sees outcomes.
 */
class FakeVerifier implements SignatureVerifier {
  readonly version = 'fake-1';
  readonly signedBy = new WeakMap<FoundSignature, SignerIdentity | 'bad-signature'>();
  calls = 0;

  verify(found: FoundSignature, attestor: Attestor, subject: Digest): VerifyOutcome {
    this.calls++;
    const signer = this.signedBy.get(found);
    if (signer === 'bad-signature' || signer === undefined) {
      return { ok: false, code: 'signature-invalid', reason: 'signature does not verify' };
    }
    if (subject !== DIGEST) return { ok: false, code: 'digest-mismatch', reason: 'wrong digest' };
    if ('key' in attestor) {
      return signer.kind === 'key' && signer.key === attestor.key
        ? { ok: true, signer }
        : { ok: false, code: 'unknown-key', reason: `not signed by key "${attestor.key}"` };
    }
    const want = attestor.keyless;
    if (signer.kind !== 'keyless')
      return { ok: false, code: 'identity-mismatch', reason: 'not a certificate' };
    if (signer.issuer !== want.issuer) {
      return {
        ok: false,
        code: 'issuer-mismatch',
        reason: `issuer mismatch: got "${signer.issuer}", want "${want.issuer}"`,
      };
    }
    const subjectOk =
      want.subject !== undefined
        ? signer.subject === want.subject
        : new RegExp(`^(?:${want.subjectRegExp ?? ''})$`).test(signer.subject);
    return subjectOk
      ? { ok: true, signer }
      : {
          ok: false,
          code: 'identity-mismatch',
          reason: `identity mismatch: got "${signer.subject}", want "${want.subject ?? want.subjectRegExp ?? ''}"`,
        };
  }

  item(
    signer: SignerIdentity | 'bad-signature',
    options: { kind?: 'signature' | 'attestation'; predicateType?: string; parseError?: string } = {},
  ): FoundSignature {
    const found: FoundSignature = {
      source: options.kind === 'attestation' ? 'cosign-att' : 'cosign-sig',
      kind: options.kind ?? 'signature',
      manifestDigest: manifestDigest(),
      layerDigest: manifestDigest(),
      bundle: {} as unknown as Bundle,
      ...(options.predicateType !== undefined ? { predicateType: options.predicateType } : {}),
      ...(options.parseError !== undefined ? { parseError: options.parseError } : {}),
    };
    this.signedBy.set(found, signer);
    return found;
  }
}

const key = (name: string): SignerIdentity => ({ kind: 'key', key: name });
const gh = (subject: string): SignerIdentity => ({ kind: 'keyless', issuer: GITHUB, subject });
const evidence = (items: FoundSignature[], problems: string[] = []): Evidence => ({
  subject: DIGEST,
  items,
  roundTrips: 1,
  problems,
});

function engineOf(input: PoliciesInput): PolicyEngine {
  return new PolicyEngine(policiesSchema.parse(input), trust);
}

const RELEASE_WF = 'https://github.com/acme/app/.github/workflows/release.yml@refs/tags/v1';

const policies = [
  {
    name: 'our-images',
    match: ['ghcr.io/acme/**'],
    action: 'verify',
    signatures: {
      threshold: 1,
      attestors: [
        { key: 'release' },
        { keyless: { root: 'public-good', issuer: GITHUB, subject: RELEASE_WF } },
      ],
    },
  },
  { name: 'docker-official', match: ['docker.io/library/*'], action: 'allow' },
  { name: 'blocked', match: ['docker.io/evil/**'], action: 'deny' },
  { name: 'fallback-acme', match: ['ghcr.io/**'], action: 'allow' },
] satisfies PoliciesInput;

describe('PolicyEngine.match', () => {
  const engine = engineOf(policies);

  it('takes the first policy that matches', () => {
    expect(engine.match('ghcr.io', 'acme/app')?.name).toBe('our-images');
    expect(engine.match('ghcr.io', 'other/app')?.name).toBe('fallback-acme');
    expect(engine.match('docker.io', 'library/nginx')?.name).toBe('docker-official');
  });

  it('matches nothing outside the globs', () => {
    expect(engine.match('docker.io', 'library/a/b')).toBeUndefined();
    expect(engine.match('quay.io', 'acme/app')).toBeUndefined();
  });
});

describe('PolicyEngine.decide', () => {
  const engine = engineOf(policies);
  const decide = (
    upstream: string,
    repository: string,
    ev: Evidence | undefined,
    verifier = new FakeVerifier(),
  ) => engine.decide({ upstream, repository, digest: DIGEST, evidence: ev, verifier });

  it('denies when no policy matches, and says which name matched nothing', () => {
    const d = decide('quay.io', 'acme/app', undefined);
    expect(d).toEqual({
      result: 'deny',
      policy: undefined,
      reasons: ['no policy matches quay.io/acme/app'],
      signers: [],
      checks: [],
    });
    expect(formatDenyMessage(d)).toBe('denied: no policy matches quay.io/acme/app');
  });

  it('allows and denies by action without looking at evidence', () => {
    const verifier = new FakeVerifier();
    expect(decide('docker.io', 'library/nginx', undefined, verifier)).toMatchObject({
      result: 'allow',
      policy: 'docker-official',
      reasons: ['allowed by policy "docker-official"'],
    });
    const denied = decide('docker.io', 'evil/miner', evidence([verifier.item(key('release'))]), verifier);
    expect(denied).toMatchObject({
      result: 'deny',
      policy: 'blocked',
      reasons: ['denied by policy "blocked"'],
    });
    expect(formatDenyMessage(denied)).toBe('denied by policy "blocked"');
    expect(verifier.calls).toBe(0);
  });

  it('allows a digest signed by a configured key and names the signer', () => {
    const v = new FakeVerifier();
    const d = decide('ghcr.io', 'acme/app', evidence([v.item(key('release'))]), v);
    expect(d.result).toBe('allow');
    expect(d.policy).toBe('our-images');
    expect(d.signers).toEqual([key('release')]);
    expect(d.reasons[0]).toBe(
      'policy "our-images": 1 of 1 required signatures (threshold 1 of 2 attestors): satisfied: key(release) by key release',
    );
    expect(d.checks).toEqual([
      expect.objectContaining({
        kind: 'signature',
        source: 'cosign-sig',
        ok: true,
        attestor: 'key(release)',
        signer: key('release'),
      }),
    ]);
  });

  it('denies an unsigned digest with a reason that names the policy', () => {
    const d = decide('ghcr.io', 'acme/app', evidence([]));
    expect(d.result).toBe('deny');
    expect(d.reasons).toEqual([
      'policy "our-images": 0 of 1 required signatures (threshold 1 of 2 attestors): no signature found',
    ]);
    expect(formatDenyMessage(d)).toBe(
      'denied by policy "our-images": 0 of 1 required signatures (threshold 1 of 2 attestors): no signature found',
    );
    // No evidence at all (not looked up) is the same as none found: fail closed.
    expect(decide('ghcr.io', 'acme/app', undefined).result).toBe('deny');
  });

  it('explains each signature that failed, per attestor', () => {
    const v = new FakeVerifier();
    const evil = v.item(gh('https://github.com/evil/app/.github/workflows/release.yml@refs/tags/v1'));
    const d = decide('ghcr.io', 'acme/app', evidence([evil, v.item('bad-signature')]), v);
    expect(d.result).toBe('deny');
    expect(d.reasons[0]).toBe(
      'policy "our-images": 0 of 1 required signatures (threshold 1 of 2 attestors): 2 signatures found, none verified',
    );
    const evilWf = 'https://github.com/evil/app/.github/workflows/release.yml@refs/tags/v1';
    const keyless = `keyless(root=public-good, issuer=${GITHUB}, subject=${RELEASE_WF})`;
    expect(d.reasons[1]).toBe(
      `policy "our-images": signature ${evil.manifestDigest} from cosign-sig: ` +
        `key(release): not signed by key "release"; ` +
        `${keyless}: identity mismatch: got "${evilWf}", want "${RELEASE_WF}"`,
    );
    expect(d.checks[0]?.failures).toEqual([
      { attestor: 'key(release)', code: 'unknown-key', reason: 'not signed by key "release"' },
      {
        attestor: keyless,
        code: 'identity-mismatch',
        reason: `identity mismatch: got "${evilWf}", want "${RELEASE_WF}"`,
      },
    ]);
    const message = formatDenyMessage(d);
    expect(message).toMatch(
      /^denied by policy "our-images": 0 of 1 required signatures .*none verified; signature sha256:/,
    );
    expect(message).toContain('identity mismatch: got "https://github.com/evil/');
  });

  it('records a signature that could not be parsed as malformed without calling the verifier', () => {
    const v = new FakeVerifier();
    const d = decide(
      'ghcr.io',
      'acme/app',
      evidence([v.item(key('release'), { parseError: 'bad\nbundle' })]),
      v,
    );
    expect(d.result).toBe('deny');
    expect(d.checks[0]?.failures?.map((f) => f.code)).toEqual(['malformed', 'malformed']);
    expect(d.checks[0]?.failures?.[0]?.reason).toBe('bad bundle');
    expect(v.calls).toBe(0);
  });

  it('treats a verifier that throws as a failed signature', () => {
    const v = new FakeVerifier();
    v.verify = () => {
      throw new Error('boom');
    };
    const d = decide('ghcr.io', 'acme/app', evidence([v.item(key('release'))]), v);
    expect(d.result).toBe('deny');
    expect(d.checks[0]?.failures?.[0]).toMatchObject({ code: 'verifier-error', reason: 'boom' });
  });

  it('fails closed on evidence about another digest', () => {
    const v = new FakeVerifier();
    const d = decide('ghcr.io', 'acme/app', { ...evidence([v.item(key('release'))]), subject: OTHER }, v);
    expect(d.result).toBe('deny');
    expect(d.reasons[0]).toBe(`policy "our-images": evidence is for ${OTHER}, not ${DIGEST}`);
  });

  it('adds discovery problems to the reasons of a failed decision', () => {
    const d = decide('ghcr.io', 'acme/app', evidence([], ['malformed .sig manifest sha256:…']));
    expect(d.reasons.at(-1)).toBe('policy "our-images": discovery: malformed .sig manifest sha256:…');
  });
});

describe('thresholds count distinct attestors', () => {
  const twoOfTwo = engineOf([
    {
      name: 'two-keys',
      match: ['**'],
      action: 'verify',
      signatures: { threshold: 2, attestors: [{ key: 'release' }, { key: 'second' }] },
    },
  ]);
  const decide = (items: FoundSignature[], v: FakeVerifier) =>
    twoOfTwo.decide({
      upstream: 'ghcr.io',
      repository: 'acme/app',
      digest: DIGEST,
      evidence: evidence(items),
      verifier: v,
    });

  it('denies threshold 2 when one attestor signed twice', () => {
    const v = new FakeVerifier();
    const d = decide([v.item(key('release')), v.item(key('release'))], v);
    expect(d.result).toBe('deny');
    expect(d.reasons[0]).toBe(
      'policy "two-keys": 1 of 2 required signatures (threshold 2 of 2 attestors): 2 signatures verified from 1 distinct signer (one signer counts once); not satisfied: key(second)',
    );
    expect(d.signers).toEqual([key('release')]);
    expect(formatDenyMessage(d)).toContain('not satisfied: key(second)');
  });

  it('allows threshold 2 with two attestors', () => {
    const v = new FakeVerifier();
    const d = decide([v.item(key('release')), v.item(key('second'))], v);
    expect(d.result).toBe('allow');
    expect(d.signers).toEqual([key('release'), key('second')]);
  });

  it('does not let one identity satisfy two overlapping attestors', () => {
    const overlapping = engineOf([
      {
        name: 'two-people',
        match: ['**'],
        action: 'verify',
        signatures: {
          threshold: 2,
          attestors: [
            {
              keyless: { root: 'public-good', issuer: GITHUB, subjectRegExp: 'https://github\\.com/acme/.*' },
            },
            { keyless: { root: 'public-good', issuer: GITHUB, subjectRegExp: '.*' } },
          ],
        },
      },
    ]);
    const v = new FakeVerifier();
    const run = (items: FoundSignature[]) =>
      overlapping.decide({
        upstream: 'ghcr.io',
        repository: 'a/b',
        digest: DIGEST,
        evidence: evidence(items),
        verifier: v,
      });
    const acme = gh('https://github.com/acme/app');
    expect(run([v.item(acme), v.item(acme)]).result).toBe('deny');
    // Two different signers: the matching puts acme under the narrow attestor and the other under ".*",
    // whatever order they come in.
    const other = gh('https://github.com/other/app');
    expect(run([v.item(other), v.item(acme)]).result).toBe('allow');
    expect(run([v.item(acme), v.item(other)]).result).toBe('allow');
  });
});

describe('warn mode', () => {
  it('serves what enforce would deny, as "warn" with the same reasons', () => {
    const base = {
      name: 'p',
      match: ['**'],
      action: 'verify',
      signatures: { attestors: [{ key: 'release' }] },
    } satisfies PoliciesInput[number];
    const input = {
      upstream: 'ghcr.io',
      repository: 'a/b',
      digest: DIGEST,
      evidence: evidence([]),
      verifier: new FakeVerifier(),
    };
    const warned = engineOf([{ ...base, mode: 'warn' }]).decide(input);
    const denied = engineOf([base]).decide(input);
    expect(warned.result).toBe('warn');
    expect(denied.result).toBe('deny');
    expect(warned.reasons).toEqual(denied.reasons);
    expect(warned.policy).toBe('p');
  });

  it('allows in warn mode when the requirements are met', () => {
    const v = new FakeVerifier();
    const engine = engineOf([
      {
        name: 'p',
        match: ['**'],
        action: 'verify',
        mode: 'warn',
        signatures: { attestors: [{ key: 'release' }] },
      },
    ]);
    const d = engine.decide({
      upstream: 'x.io',
      repository: 'a',
      digest: DIGEST,
      evidence: evidence([v.item(key('release'))]),
      verifier: v,
    });
    expect(d.result).toBe('allow');
  });
});

describe('required attestations', () => {
  const engine = engineOf([
    {
      name: 'with-provenance',
      match: ['**'],
      action: 'verify',
      signatures: { attestors: [{ key: 'release' }] },
      attestations: [
        {
          predicateType: SLSA,
          attestors: [{ keyless: { root: 'public-good', issuer: GITHUB, subject: RELEASE_WF } }],
        },
      ],
    },
  ]);
  const decide = (items: FoundSignature[], v: FakeVerifier) =>
    engine.decide({
      upstream: 'ghcr.io',
      repository: 'acme/app',
      digest: DIGEST,
      evidence: evidence(items),
      verifier: v,
    });

  it('denies a signed digest without the required attestation', () => {
    const v = new FakeVerifier();
    const d = decide([v.item(key('release'))], v);
    expect(d.result).toBe('deny');
    expect(d.reasons[0]).toBe(`policy "with-provenance": missing attestation ${SLSA}`);
    expect(formatDenyMessage(d)).toBe(`denied by policy "with-provenance": missing attestation ${SLSA}`);
  });

  it('names the predicate types that were found instead, and lists them in the checks', () => {
    const v = new FakeVerifier();
    const old = v.item(gh(RELEASE_WF), {
      kind: 'attestation',
      predicateType: 'https://slsa.dev/provenance/v0.2',
    });
    const d = decide([v.item(key('release')), old], v);
    expect(d.reasons[0]).toBe(
      `policy "with-provenance": missing attestation ${SLSA} (found only https://slsa.dev/provenance/v0.2)`,
    );
    expect(d.checks.find((c) => c.kind === 'attestation')?.failures?.[0]?.code).toBe('wrong-predicate');
  });

  it('denies an attestation signed by the wrong identity', () => {
    const v = new FakeVerifier();
    const d = decide(
      [
        v.item(key('release')),
        v.item(gh('https://github.com/evil/x'), { kind: 'attestation', predicateType: SLSA }),
      ],
      v,
    );
    expect(d.result).toBe('deny');
    expect(d.reasons[0]).toBe(
      `policy "with-provenance": attestation ${SLSA}: 1 attestation found, none verified`,
    );
    expect(d.reasons[1]).toContain('identity mismatch: got "https://github.com/evil/x"');
  });

  it('allows when the signature and the attestation both verify', () => {
    const v = new FakeVerifier();
    const d = decide(
      [v.item(key('release')), v.item(gh(RELEASE_WF), { kind: 'attestation', predicateType: SLSA })],
      v,
    );
    expect(d.result).toBe('allow');
    expect(d.signers).toEqual([key('release'), gh(RELEASE_WF)]);
    expect(d.checks.map((c) => [c.kind, c.ok])).toEqual([
      ['signature', true],
      ['attestation', true],
    ]);
  });
});

describe('decisionDetail', () => {
  it('is JSON-safe and lists every signature with why it failed', () => {
    const v = new FakeVerifier();
    const engine = engineOf(policies);
    const bad = v.item('bad-signature');
    const d = engine.decide({
      upstream: 'ghcr.io',
      repository: 'acme/app',
      digest: DIGEST,
      evidence: evidence([bad]),
      verifier: v,
    });
    const detail = decisionDetail(d);
    expect(JSON.parse(JSON.stringify(detail))).toEqual(detail);
    expect(detail).toMatchObject({
      policy: 'our-images',
      result: 'deny',
      signatures: [
        {
          kind: 'signature',
          source: 'cosign-sig',
          manifestDigest: bad.manifestDigest,
          ok: false,
          failures: [
            { attestor: 'key(release)', code: 'signature-invalid', reason: 'signature does not verify' },
            expect.objectContaining({ code: 'signature-invalid' }),
          ],
        },
      ],
    });
    expect(
      decisionDetail(
        engine.decide({
          upstream: 'quay.io',
          repository: 'x',
          digest: DIGEST,
          evidence: undefined,
          verifier: v,
        }),
      ).policy,
    ).toBeNull();
  });
});

describe('PolicyEngine.hash', () => {
  const base = policiesSchema.parse(policies);

  it('is stable across key order and equal policies', () => {
    const reordered = base.map((p) => Object.fromEntries(Object.entries(p).reverse()) as unknown as Policy);
    expect(new PolicyEngine(reordered, trust).hash).toBe(new PolicyEngine(base, trust).hash);
    expect(new PolicyEngine(base, trust).hash).toMatch(/^[0-9a-f]{64}$/);
  });

  it('changes when a policy changes, or the order does', () => {
    const h = new PolicyEngine(base, trust).hash;
    const changed = base.map((p, i) => (i === 1 ? { ...p, mode: 'warn' as const } : p));
    expect(new PolicyEngine(changed, trust).hash).not.toBe(h);
    expect(new PolicyEngine([...base].reverse(), trust).hash).not.toBe(h);
  });

  it('does not change when the caller mutates its policies afterwards', () => {
    const copy = policiesSchema.parse(policies);
    const engine = new PolicyEngine(copy, trust);
    copy[0]!.mode = 'warn';
    expect(engine.match('ghcr.io', 'acme/app')?.mode).toBe('enforce');
  });
});

describe('PolicyEngine construction', () => {
  it('refuses policies that name unknown keys or roots, or repeat a name', () => {
    const bad = policiesSchema.parse([
      { name: 'p', match: ['**'], action: 'verify', signatures: { attestors: [{ key: 'missing' }] } },
      { name: 'p', match: ['**'], action: 'allow' },
    ]);
    expect(() => new PolicyEngine(bad, trust)).toThrow(PolicyConfigError);
    expect(() => new PolicyEngine(bad, trust)).toThrow(
      'invalid policies: policies.0.signatures.attestors.0.key: unknown key "missing" (known: release, second); policies.1.name: duplicate policy name "p" (also policies.0.name)',
    );
  });

  it('refuses a threshold above the attestors even without the schema', () => {
    const p: Policy = {
      name: 'p',
      match: ['**'],
      action: 'verify',
      mode: 'enforce',
      signatures: { threshold: 2, attestors: [{ key: 'release' }] },
    };
    expect(() => new PolicyEngine([p], trust)).toThrow(
      /threshold between 1 and the number of attestors \(1\), got 2/,
    );
  });
});

describe('bounded work per decision', () => {
  it(`checks at most MAX_ITEMS_CHECKED signatures and says how many it skipped`, () => {
    const v = new FakeVerifier();
    const engine = engineOf([
      { name: 'p', match: ['**'], action: 'verify', signatures: { attestors: [{ key: 'release' }] } },
    ]);
    const items = Array.from({ length: MAX_ITEMS_CHECKED + 5 }, () => v.item('bad-signature'));
    const d = engine.decide({
      upstream: 'x.io',
      repository: 'a',
      digest: DIGEST,
      evidence: evidence(items),
      verifier: v,
    });
    expect(v.calls).toBe(MAX_ITEMS_CHECKED);
    expect(d.result).toBe('deny');
    expect(d.reasons).toContain(
      `policy "p": 5 more signatures or attestations not checked (at most ${MAX_ITEMS_CHECKED} of each kind)`,
    );
  });
});
