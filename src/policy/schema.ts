import { z } from 'zod';
// The one duration grammar of the config file, from the shared leaf (config wires these schemas into
// its own, so policy must not import config back).
import { didYouMean, duration } from '../shared/index.ts';
import type { Attestor, TrustKeyConfig, TrustRootConfig } from '../shared/index.ts';
import { gatesSchema } from './gates/schema.ts';
import { globProblem } from './match.ts';
import type { Policy } from './types.ts';

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
const name = (what: string, example: string) =>
  z
    .string()
    .regex(NAME_RE, `expected a ${what} name of letters, digits, ".", "_" or "-" such as "${example}"`);

const issuerUrl = z.url({
  protocol: /^https?$/,
  error: 'expected an issuer URL such as "https://accounts.google.com"',
});

// ---------------------------------------------------------------------------------------------- trust

const trustRootSchema = z
  .strictObject({
    sigstore: z
      .literal('public-good', 'expected "public-good" (the only Sigstore instance embedded)')
      .optional()
      .describe('Sigstore public-good instance: embedded trusted root, refreshed over TUF when reachable'),
    file: z
      .string()
      .min(1, 'expected a path to a trusted_root.json')
      .optional()
      .describe('trusted_root.json of a private Sigstore deployment (air-gapped: refreshed by you)'),
  })
  .superRefine((root, ctx) => {
    const set = (['sigstore', 'file'] as const).filter((k) => root[k] !== undefined);
    if (set.length !== 1) {
      ctx.addIssue({
        code: 'custom',
        message: `expected exactly one of sigstore, file (got ${set.length === 0 ? 'none' : set.join(', ')})`,
      });
    }
  })
  .transform((root): TrustRootConfig =>
    root.file !== undefined ? { file: root.file } : { sigstore: 'public-good' },
  );

const PEM_RE = /-----BEGIN (?:[A-Z0-9]+ )?PUBLIC KEY-----[\s\S]+-----END (?:[A-Z0-9]+ )?PUBLIC KEY-----/;

const trustKeySchema = z
  .strictObject({
    file: z.string().min(1, 'expected a path to a PEM public key').optional().describe('PEM public key file'),
    pem: z
      .string()
      .regex(
        PEM_RE,
        'expected a PEM public key ("-----BEGIN PUBLIC KEY-----" ... "-----END PUBLIC KEY-----")',
      )
      .optional()
      .describe('PEM public key inline'),
  })
  .superRefine((key, ctx) => {
    const set = (['file', 'pem'] as const).filter((k) => key[k] !== undefined);
    if (set.length !== 1) {
      ctx.addIssue({
        code: 'custom',
        message: `expected exactly one of file, pem (got ${set.length === 0 ? 'none' : set.join(', ')})`,
      });
    }
  })
  .transform((key): TrustKeyConfig => (key.pem !== undefined ? { pem: key.pem } : { file: key.file ?? '' }));

export const trustSchema = z
  .strictObject({
    roots: z
      .record(name('trust root', 'public-good'), trustRootSchema)
      .prefault({ 'public-good': { sigstore: 'public-good' } })
      .describe('Trust roots for keyless (certificate) signatures, by name'),
    keys: z
      .record(name('key', 'release'), trustKeySchema)
      .prefault({})
      .describe('Public keys (ECDSA P-256/P-384, RSA) for key-based signatures, by name'),
    refresh: duration('24h', 'How often the public-good trusted root is refreshed over TUF'),
    kevCatalog: z
      .string()
      .min(1, 'expected a path to a CISA KEV JSON file')
      .optional()
      .describe(
        'CISA Known Exploited Vulnerabilities catalog (JSON) for knownExploited gate conditions; reloaded on change',
      ),
  })
  .prefault({})
  .describe('Where signatures may come from: trust roots and keys that policies name');

export type TrustConfigInput = z.input<typeof trustSchema>;
export type TrustConfig = z.output<typeof trustSchema>;

// ----------------------------------------------------------------------------------------- policies

