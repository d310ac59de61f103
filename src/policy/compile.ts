/**
 * Compiling the policy list: checked (globs, thresholds, names, trust references), frozen, globs and
 * gates compiled once, and hashed with the engine version for the decision cache key.
 */
import { createHash } from 'node:crypto';
import { compileGate } from './gates/evaluate.ts';
import type { CompiledGate } from './gates/evaluate.ts';
import { compileMatcher, globProblem } from './match.ts';
import { checkPolicyReferences } from './schema.ts';
import type { TrustNames } from './schema.ts';
import type { Policy } from './types.ts';

/**
 * Bumped when the meaning of a policy changes without its text changing (a new rule in `decide`), so
 * that cached decisions made under the old rules stop matching: it is hashed with the policies.
 */
const ENGINE_VERSION = 'pullwarden-policy/2';

/** Policies that cannot be used: reference, glob or threshold problems. */
export class PolicyConfigError extends Error {
  readonly problems: readonly { path: string; message: string }[];
  constructor(problems: readonly { path: string; message: string }[]) {
    super(`invalid policies: ${problems.map((p) => `${p.path}: ${p.message}`).join('; ')}`);
    this.name = 'PolicyConfigError';
    this.problems = problems;
  }
}

/** True when deciding under `policy` needs the image config (an age gate). */
export function needsImageFacts(policy: Policy | undefined): boolean {
  return policy?.gates?.some((g) => g.kind === 'age' || g.kind === 'cel') ?? false;
}

/** The largest attestation any gate of `policy` reads (discovery's blob cap), or undefined. */
export function gateMaxBytes(policy: Policy | undefined): number | undefined {
  const sizes = (policy?.gates ?? []).filter((g) => g.kind !== 'age').map((g) => g.maxBytes);
  return sizes.length === 0 ? undefined : Math.max(...sizes);
}

/** True when deciding under `policy` needs discovered evidence (signatures, attestations). */
export function needsEvidence(policy: Policy | undefined): boolean {
  return policy?.action === 'verify';
}

/** JSON with object keys sorted at every level and undefined properties left out. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map((v) => canonicalJson(v ?? null)).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/** One policy, compiled: its matcher and its gates. */
export interface CompiledPolicy {
  policy: Policy;
  matches: (subject: string) => boolean;
  gates: CompiledGate[];
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

/** The policy list compiled: the frozen policies (same order), each compiled, and their hash. */
export interface CompiledPolicies {
  policies: readonly Policy[];
  compiled: readonly CompiledPolicy[];
  /** sha256 (hex) of the canonical policy JSON and the engine version. */
  hash: string;
}

/** Throws {@link PolicyConfigError} when a glob, threshold, name or trust reference is wrong. */
export function compilePolicies(policies: readonly Policy[], trust: TrustNames): CompiledPolicies {
  const problems = checkPolicyReferences(trust, policies);
  policies.forEach((p, i) => {
    p.match.forEach((g, k) => {
      const problem = globProblem(g);
      if (problem !== undefined) problems.push({ path: `policies.${i}.match.${k}`, message: problem });
    });
    const s = p.signatures;
    if (
      s !== undefined &&
      (!Number.isInteger(s.threshold) || s.threshold < 1 || s.threshold > s.attestors.length)
    ) {
      problems.push({
        path: `policies.${i}.signatures.threshold`,
        message: `expected a threshold between 1 and the number of attestors (${s.attestors.length}), got ${s.threshold}`,
      });
    }
    if (
      p.action === 'verify' &&
      p.signatures === undefined &&
      p.attestations === undefined &&
      p.gates === undefined
    ) {
      problems.push({
        path: `policies.${i}.action`,
        message: 'action verify needs signatures, attestations or gates',
      });
    }
  });
  if (problems.length > 0) throw new PolicyConfigError(problems);
  const frozen = deepFreeze(structuredClone([...policies]));
  const compiled = frozen.map((policy) => ({
    policy,
    matches: compileMatcher(policy.match),
    gates: (policy.gates ?? []).map(compileGate),
  }));
  const hash = createHash('sha256')
    .update(canonicalJson({ engine: ENGINE_VERSION, policies: frozen }))
    .digest('hex');
  return { policies: frozen, compiled, hash };
}
