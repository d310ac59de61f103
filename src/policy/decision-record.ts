import { isDigest } from '../oci/index.ts';
import type { Decision, DecisionResult, SignatureCheck } from './types.ts';
import type { GateResult } from './gates/types.ts';

/*
 * A decision read back from the metadata store (shared by replicas, written by this or another
 * version): checked against the shape the gate, the audit trail and the 403 detail rely on before it
 * stands for a fresh evaluation. Anything else is not a decision — in particular `{}` or a record
 * without `result` must never read as "not denied".
 */

const RESULTS: ReadonlySet<unknown> = new Set<DecisionResult>(['allow', 'deny', 'warn']);
const SOURCES: ReadonlySet<unknown> = new Set(['referrers', 'tag-schema', 'cosign-sig', 'cosign-att']);
const GATE_KINDS: ReadonlySet<unknown> = new Set(['vulnerabilities', 'sbom', 'provenance', 'age', 'cel']);
const GATE_OUTCOMES: ReadonlySet<unknown> = new Set(['pass', 'deny', 'warn']);
const MODES: ReadonlySet<unknown> = new Set(['enforce', 'warn']);

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isStrings(value: unknown): value is string[] {
  return Array.isArray(value) && value.every((v) => typeof v === 'string');
}

function optional(value: unknown, check: (v: unknown) => boolean): boolean {
  return value === undefined || check(value);
}

function isSigner(value: unknown): boolean {
  if (!isObject(value)) return false;
  if (value['kind'] === 'key') return typeof value['key'] === 'string';
  return (
    value['kind'] === 'keyless' && typeof value['issuer'] === 'string' && typeof value['subject'] === 'string'
  );
}

function isFailure(value: unknown): boolean {
  return (
    isObject(value) &&
    typeof value['attestor'] === 'string' &&
    typeof value['code'] === 'string' &&
    typeof value['reason'] === 'string'
  );
}

function isCheck(value: unknown): value is SignatureCheck {
  return (
    isObject(value) &&
    SOURCES.has(value['source']) &&
    (value['kind'] === 'signature' || value['kind'] === 'attestation') &&
    typeof value['manifestDigest'] === 'string' &&
    isDigest(value['manifestDigest']) &&
    typeof value['ok'] === 'boolean' &&
    optional(value['predicateType'], (v) => typeof v === 'string') &&
    optional(value['attestor'], (v) => typeof v === 'string') &&
    optional(value['failures'], (v) => Array.isArray(v) && v.every(isFailure)) &&
    optional(value['signer'], isSigner)
  );
}

function isGateResult(value: unknown): value is GateResult {
  return (
    isObject(value) &&
    typeof value['gate'] === 'string' &&
    GATE_KINDS.has(value['kind']) &&
    MODES.has(value['mode']) &&
    GATE_OUTCOMES.has(value['result']) &&
    isStrings(value['reasons']) &&
    isObject(value['facts']) &&
    optional(value['attestation'], (a) => isObject(a) && isSigner(a['signer']))
  );
}

/** A stored decision, or undefined when the value is not one (the caller evaluates again). */
export function readDecision(value: unknown): Decision | undefined {
  if (!isObject(value)) return undefined;
  const { result, policy, reasons, signers, checks, gates } = value;
  if (!RESULTS.has(result)) return undefined;
  // JSON drops `policy: undefined` (no policy matched).
  if (policy !== undefined && policy !== null && typeof policy !== 'string') return undefined;
  if (!isStrings(reasons) || !Array.isArray(signers) || !signers.every(isSigner)) return undefined;
  if (!Array.isArray(checks) || !checks.every(isCheck)) return undefined;
  if (gates !== undefined && !(Array.isArray(gates) && gates.every(isGateResult))) return undefined;
  const decision: Decision = {
    result: result as DecisionResult,
    policy: typeof policy === 'string' ? policy : undefined,
    reasons,
    signers: signers as Decision['signers'],
    checks,
  };
  if (gates !== undefined) decision.gates = gates;
  return decision;
}
