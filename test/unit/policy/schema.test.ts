import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import {
  checkPolicyReferences,
  decisionsSchema,
  defaultPolicyInput,
  PolicyEngine,
  policiesSchema,
  trustSchema,
} from '../../../src/policy/index.ts';
import type { PoliciesInput } from '../../../src/policy/index.ts';

const GITHUB = 'https://token.actions.githubusercontent.com';

/** Issues as "path: message" lines, the way an operator reads them. */
function problems(schema: z.ZodType, input: unknown): string[] {
  const result = schema.safeParse(input);
  if (result.success) return [];
  return result.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
}

const ourImages = {
  name: 'our-images',
  match: ['ghcr.io/acme/**'],
  action: 'verify',
  signatures: {
    attestors: [
      { key: 'release' },
      { keyless: { root: 'public-good', issuer: GITHUB, subject: 'https://github.com/acme/*' } },
    ],
  },
} satisfies PoliciesInput[number];

describe('trustSchema', () => {
  it('defaults to the public-good root, no keys and a daily TUF refresh', () => {
    expect(trustSchema.parse(undefined)).toEqual({
      roots: { 'public-good': { sigstore: 'public-good' } },
      keys: {},
      refresh: 86_400_000,
    });
  });

  it('accepts file roots, file and PEM keys', () => {
    const pem = '-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n';
    const trust = trustSchema.parse({
      roots: { corp: { file: '/etc/pullwarden/trusted_root.json' } },
      keys: { release: { file: '/etc/pullwarden/cosign.pub' }, inline: { pem } },
      refresh: '1h',
    });
    expect(trust.roots).toEqual({ corp: { file: '/etc/pullwarden/trusted_root.json' } });
    expect(trust.keys).toEqual({ release: { file: '/etc/pullwarden/cosign.pub' }, inline: { pem } });
    expect(trust.refresh).toBe(3_600_000);
  });

  it('says what is expected for a bad root or key', () => {
    expect(problems(trustSchema, { roots: { x: { sigstore: 'staging' } } })).toEqual([
      'roots.x.sigstore: expected "public-good" (the only Sigstore instance embedded)',
    ]);
    expect(problems(trustSchema, { roots: { x: {} } })).toEqual([
      'roots.x: expected exactly one of sigstore, file (got none)',
    ]);
    expect(problems(trustSchema, { keys: { k: { file: 'a', pem: 'b' } } })).toContain(
      'keys.k.pem: expected a PEM public key ("-----BEGIN PUBLIC KEY-----" ... "-----END PUBLIC KEY-----")',
    );
    expect(problems(trustSchema, { keys: { k: { path: 'a' } } })).toEqual(
      expect.arrayContaining([expect.stringMatching(/^keys\.k: Unrecognized key: "path"/)]),
    );
  });
});

describe('policiesSchema', () => {
  it('applies defaults: mode enforce, threshold 1', () => {
    const [p] = policiesSchema.parse([ourImages, { name: 'rest', match: ['**'], action: 'deny' }]);
    expect(p).toEqual({
      name: 'our-images',
      match: ['ghcr.io/acme/**'],
      action: 'verify',
      mode: 'enforce',
      signatures: {
        threshold: 1,
        attestors: [
          { key: 'release' },
          { keyless: { root: 'public-good', issuer: GITHUB, subject: 'https://github.com/acme/*' } },
        ],
      },
    });
  });

  it('accepts required attestations and warn mode', () => {
    const [p] = policiesSchema.parse([
      {
        name: 'prov',
        match: ['ghcr.io/acme/**'],
        action: 'verify',
        mode: 'warn',
        attestations: [
          {
            predicateType: 'https://slsa.dev/provenance/v1',
            attestors: [
              {
                keyless: {
                  root: 'public-good',
                  issuer: GITHUB,
                  subjectRegExp: '^https://github\\.com/acme/',
                },
              },
            ],
          },
        ],
      },
    ]);
    expect(p?.mode).toBe('warn');
    expect(p?.attestations?.[0]?.predicateType).toBe('https://slsa.dev/provenance/v1');
  });

  it('rejects unknown keys', () => {
    expect(problems(policiesSchema, [{ ...ourImages, mtach: ['**'] }])).toEqual([
      '0: Unrecognized key: "mtach"',
    ]);
    expect(
      problems(policiesSchema, [
        { ...ourImages, signatures: { attestors: [{ key: 'release', tlg: true }] } },
      ]),
    ).toEqual(['0.signatures.attestors.0: Unrecognized key: "tlg"']);
  });

  it('rejects a threshold above the number of attestors', () => {
    expect(
      problems(policiesSchema, [{ ...ourImages, signatures: { ...ourImages.signatures, threshold: 3 } }]),
    ).toEqual([
      '0.signatures.threshold: expected a threshold between 1 and the number of attestors (2), got 3',
    ]);
    expect(
      problems(policiesSchema, [{ ...ourImages, signatures: { ...ourImages.signatures, threshold: 0 } }]),
    ).toEqual(['0.signatures.threshold: expected a threshold of at least 1']);
  });

  it('rejects a subjectRegExp that does not compile, and needs exactly one of subject, subjectRegExp', () => {
    const keyless = (k: Record<string, unknown>) => [
      {
        ...ourImages,
        signatures: { attestors: [{ keyless: { root: 'public-good', issuer: GITHUB, ...k } }] },
      },
    ];
    expect(problems(policiesSchema, keyless({ subjectRegExp: '^(unclosed' }))).toEqual([
      '0.signatures.attestors.0.keyless.subjectRegExp: expected a valid JavaScript regular expression',
    ]);
    expect(problems(policiesSchema, keyless({}))).toEqual([
      '0.signatures.attestors.0.keyless: expected exactly one of subject, subjectRegExp (got none)',
    ]);
    expect(problems(policiesSchema, keyless({ subject: 'a', subjectRegExp: 'b' }))).toEqual([
      '0.signatures.attestors.0.keyless: expected exactly one of subject, subjectRegExp (got both)',
    ]);
  });

  it('needs exactly one of key, keyless per attestor; tlog only with a key', () => {
    const attestor = (a: Record<string, unknown>) => [{ ...ourImages, signatures: { attestors: [a] } }];
    expect(problems(policiesSchema, attestor({}))).toEqual([
      '0.signatures.attestors.0: expected exactly one of key, keyless (got none)',
    ]);
    expect(
      problems(
        policiesSchema,
        attestor({ tlog: true, keyless: { root: 'r', issuer: GITHUB, subject: 's' } }),
      ),
    ).toEqual(['0.signatures.attestors.0.tlog: tlog applies only to a key attestor']);
  });

  it('requires signatures or attestations for verify, and forbids them for allow and deny', () => {
    expect(problems(policiesSchema, [{ name: 'v', match: ['**'], action: 'verify' }])).toEqual([
      '0.action: action verify needs signatures, attestations or gates (what should be verified?)',
    ]);
    expect(problems(policiesSchema, [{ ...ourImages, action: 'allow' }])).toEqual([
      '0.signatures: signatures apply only to action verify (this policy is "allow")',
    ]);
  });

  it('rejects bad globs, actions and empty lists', () => {
    expect(problems(policiesSchema, [{ name: 'a', match: ['ghcr.io'], action: 'allow' }])).toEqual([
      '0.match.0: expected "<upstream host>/<repository glob>", e.g. "ghcr.io/acme/**" (or "**" for everything)',
    ]);
    expect(problems(policiesSchema, [{ name: 'a', match: ['**'], action: 'permit' }])).toEqual([
      '0.action: expected allow, deny or verify',
    ]);
    expect(problems(policiesSchema, [])).toEqual([
      ': expected at least one policy (end with { match: ["**"], action: deny } to deny the rest)',
    ]);
  });
});

