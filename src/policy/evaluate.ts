/**
 * Evaluating a verify policy for one digest: signatures against the threshold, required attestations,
 * gates. Pure and synchronous; fails closed (anything unverifiable counts as missing).
 */
import type { Digest } from '../oci/index.ts';
import type {
  AttestationReader,
  Attestor,
  Evidence,
  ImageFacts,
  KnownExploitedCatalog,
  FoundSignature,
  SignatureVerifier,
  SignerIdentity,
  VerifyOutcome,
} from '../shared/index.ts';
import type { CompiledPolicy } from './compile.ts';
import { attestorLabel, clean, signerLabel } from './explain.ts';
import type { GateEnv, VerifyFn } from './gates/evaluate.ts';
import type { GateResult } from './gates/types.ts';
import type { Decision, Policy, SignatureCheck } from './types.ts';

export interface DecideInput {
  upstream: string;
  repository: string;
  /** The manifest digest being decided; every verified payload must be about exactly this digest. */
  digest: Digest;
  /** Signatures and attestations found for `digest`; undefined when none were looked for. */
  evidence: Evidence | undefined;
  verifier: SignatureVerifier;
  /** Reads attestation content for gates (parsed once per attestation digest). */
  reader?: AttestationReader;
  /** The KEV catalog for `knownExploited` conditions. */
  kev?: KnownExploitedCatalog;
  /** Image config facts per platform manifest, for the age gate. */
  images?: ImageFacts[];
  /** ms since the epoch (default Date.now()): scan ages, ignore expiries, image ages. */
  now?: number;
}

/** One signer counts once however many signatures it made: identities are compared by this key. */
function identityKey(s: SignerIdentity): string {
  return s.kind === 'key' ? `key\n${s.key}` : `keyless\n${s.issuer}\n${s.subject}`;
}

/**
 * Items of one kind checked per decision. Each is tried against every attestor, so an upstream that
 * lists thousands of signatures would otherwise buy that many verifications per pull.
 */
export const MAX_ITEMS_CHECKED = 32;

function verifyOne(
  verifier: SignatureVerifier,
  found: FoundSignature,
  a: Attestor,
  subject: Digest,
): VerifyOutcome {
  if (found.parseError !== undefined) {
    return { ok: false, code: 'malformed', reason: clean(found.parseError) };
  }
  try {
    return verifier.verify(found, a, subject);
  } catch (err) {
    // A verifier bug must deny, not crash the pull path or allow.
    return {
      ok: false,
      code: 'verifier-error',
      reason: clean(err instanceof Error ? err.message : String(err)),
    };
  }
}

/** One attestor tried on one item. */
interface Trial {
  label: string;
  outcome: VerifyOutcome;
}

interface Tried {
  item: FoundSignature;
  /** In attestor order. */
  trials: Trial[];
}

function tryAll(
  verifier: SignatureVerifier,
  item: FoundSignature,
  attestors: readonly Attestor[],
  d: Digest,
): Tried {
  return {
    item,
    trials: attestors.map((a) => ({ label: attestorLabel(a), outcome: verifyOne(verifier, item, a, d) })),
  };
}

/** The first attestor the item verified under, with the signer it proved. */
function firstOk(t: Tried): { j: number; label: string; signer: SignerIdentity } | undefined {
  for (const [j, { label, outcome }] of t.trials.entries()) {
    if (outcome.ok) return { j, label, signer: outcome.signer };
  }
  return undefined;
}

function failuresOf(t: Tried): { attestor: string; code: string; reason: string }[] {
  return t.trials.flatMap(({ label, outcome }) =>
    outcome.ok ? [] : [{ attestor: label, code: outcome.code, reason: clean(outcome.reason) }],
  );
}

/**
 * Maximum matching between distinct signer identities and attestors (Kuhn's augmenting paths; both sides
 * are a handful). An identity can satisfy several attestors but counts for one, and an attestor counts
 * once however many signatures it has, so threshold N needs N different signers under N attestors.
 * Returns, per attestor index, the identity key matched to it.
 */
