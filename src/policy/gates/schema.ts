/**
 * The `gates` of a verify policy: conditions on what was attested (vulnerability reports, SBOMs,
 * provenance) and on the image itself (age). One of `vulnerabilities`, `sbom`, `provenance`, `age` per
 * gate; each gate has its own `mode`, attestors and predicate types.
 */
import { validRange } from 'semver';
import { z } from 'zod';
// The one duration/size grammar (deep import on purpose, as in ../schema.ts: units.ts is a leaf).
import { parseDuration, parseSize } from '../../shared/index.ts';
import type { Attestor } from '../../shared/index.ts';
import { compileCel } from './cel.ts';
import type { Gate, GateKind, PackageRule, VulnerabilityRules } from './types.ts';

const MiB = 1024 * 1024;

/** Predicate types each gate kind reads unless the gate names its own. */
export const DEFAULT_PREDICATE_TYPES: Record<GateKind, string[]> = {
  vulnerabilities: [
    'https://cosign.sigstore.dev/attestation/vuln/v1',
    'https://in-toto.io/attestation/vulns/v0.1',
  ],
  sbom: ['https://spdx.dev/Document', 'https://cyclonedx.org/bom'],
  provenance: ['https://slsa.dev/provenance/v1', 'https://slsa.dev/provenance/v0.2'],
  age: [],
  cel: [],
};

/** OpenVEX predicate types (`vexctl attest` writes v0.2.0; `cosign attest --type openvex` the bare ns). */
export const DEFAULT_VEX_PREDICATE_TYPES = ['https://openvex.dev/ns/v0.2.0', 'https://openvex.dev/ns'];

/** Default `maxBytes` per kind: SBOMs of large images are tens of MiB, reports a few. */
export const DEFAULT_MAX_BYTES: Record<GateKind, number> = {
  vulnerabilities: 8 * MiB,
  sbom: 32 * MiB,
  provenance: 1 * MiB,
  age: 0,
  cel: 8 * MiB,
};

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

const durationOpt = (description: string) =>
  z
    .union([z.string(), z.number().min(0)])
    .transform((v, ctx) => {
      const ms = parseDuration(v);
      if (ms === undefined) {
        ctx.addIssue({
          code: 'custom',
          message: 'expected a duration such as "7d" (number + ms, s, m, h or d)',
        });
        return z.NEVER;
      }
      return ms;
    })
    .optional()
    .describe(`${description}. Duration: "12h", "7d", "90d" or seconds.`);

const count = z.number('expected a whole number').int('expected a whole number').min(0, 'expected 0 or more');

const severityMax = z
  .strictObject({
    critical: count.optional(),
    high: count.optional(),
    medium: count.optional(),
    low: count.optional(),
    negligible: count.optional(),
    unknown: count.optional(),
  })
  .describe('Largest count of counted findings per severity, e.g. { critical: 0, high: 5 }');

const isoDate = z
  .string()
  .refine((s) => /^\d{4}-\d{2}-\d{2}(T.*)?$/.test(s) && Number.isFinite(Date.parse(s)), {
    message: 'expected an ISO date such as "2026-12-31"',
  });

const vulnerabilitiesSchema = z
  .strictObject({
    max: severityMax,
    fixAvailable: z
      .boolean()
      .optional()
      .describe('true: count only findings that have a fixed version; false: only those without'),
    knownExploited: z
      .boolean()
      .optional()
      .describe('true: count only findings in the KEV catalog (trust.kevCatalog); false: only others'),
    ignore: z
      .array(
        z.strictObject({
          id: z.string().min(1, 'expected a vulnerability ID such as "CVE-2024-3094"'),
          until: isoDate
            .optional()
            .describe('Last day the ignore holds (ISO date); afterwards it counts again'),
          reason: z.string().optional().describe('Why (recorded in decisions)'),
        }),
      )
      .default([])
      .describe('Vulnerability IDs not counted, each until a date'),
    maxScanAge: durationOpt('A scan that finished longer ago than this fails the gate'),
    vex: z
      .boolean()
      .default(true)
      .describe('Read OpenVEX attestations from the same attestors: not_affected/fixed are not counted'),
  })
  .transform((v): VulnerabilityRules => ({
    max: Object.fromEntries(Object.entries(v.max).filter(([, n]) => n !== undefined)),
    ...(v.fixAvailable !== undefined ? { fixAvailable: v.fixAvailable } : {}),
    ...(v.knownExploited !== undefined ? { knownExploited: v.knownExploited } : {}),
    ignore: v.ignore.map((i) => ({
      id: i.id,
      ...(i.until !== undefined ? { until: i.until } : {}),
      ...(i.reason !== undefined ? { reason: i.reason } : {}),
    })),
    ...(v.maxScanAge !== undefined ? { maxScanAge: v.maxScanAge } : {}),
    vexPredicateTypes: v.vex ? DEFAULT_VEX_PREDICATE_TYPES : [],
  }));