describe('checkPolicyReferences', () => {
  const trust = trustSchema.parse({ keys: { release: { file: '/k.pub' } } });

  it('reports unknown trust roots and keys with the names that exist', () => {
    const policies = policiesSchema.parse([
      {
        ...ourImages,
        signatures: {
          attestors: [{ key: 'relase' }, { keyless: { root: 'corp', issuer: GITHUB, subject: 's' } }],
        },
        attestations: [{ predicateType: 'p', attestors: [{ key: 'nope' }] }],
      },
    ]);
    expect(checkPolicyReferences(trust, policies)).toEqual([
      {
        path: 'policies.0.signatures.attestors.0.key',
        message: 'unknown key "relase" (did you mean "release"?) (known: release)',
      },
      {
        path: 'policies.0.signatures.attestors.1.keyless.root',
        message: 'unknown trust root "corp" (known: public-good)',
      },
      { path: 'policies.0.attestations.0.attestors.0.key', message: 'unknown key "nope" (known: release)' },
    ]);
  });

  it('reports duplicate policy names', () => {
    const policies = policiesSchema.parse([ourImages, { ...ourImages, match: ['**'] }]);
    expect(checkPolicyReferences(trust, policies)).toEqual([
      { path: 'policies.1.name', message: 'duplicate policy name "our-images" (also policies.0.name)' },
    ]);
  });

  it('accepts consistent references', () => {
    expect(checkPolicyReferences(trust, policiesSchema.parse([ourImages]))).toEqual([]);
  });
});

describe('decisionsSchema', () => {
  it('has cache lifetimes in milliseconds with defaults', () => {
    expect(decisionsSchema.parse(undefined)).toEqual({
      allowTTL: 600_000,
      denyTTL: 60_000,
      evidenceTTL: 60_000,
      missingEvidenceTTL: 15_000,
    });
    expect(decisionsSchema.parse({ allowTTL: '1h', denyTTL: 5 }).denyTTL).toBe(5000);
    expect(problems(decisionsSchema, { denyTTL: 'soon' })).toEqual([
      'denyTTL: expected a duration such as "1m" (number + ms, s, m, h or d)',
    ]);
  });
});

describe('defaultPolicyInput (no config file)', () => {
  it('parses, references only what it configures, and verifies every upstream in warn mode', () => {
    const trust = trustSchema.parse(defaultPolicyInput.trust);
    const policies = policiesSchema.parse(defaultPolicyInput.policies);
    expect(checkPolicyReferences(trust, policies)).toEqual([]);
    const engine = new PolicyEngine(policies, trust);
    const p = engine.match('registry.k8s.io', 'pause');
    expect(p).toMatchObject({ action: 'verify', mode: 'warn', signatures: { threshold: 1 } });
    expect(engine.match('127.0.0.1:5000', 'a/b/c')).toBe(p);
    expect(decisionsSchema.parse(defaultPolicyInput.decisions).allowTTL).toBe(600_000);
  });
});

describe('JSON Schema export', () => {
  it('describes the input form (durations as strings, attestors as objects)', () => {
    const schema = z.toJSONSchema(
      z.object({ trust: trustSchema, policies: policiesSchema, decisions: decisionsSchema }),
      {
        io: 'input',
        unrepresentable: 'any',
      },
    );
    const text = JSON.stringify(schema);
    expect(text).toContain('subjectRegExp');
    expect(text).toContain('"default":"10m"');
  });
});