const keylessSchema = z
  .strictObject({
    root: name('trust root', 'public-good').describe('Name of a trust root under trust.roots'),
    issuer: issuerUrl.describe('OIDC issuer in the certificate, exactly'),
    subject: z
      .string()
      .min(
        1,
        'expected a certificate identity such as "https://github.com/acme/app/.github/workflows/release.yml@refs/tags/*"',
      )
      .optional()
      .describe('Certificate identity (SAN): an anchored glob, "*" matches any run of characters'),
    subjectRegExp: z
      .string()
      .min(1, 'expected a regular expression')
      .refine((v) => {
        try {
          new RegExp(v);
          return true;
        } catch {
          return false;
        }
      }, 'expected a valid JavaScript regular expression')
      .optional()
      .describe('Certificate identity (SAN) as a regular expression, instead of subject'),
  })
  .superRefine((k, ctx) => {
    if ((k.subject === undefined) === (k.subjectRegExp === undefined)) {
      ctx.addIssue({
        code: 'custom',
        message: `expected exactly one of subject, subjectRegExp (got ${k.subject === undefined ? 'none' : 'both'})`,
      });
    }
  });

/** One attestor: a named key, or a keyless identity under a named trust root. */
export const attestorSchema = z
  .strictObject({
    key: name('key', 'release').optional().describe('Name of a key under trust.keys'),
    tlog: z
      .boolean()
      .optional()
      .describe('Key signatures only: require a transparency log entry (default: the verifier decides)'),
    keyless: keylessSchema.optional().describe('A certificate identity issued under a trust root'),
  })
  .superRefine((a, ctx) => {
    if ((a.key === undefined) === (a.keyless === undefined)) {
      ctx.addIssue({
        code: 'custom',
        message: `expected exactly one of key, keyless (got ${a.key === undefined ? 'none' : 'both'})`,
      });
    }
    if (a.tlog !== undefined && a.key === undefined) {
      ctx.addIssue({ code: 'custom', path: ['tlog'], message: 'tlog applies only to a key attestor' });
    }
  })
  .transform((a): Attestor => {
    if (a.keyless !== undefined) {
      const { root, issuer, subject, subjectRegExp } = a.keyless;
      return {
        keyless: {
          root,
          issuer,
          ...(subject !== undefined ? { subject } : {}),
          ...(subjectRegExp !== undefined ? { subjectRegExp } : {}),
        },
      };
    }
    return { key: a.key ?? '', ...(a.tlog !== undefined ? { tlog: a.tlog } : {}) };
  });

const attestorsSchema = z.array(attestorSchema).min(1, 'expected at least one attestor');

const globSchema = z.string().superRefine((g, ctx) => {
  const problem = globProblem(g);
  if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem });
});