const packageRuleSchema = z
  .strictObject({
    purl: z
      .string()
      .regex(/^pkg:/, 'expected a purl glob such as "pkg:maven/org.apache.logging.log4j/log4j-core"')
      .describe(
        'Anchored glob over the purl without @version, ?qualifiers and #subpath; "*" matches any run',
      ),
    versions: z
      .union([
        z.array(z.string().min(1)).min(1, 'expected at least one version'),
        z
          .string()
          .refine((r) => validRange(r) !== null, { message: 'expected a semver range such as "<2.17.1"' }),
      ])
      .optional()
      .describe('Banned versions: a list of exact versions, or a semver range; absent = every version'),
    reason: z.string().optional(),
  })
  .transform((r): PackageRule => ({
    purl: r.purl,
    ...(r.versions !== undefined ? { versions: r.versions } : {}),
    ...(r.reason !== undefined ? { reason: r.reason } : {}),
  }));

const globField = (what: string) =>
  z
    .string()
    .min(1, `expected a glob for ${what}`)
    .optional()
    .describe(`${what}: anchored glob, "*" matches any run`);

/** The gate list schema; `attestors` is the policy module's attestor list schema (passed in: no cycle). */
export function gatesSchema<A extends z.ZodType<Attestor[]>>(attestors: A) {
  return z
    .array(
      z
        .strictObject({
          name: z
            .string()
            .regex(NAME_RE, 'expected a gate name of letters, digits, ".", "_" or "-" such as "no-criticals"')
            .describe('Unique within the policy; appears in 403s, audit events and metrics'),
          mode: z
            .enum(['enforce', 'warn'], 'expected enforce or warn')
            .default('enforce')
            .describe('enforce denies; warn serves, records and counts what it would have denied'),
          attestors: attestors.optional().describe('Keys and identities whose attestations count (any one)'),
          predicateTypes: z
            .array(z.string().min(1))
            .min(1)
            .optional()
            .describe('Predicate types read (default: every type the gate understands)'),
          maxBytes: z
            .union([z.string(), z.number().int().min(1)])
            .transform((v, ctx) => {
              const n = parseSize(v);
              if (n === undefined || n < 1) {
                ctx.addIssue({ code: 'custom', message: 'expected a size such as "32MiB"' });
                return z.NEVER;
              }
              return n;
            })
            .optional()
            .describe(
              'Largest attestation read, on bytes received (default 32MiB sbom, 8MiB vulnerabilities, 1MiB provenance)',
            ),
          vulnerabilities: vulnerabilitiesSchema.optional().describe('Conditions on a vulnerability scan'),
          sbom: z
            .strictObject({ deny: z.array(packageRuleSchema).default([]).describe('Banned packages') })
            .optional()
            .describe('Requires an SPDX or CycloneDX SBOM; optional banned packages'),
          provenance: z
            .strictObject({
              builderId: globField('builder id'),
              buildType: globField('build type'),
              sourceRepository: globField('source repository (e.g. "https://github.com/acme/*")'),
              sourceRef: globField('source ref (e.g. "refs/tags/v*")'),
            })
            .optional()
            .describe('Requires SLSA provenance (v1 or v0.2) matching these'),
          age: z
            .strictObject({
              maxAge: durationOpt('Largest age of the image by its config "created"').pipe(
                z.number('expected maxAge, a duration such as "90d"'),
              ),
            })
            .optional()
            .describe('Maximum age of the image (every platform of an index)'),
          cel: z
            .strictObject({
              expression: z
                .string()
                .min(1, 'expected a CEL expression')
                .superRefine((src, ctx) => {
                  try {
                    compileCel(src);
                  } catch (err) {
                    ctx.addIssue({
                      code: 'custom',
                      message: err instanceof Error ? err.message : String(err),
                    });
                  }
                })
                .describe(
                  'CEL over predicate, predicateType, subject, signer (identity, issuer, key), image (created, labels, os, architecture); must be true',
                ),
              message: z.string().optional().describe('Shown when the expression is false'),
            })
            .optional()
            .describe('A CEL condition on an attestation (needs predicateTypes and attestors)'),
        })
        .superRefine((g, ctx) => {
          const kinds = (['vulnerabilities', 'sbom', 'provenance', 'age', 'cel'] as const).filter(
            (k) => g[k] !== undefined,
          );
          if (kinds.length !== 1) {
            ctx.addIssue({
              code: 'custom',
              message: `expected exactly one of vulnerabilities, sbom, provenance, age, cel (got ${kinds.length === 0 ? 'none' : kinds.join(', ')})`,
            });
          }
          if (
            kinds[0] !== 'age' &&
            kinds.length === 1 &&
            (g.attestors === undefined || g.attestors.length === 0)
          ) {
            ctx.addIssue({
              code: 'custom',
              path: ['attestors'],
              message: 'expected the attestors whose attestations count',
            });
          }
        })
        .superRefine((g, ctx) => {
          if (g.cel !== undefined && g.predicateTypes === undefined) {
            ctx.addIssue({
              code: 'custom',
              path: ['predicateTypes'],
              message: 'a cel gate needs the predicateTypes it reads',
            });
          }
        })
        .transform((g): Gate => {
          const kind: GateKind =
            g.vulnerabilities !== undefined
              ? 'vulnerabilities'
              : g.sbom !== undefined
                ? 'sbom'
                : g.provenance !== undefined
                  ? 'provenance'
                  : g.cel !== undefined
                    ? 'cel'
                    : 'age';
          const base = {
            name: g.name,
            mode: g.mode,
            attestors: g.attestors ?? [],
            predicateTypes: g.predicateTypes ?? DEFAULT_PREDICATE_TYPES[kind],
            maxBytes: g.maxBytes ?? DEFAULT_MAX_BYTES[kind],
          };
          if (g.vulnerabilities !== undefined)
            return { ...base, kind: 'vulnerabilities', vulnerabilities: g.vulnerabilities };
          if (g.sbom !== undefined) return { ...base, kind: 'sbom', sbom: { deny: g.sbom.deny } };
          if (g.provenance !== undefined) {
            const p = g.provenance;
            return {
              ...base,
              kind: 'provenance',
              provenance: {
                ...(p.builderId !== undefined ? { builderId: p.builderId } : {}),
                ...(p.buildType !== undefined ? { buildType: p.buildType } : {}),
                ...(p.sourceRepository !== undefined ? { sourceRepository: p.sourceRepository } : {}),
                ...(p.sourceRef !== undefined ? { sourceRef: p.sourceRef } : {}),
              },
            };
          }
          if (g.cel !== undefined) {
            return {
              ...base,
              kind: 'cel',
              cel: {
                expression: g.cel.expression,
                ...(g.cel.message !== undefined ? { message: g.cel.message } : {}),
              },
            };
          }
          return { ...base, kind: 'age', age: { maxAge: g.age?.maxAge ?? 0 } };
        }),
    )
    .min(1, 'expected at least one gate (or leave gates out)')
    .superRefine((gates, ctx) => {
      const seen = new Set<string>();
      gates.forEach((g, i) => {
        if (seen.has(g.name))
          ctx.addIssue({ code: 'custom', path: [i, 'name'], message: `duplicate gate name "${g.name}"` });
        seen.add(g.name);
      });
    });
}
