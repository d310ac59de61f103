/**
 * The policy engine: compile (compile.ts), match, evaluate (evaluate.ts); how its decisions read is
 * explain.ts.
 */
import { compilePolicies } from './compile.ts';
import type { CompiledPolicy } from './compile.ts';
import { evaluatePolicy } from './evaluate.ts';
import type { DecideInput } from './evaluate.ts';
import { matchSubject } from './match.ts';
import type { TrustNames } from './schema.ts';
import type { Decision, Policy } from './types.ts';

/**
 * The policy list, compiled: which policy applies to `<upstream>/<repository>` (first match wins) and
 * what it decides for a digest given the evidence found. Pure and synchronous: discovery happens
 * before, in the service; verification is the verifier's (CPU only).
 */
export class PolicyEngine {
  /** sha256 (hex) of the canonical policy JSON and the engine version; part of the decision cache key. */
  readonly hash: string;
  readonly policies: readonly Policy[];
  readonly #compiled: readonly CompiledPolicy[];

  /** Throws {@link PolicyConfigError} when a glob, threshold, name or trust reference is wrong. */
  constructor(policies: readonly Policy[], trust: TrustNames) {
    const compiled = compilePolicies(policies, trust);
    this.policies = compiled.policies;
    this.#compiled = compiled.compiled;
    this.hash = compiled.hash;
  }

  /** The first policy whose globs match `<upstream>/<repository>`, or undefined (a deny). */
  match(upstream: string, repository: string): Policy | undefined {
    return this.#match(upstream, repository)?.policy;
  }

  #match(upstream: string, repository: string): CompiledPolicy | undefined {
    const subject = matchSubject(upstream, repository);
    return this.#compiled.find((c) => c.matches(subject));
  }

  /** The decision for a digest. Fails closed: anything unverifiable counts as missing. */
  decide(input: DecideInput): Decision {
    const compiled = this.#match(input.upstream, input.repository);
    const policy = compiled?.policy;
    if (policy === undefined) {
      return {
        result: 'deny',
        policy: undefined,
        reasons: [`no policy matches ${matchSubject(input.upstream, input.repository)}`],
        signers: [],
        checks: [],
      };
    }
    if (policy.action === 'allow') {
      return {
        result: 'allow',
        policy: policy.name,
        reasons: [`allowed by policy "${policy.name}"`],
        signers: [],
        checks: [],
      };
    }
    if (policy.action === 'deny') {
      return {
        result: 'deny',
        policy: policy.name,
        reasons: [`denied by policy "${policy.name}"`],
        signers: [],
        checks: [],
      };
    }
    return evaluatePolicy(compiled as CompiledPolicy, input);
  }
}