/** One policy. `threshold` defaults to 1; `mode` to enforce. */
export const policySchema = z
  .strictObject({
    name: name('policy', 'our-images').describe('Unique name; appears in decisions, audit events and 403s'),
    match: z
      .array(globSchema)
      .min(1, 'expected at least one glob such as "ghcr.io/acme/**"')
      .describe('Globs over <upstream host>/<repository>: "*" within one path component, "**" across'),
    action: z
      .enum(['allow', 'deny', 'verify'], 'expected allow, deny or verify')
      .describe('allow, deny, or verify signatures and attestations'),
    mode: z
      .enum(['enforce', 'warn'], 'expected enforce or warn')
      .default('enforce')
      .describe('enforce denies; warn serves and records what it would have denied'),
    signatures: z
      .strictObject({
        threshold: z
          .number('expected a whole number of attestors')
          .int('expected a whole number of attestors')
          .min(1, 'expected a threshold of at least 1')
          .default(1)
          .describe('Distinct attestors that must each have a valid signature'),
        attestors: attestorsSchema.describe('Keys and identities whose signatures count'),
      })
      .superRefine((s, ctx) => {
        if (s.threshold > s.attestors.length) {
          ctx.addIssue({
            code: 'custom',
            path: ['threshold'],
            message: `expected a threshold between 1 and the number of attestors (${s.attestors.length}), got ${s.threshold}`,
          });
        }
      })
      .optional()
      .describe('Required signatures (verify only)'),
    attestations: z
      .array(
        z.strictObject({
          predicateType: z
            .string()
            .min(1, 'expected an in-toto predicate type such as "https://slsa.dev/provenance/v1"')
            .describe('in-toto predicate type, exactly'),
          attestors: attestorsSchema.describe('Keys and identities whose attestations count (any one)'),
        }),
      )
      .min(1, 'expected at least one required attestation (or leave attestations out)')
      .optional()
      .describe('Signed in-toto statements that must exist (verify only)'),
    signatureRepository: z
      .string()
      .regex(
        /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$/,
        'expected a repository name in the same upstream, such as "acme/signatures"',
      )
      .optional()
      .describe(
        'Repository (same upstream) holding the signatures and attestations, as cosign COSIGN_REPOSITORY (verify only)',
      ),
    gates: gatesSchema(attestorsSchema)
      .optional()
      .describe('Conditions on what was attested: vulnerabilities, sbom, provenance, age (verify only)'),
    tags: z
      .strictObject({
        onMove: z
          .enum(['allow', 'warn', 'deny'], 'expected allow, warn or deny')
          .default('warn')
          .describe('When a tag starts pointing at another digest: allow, warn (log + metric) or deny'),
        immutable: z
          .boolean()
          .default(false)
          .describe('Pin the first digest seen; a move is denied until `pullwarden tags pin|unpin`'),
        minAge: duration('0s', 'A newly seen digest is not served by tag until it has been known this long'),
        deny: z
          .array(
            z
              .string()
              .regex(/^[A-Za-z0-9_.*?-]{1,128}$/, 'expected a tag or a tag glob such as "latest" or "*-rc*"'),
          )
          .default([])
          .describe('Tags that are never served (globs: * and ?), e.g. ["latest"]'),
      })
      .optional()
      .describe('Tag rules: moves, pinning, cooldown, banned tags'),
  })
  .superRefine((p, ctx) => {
    if (
      p.action === 'verify' &&
      p.signatures === undefined &&
      p.attestations === undefined &&
      p.gates === undefined
    ) {
      ctx.addIssue({
        code: 'custom',
        path: ['action'],
        message: 'action verify needs signatures, attestations or gates (what should be verified?)',
      });
    }
    if (p.action !== 'verify') {
      for (const k of ['signatures', 'attestations', 'gates', 'signatureRepository'] as const) {
        if (p[k] !== undefined) {
          ctx.addIssue({
            code: 'custom',
            path: [k],
            message: `${k} apply only to action verify (this policy is "${p.action}")`,
          });
        }
      }
    }
  })
  .transform((p): Policy => ({
    name: p.name,
    match: p.match,
    action: p.action,
    mode: p.mode,
    ...(p.signatures !== undefined ? { signatures: p.signatures } : {}),
    ...(p.attestations !== undefined ? { attestations: p.attestations } : {}),
    ...(p.tags !== undefined ? { tags: p.tags } : {}),
    ...(p.signatureRepository !== undefined ? { signatureRepository: p.signatureRepository } : {}),
    ...(p.gates !== undefined ? { gates: p.gates } : {}),
  }));

/**
 * The ordered policy list: the first policy whose globs match `<upstream>/<repository>` decides; no
 * match is a deny. Names must be unique and attestors must name configured keys and roots: both are
 * checked by {@link checkPolicyReferences}, which needs the trust section too.
 */
export const policiesSchema = z
  .array(policySchema)
  .min(1, 'expected at least one policy (end with { match: ["**"], action: deny } to deny the rest)')
  .describe('Policies, first match wins; no match is a deny');

export type PolicyInput = z.input<typeof policySchema>;
export type PoliciesInput = z.input<typeof policiesSchema>;

// ---------------------------------------------------------------------------------------- decisions

export const decisionsSchema = z
  .strictObject({
    allowTTL: duration('10m', 'How long an allow (or warn) decision for a digest is reused'),
    denyTTL: duration('1m', 'How long a deny decision for a digest is reused'),
    evidenceTTL: duration('1m', 'How long discovered signatures and attestations of a digest are reused'),
    missingEvidenceTTL: duration(
      '15s',
      'How long "no signature found" is reused (short: a signature is often pushed just after the image)',
    ),
  })
  .prefault({})
  .describe('Decision and evidence caching; the cache key includes the policy hash and trust version');

export type DecisionsConfigInput = z.input<typeof decisionsSchema>;
export type DecisionsConfig = z.output<typeof decisionsSchema>;