function matchIdentities(edges: Map<string, Set<number>>, attestorCount: number): (string | undefined)[] {
  const owner = new Array<string | undefined>(attestorCount).fill(undefined);
  const augment = (id: string, seen: Set<number>): boolean => {
    for (const j of edges.get(id) ?? []) {
      if (seen.has(j)) continue;
      seen.add(j);
      const current = owner[j];
      if (current === undefined || augment(current, seen)) {
        owner[j] = id;
        return true;
      }
    }
    return false;
  };
  for (const id of edges.keys()) augment(id, new Set());
  return owner;
}

function check(item: FoundSignature): SignatureCheck {
  return {
    source: item.source,
    kind: item.kind,
    manifestDigest: item.manifestDigest,
    ...(item.predicateType !== undefined ? { predicateType: item.predicateType } : {}),
    ok: false,
  };
}

function describeFailures(t: Tried): string {
  const what = `${t.item.kind} ${t.item.manifestDigest} from ${t.item.source}`;
  const failed = failuresOf(t);
  const [only] = failed;
  if (failed.length === 1 && only !== undefined) return `${what}: ${only.reason}`;
  return `${what}: ${failed.map((f) => `${f.attestor}: ${f.reason}`).join('; ')}`;
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

interface Outcome {
  ok: boolean;
  /** Most important first: the requirement summary, then each failed item. */
  reasons: string[];
  signers: SignerIdentity[];
  checks: SignatureCheck[];
}

function evaluateSignatures(
  name: string,
  required: NonNullable<Policy['signatures']>,
  items: readonly FoundSignature[],
  digest: Digest,
  verifier: SignatureVerifier,
): Outcome {
  const { threshold, attestors } = required;
  const prefix = `policy "${name}"`;
  const labels = attestors.map(attestorLabel);
  const tried = items
    .filter((i) => i.kind === 'signature')
    .map((item) => tryAll(verifier, item, attestors, digest));

  const edges = new Map<string, Set<number>>();
  const signerOf = new Map<string, SignerIdentity>();
  for (const t of tried) {
    for (const [j, { outcome }] of t.trials.entries()) {
      if (!outcome.ok) continue;
      const id = identityKey(outcome.signer);
      signerOf.set(id, outcome.signer);
      edges.set(id, (edges.get(id) ?? new Set<number>()).add(j));
    }
  }
  const owner = matchIdentities(edges, attestors.length);
  const counted = owner.flatMap((id, j) => {
    const signer = id === undefined ? undefined : signerOf.get(id);
    return id === undefined || signer === undefined ? [] : [{ id, j, signer, label: labels[j] ?? '' }];
  });
  const satisfied = counted.length;

  const checks = tried.map((t): SignatureCheck => {
    const c = check(t.item);
    const hit = firstOk(t);
    if (hit === undefined) return { ...c, failures: failuresOf(t) };
    // Name the attestor this signature's identity was counted for, when it was.
    const id = identityKey(hit.signer);
    const countedFor = counted.find((m) => m.id === id && t.trials[m.j]?.outcome.ok === true);
    return { ...c, ok: true, attestor: countedFor?.label ?? hit.label, signer: hit.signer };
  });

  const summary =
    `${prefix}: ${satisfied} of ${threshold} required signatures` +
    ` (threshold ${threshold} of ${plural(attestors.length, 'attestor')})`;
  const signers = counted.map((m) => m.signer);
  if (satisfied >= threshold) {
    const by = counted.map((m) => `${m.label} by ${signerLabel(m.signer)}`);
    return { ok: true, reasons: [`${summary}: satisfied: ${by.join('; ')}`], signers, checks };
  }
  let why: string;
  if (tried.length === 0) {
    why = 'no signature found';
  } else if (satisfied === 0) {
    why = `${plural(tried.length, 'signature')} found, none verified`;
  } else {
    const unsatisfied = labels.filter((_, j) => owner[j] === undefined);
    const verified = checks.filter((c) => c.ok).length;
    why =
      `${plural(verified, 'signature')} verified from ${plural(satisfied, 'distinct signer')}` +
      ` (one signer counts once); not satisfied: ${unsatisfied.join(', ')}`;
  }
  const failures = tried
    .filter((t) => firstOk(t) === undefined)
    .map((t) => `${prefix}: ${describeFailures(t)}`);
  return { ok: false, reasons: [`${summary}: ${why}`, ...failures], signers, checks };
}

function evaluateAttestations(
  name: string,
  required: NonNullable<Policy['attestations']>,
  items: readonly FoundSignature[],
  digest: Digest,
  verifier: SignatureVerifier,
): Outcome {
  const prefix = `policy "${name}"`;
  const attestations = items.filter((i) => i.kind === 'attestation');
  const checks = attestations.map(check);
  const wanted = new Set(required.map((r) => r.predicateType));
  const found = [
    ...new Set(attestations.flatMap((i) => (i.predicateType === undefined ? [] : [i.predicateType]))),
  ];
  const passed: string[] = [];
  const missing: string[] = [];
  const failures: string[] = [];
  const signers: SignerIdentity[] = [];

  for (const req of required) {
    let verifiedBy: { label: string; signer: SignerIdentity } | undefined;
    let candidates = 0;
    for (const [k, item] of attestations.entries()) {
      const c = checks[k];
      if (item.predicateType !== req.predicateType || c === undefined) continue;
      candidates++;
      const t = tryAll(verifier, item, req.attestors, digest);
      const hit = firstOk(t);
      if (hit !== undefined) {
        checks[k] = { ...check(item), ok: true, attestor: hit.label, signer: hit.signer };
        verifiedBy ??= hit;
      } else if (!c.ok) {
        checks[k] = { ...c, failures: [...(c.failures ?? []), ...failuresOf(t)] };
        failures.push(`${prefix}: ${describeFailures(t)}`);
      }
    }
    if (verifiedBy !== undefined) {
      const { label, signer } = verifiedBy;
      passed.push(`${prefix}: attestation ${req.predicateType} verified: ${label} by ${signerLabel(signer)}`);
      if (!signers.some((s) => identityKey(s) === identityKey(signer))) signers.push(signer);
    } else if (candidates === 0) {
      const others = found.filter((t) => t !== req.predicateType);
      missing.push(
        `${prefix}: missing attestation ${req.predicateType}` +
          (others.length > 0 ? ` (found only ${others.join(', ')})` : ''),
      );
    } else {
      missing.push(
        `${prefix}: attestation ${req.predicateType}: ${plural(candidates, 'attestation')} found, none verified`,
      );
    }
  }
  const ok = missing.length === 0;
  // Attestations of other predicate types are listed too, so that "missing slsa v1" next to a v0.2
  // attestation explains itself in the 403 detail.
  const listed = checks.map((c, k): SignatureCheck => {
    const item = attestations[k];
    if (item?.predicateType !== undefined && wanted.has(item.predicateType)) return c;
    const type = item?.predicateType ?? '(none)';
    const reason = `predicate type ${type} is not one policy "${name}" requires (${[...wanted].join(', ')})`;
    return { ...c, failures: [{ attestor: '-', code: 'wrong-predicate', reason }] };
  });
  return { ok, reasons: [...missing, ...failures, ...passed], signers, checks: listed };
}

function evaluateGates(
  policy: CompiledPolicy,
  input: DecideInput,
  items: readonly FoundSignature[],
): GateResult[] {
  const memo = new Map<string, ReturnType<VerifyFn>>();
  const verify: VerifyFn = (item, attestors) => {
    const key = `${item.manifestDigest}\n${item.layerDigest}\n${JSON.stringify(attestors)}`;
    const hit = memo.get(key);
    if (hit !== undefined) return hit;
    const t = tryAll(input.verifier, item, attestors, input.digest);
    const ok = firstOk(t);
    const out: ReturnType<VerifyFn> =
      ok !== undefined
        ? { ok: true, label: ok.label, signer: ok.signer }
        : {
            ok: false,
            reason: failuresOf(t)
              .map((f) => `${f.attestor}: ${f.reason}`)
              .join('; '),
          };
    memo.set(key, out);
    return out;
  };
  const env: GateEnv = {
    policy: policy.policy.name,
    digest: input.digest,
    attestations: items.filter((i) => i.kind === 'attestation'),
    verify,
    reader: input.reader,
    kev: input.kev,
    images: input.images,
    problems: input.evidence?.problems ?? [],
    now: input.now ?? Date.now(),
  };
  return policy.gates.map((g): GateResult => {
    try {
      return g.evaluate(env);
    } catch (err) {
      // A gate bug must fail that gate, not crash the pull path or pass.
      return {
        gate: g.gate.name,
        kind: g.gate.kind,
        mode: g.gate.mode,
        result: g.gate.mode === 'warn' ? 'warn' : 'deny',
        reasons: [`gate error: ${clean(err instanceof Error ? err.message : String(err))}`],
        facts: {},
      };
    }
  });
}

/** The decision of the verify policy `compiled` for `input.digest`. */
export function evaluatePolicy(compiled: CompiledPolicy, input: DecideInput): Decision {
  const { policy } = compiled;
  const { evidence, digest, verifier } = input;
  const fail = (reasons: string[], extra?: Partial<Decision>): Decision => ({
    result: policy.mode === 'warn' ? 'warn' : 'deny',
    policy: policy.name,
    reasons,
    signers: [],
    checks: [],
    ...extra,
  });
  if (evidence !== undefined && evidence.subject !== digest) {
    // Evidence about another digest proves nothing about this one.
    return fail([`policy "${policy.name}": evidence is for ${evidence.subject}, not ${digest}`]);
  }
  const { signatures, attestations } = policy;
  const found = evidence?.items ?? [];
  const wanted = new Set([
    ...(attestations?.map((r) => r.predicateType) ?? []),
    ...(policy.gates ?? []).flatMap((g) => [
      ...g.predicateTypes,
      ...(g.kind === 'vulnerabilities' ? g.vulnerabilities.vexPredicateTypes : []),
    ]),
  ]);
  const groups = [
    found.filter((i) => i.kind === 'signature'),
    found.filter((i) => i.kind === 'attestation' && wanted.has(i.predicateType ?? '')),
    found.filter((i) => i.kind === 'attestation' && !wanted.has(i.predicateType ?? '')),
  ];
  const items = groups.flatMap((g) => g.slice(0, MAX_ITEMS_CHECKED));
  const unchecked = found.length - items.length;
  const outcomes: Outcome[] = [];
  if (signatures !== undefined) {
    outcomes.push(evaluateSignatures(policy.name, signatures, items, digest, verifier));
  }
  if (attestations !== undefined) {
    outcomes.push(evaluateAttestations(policy.name, attestations, items, digest, verifier));
  }
  const gates = compiled.gates.length > 0 ? evaluateGates(compiled, input, items) : undefined;
  const gateReasons = (gates ?? [])
    .filter((g) => g.result !== 'pass')
    .map(
      (g) =>
        `policy "${policy.name}": gate "${g.gate}"${g.result === 'warn' ? ' (warn)' : ''}: ${clean(g.reasons[0] ?? 'failed')}`,
    );
  const denyingGate = (gates ?? []).some((g) => g.result === 'deny');
  const warningGate = (gates ?? []).some((g) => g.result === 'warn');
  const ok = outcomes.every((o) => o.ok) && !denyingGate;
  const signers: SignerIdentity[] = [];
  for (const s of outcomes.flatMap((o) => o.signers)) {
    if (!signers.some((t) => identityKey(t) === identityKey(s))) signers.push(s);
  }
  const checks = outcomes.flatMap((o) => o.checks);
  // Failed requirements first: the first reason is the one a 403 message shows.
  const failedOutcomes = outcomes.filter((o) => !o.ok).flatMap((o) => o.reasons);
  const reasons = [
    ...failedOutcomes,
    ...gateReasons.filter((r) => !r.includes('" (warn): ')),
    ...gateReasons.filter((r) => r.includes('" (warn): ')),
    ...outcomes.filter((o) => o.ok).flatMap((o) => o.reasons),
  ];
  const withGates = gates === undefined ? {} : { gates };
  if (unchecked > 0) {
    reasons.push(
      `policy "${policy.name}": ${unchecked} more signatures or attestations not checked (at most ${MAX_ITEMS_CHECKED} of each kind)`,
    );
  }
  if (ok) {
    // A failing warn gate serves and records: the decision is a warn.
    return {
      result: warningGate ? 'warn' : 'allow',
      policy: policy.name,
      reasons,
      signers,
      checks,
      ...withGates,
    };
  }
  const problems = (evidence?.problems ?? []).map((p) => `policy "${policy.name}": discovery: ${clean(p)}`);
  return fail([...reasons, ...problems], { signers, checks, ...withGates });
}