// ------------------------------------------------------------------------------------ cross checks

/** The names of configured trust roots and keys (a parsed {@link TrustConfig} fits). */
export interface TrustNames {
  roots: Readonly<Record<string, unknown>>;
  keys: Readonly<Record<string, unknown>>;
}

/** A problem found by {@link checkPolicyReferences}; `path` is dotted from the config root. */
export interface PolicyReferenceProblem {
  path: string;
  message: string;
}

function known(names: readonly string[]): string {
  return names.length === 0 ? 'none configured' : `known: ${names.join(', ')}`;
}

/**
 * Checks what a policy cannot check alone: unique policy names, and that every attestor names a
 * configured key or trust root. Paths look like `policies.0.signatures.attestors.1.keyless.root`.
 */
export function checkPolicyReferences(
  trust: TrustNames,
  policies: readonly Policy[],
): PolicyReferenceProblem[] {
  const problems: PolicyReferenceProblem[] = [];
  const roots = Object.keys(trust.roots);
  const keys = Object.keys(trust.keys);
  const checkAttestors = (attestors: readonly Attestor[], base: string) => {
    attestors.forEach((a, j) => {
      if ('key' in a) {
        if (!Object.hasOwn(trust.keys, a.key)) {
          problems.push({
            path: `${base}.${j}.key`,
            message: `unknown key "${a.key}"${didYouMean(a.key, keys)} (${known(keys)})`,
          });
        }
      } else if (!Object.hasOwn(trust.roots, a.keyless.root)) {
        problems.push({
          path: `${base}.${j}.keyless.root`,
          message: `unknown trust root "${a.keyless.root}"${didYouMean(a.keyless.root, roots)} (${known(roots)})`,
        });
      }
    });
  };
  const seen = new Map<string, number>();
  policies.forEach((p, i) => {
    const first = seen.get(p.name);
    if (first !== undefined) {
      problems.push({
        path: `policies.${i}.name`,
        message: `duplicate policy name "${p.name}" (also policies.${first}.name)`,
      });
    } else {
      seen.set(p.name, i);
    }
    if (p.signatures !== undefined)
      checkAttestors(p.signatures.attestors, `policies.${i}.signatures.attestors`);
    p.attestations?.forEach((req, k) =>
      checkAttestors(req.attestors, `policies.${i}.attestations.${k}.attestors`),
    );
    p.gates?.forEach((g, k) => checkAttestors(g.attestors, `policies.${i}.gates.${k}.attestors`));
  });
  return problems;
}

// ----------------------------------------------------------------------------------------- defaults

/**
 * OIDC issuers of the Sigstore public-good instance that sign most public images: GitHub Actions, Google
 * (accounts and GCP service accounts: registry.k8s.io, distroless), GitLab CI, and people who signed
 * interactively with GitHub. The embedded default accepts any identity these issuers vouched for.
 */
export const PUBLIC_GOOD_ISSUERS = [
  'https://token.actions.githubusercontent.com',
  'https://accounts.google.com',
  'https://gitlab.com',
  'https://github.com/login/oauth',
] as const;

/**
 * Embedded defaults when there is no config file: verify every upstream against the Sigstore
 * public-good instance in warn mode — nothing is blocked, and every pull records whether the digest
 * carries a valid public-good signature and from whom.
 *
 * The attestors accept ANY subject (`subjectRegExp: ".*"`) from the issuers above: weak as a trust
 * statement (anyone with a GitHub account can get such a certificate), which is why it only warns. A
 * real deployment names its own identities and enforces.
 */
export const defaultPolicyInput = {
  trust: { roots: { 'public-good': { sigstore: 'public-good' } } },
  policies: [
    {
      name: 'default-verify-warn',
      match: ['**'],
      action: 'verify',
      mode: 'warn',
      signatures: {
        threshold: 1,
        attestors: PUBLIC_GOOD_ISSUERS.map((issuer) => ({
          keyless: { root: 'public-good', issuer, subjectRegExp: '.*' },
        })),
      },
    },
  ],
  decisions: {},
} satisfies { trust: TrustConfigInput; policies: PoliciesInput; decisions: DecisionsConfigInput };
