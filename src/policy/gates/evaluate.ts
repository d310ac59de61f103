/**
 * Gate evaluation: pure and synchronous. Discovery, bytes and parsing happen elsewhere (trust): a gate
 * sees found attestations, a verifier (CPU), an {@link AttestationReader} of normalized content, the
 * KEV catalog and image facts. Fails closed: no valid attestation, a shape not understood, an
 * unreadable catalog are all reasons the gate fails, never a silent pass.
 */
import { coerce, satisfies, valid } from 'semver';
import type { Digest } from '../../oci/index.ts';
import { globToRegExp } from '../../shared/index.ts';
import type { GlobOptions } from '../../shared/index.ts';
import type {
  AttestationReader,
  Attestor,
  FoundSignature,
  ImageFacts,
  KnownExploitedCatalog,
  Parsed,
  Severity,
  SignerIdentity,
  Vulnerability,
  VulnReport,
} from '../../shared/index.ts';
import { compileCel } from './cel.ts';
import type { CelProgram } from './cel.ts';
import type { FailingVulnerability, Gate, GateResult, PackageRule } from './types.ts';

const SEVERITY_ORDER: readonly Severity[] = ['critical', 'high', 'medium', 'low', 'negligible', 'unknown'];
/** Failing vulnerabilities listed in a result (the 403 detail stays readable). */
export const MAX_LISTED = 10;
/** Clock skew tolerated before a time counts as "in the future". */
const SKEW_MS = 5 * 60_000;
const DAY_MS = 86_400_000;

/** Verifies one found item against attestors: the first attestor it satisfies, or why none. */
export type VerifyFn = (
  item: FoundSignature,
  attestors: readonly Attestor[],
) => { ok: true; label: string; signer: SignerIdentity } | { ok: false; reason: string };

export interface GateEnv {
  policy: string;
  digest: Digest;
  /** Attestations found for the digest (every predicate type). */
  attestations: readonly FoundSignature[];
  verify: VerifyFn;
  reader: AttestationReader | undefined;
  kev: KnownExploitedCatalog | undefined;
  /** Image facts per platform manifest (age gate); undefined when not read. */
  images: readonly ImageFacts[] | undefined;
  /** Discovery problems (an attestation over the size cap shows up here). */
  problems: readonly string[];
  now: number;
}

interface Chosen<T> {
  item: FoundSignature;
  signer: SignerIdentity;
  content: Parsed<T>;
  time: number | undefined;
  timeSource: 'scan' | 'signature' | 'none';
  candidates: number;
}

function iso(ms: number | undefined): string | undefined {
  return ms === undefined ? undefined : new Date(ms).toISOString();
}

function days(ms: number): string {
  const d = ms / DAY_MS;
  return d >= 1 ? `${Math.floor(d)}d` : `${Math.round(ms / 3_600_000)}h`;
}

/**
 * The valid attestations of the gate's predicate types, newest first (by scan time, else signature
 * time): the first decides. Reasons say why the others did not count.
 */
function choose<T>(
  gate: Gate,
  env: GateEnv,
  types: readonly string[],
  attestors: readonly Attestor[],
  read: (item: FoundSignature) => Parsed<T>,
  scanTime: (content: T) => number | undefined,
): { chosen: Chosen<T>[]; rejected: string[] } {
  const rejected: string[] = [];
  const chosen: Chosen<T>[] = [];
  for (const item of env.attestations) {
    if (item.predicateType === undefined || !types.includes(item.predicateType)) continue;
    if (item.size !== undefined && item.size > gate.maxBytes) {
      rejected.push(
        `attestation ${item.manifestDigest} is ${item.size} bytes, over maxBytes ${gate.maxBytes}`,
      );
      continue;
    }
    const v = env.verify(item, attestors);
    if (!v.ok) {
      rejected.push(`attestation ${item.manifestDigest} (${item.predicateType}) not valid: ${v.reason}`);
      continue;
    }
    const content = read(item);
    const scan = content.ok ? scanTime(content.value) : undefined;
    const signed = env.reader?.signedAt(item);
    chosen.push({
      item,
      signer: v.signer,
      content,
      time: scan ?? signed,
      timeSource: scan !== undefined ? 'scan' : signed !== undefined ? 'signature' : 'none',
      candidates: 0,
    });
  }
  chosen.sort((a, b) => (b.time ?? -Infinity) - (a.time ?? -Infinity));
  for (const c of chosen) c.candidates = chosen.length;
  return { chosen, rejected };
}

function tooLarge(env: GateEnv): string[] {
  return env.problems.filter((p) => /larger than|bytes, over/.test(p));
}

function result(
  gate: Gate,
  ok: boolean,
  reasons: string[],
  facts: Record<string, unknown>,
  chosen?: Chosen<unknown>,
): GateResult {
  const out: GateResult = {
    gate: gate.name,
    kind: gate.kind,
    mode: gate.mode,
    result: ok ? 'pass' : gate.mode === 'warn' ? 'warn' : 'deny',
    reasons,
    facts,
  };
  if (chosen !== undefined) {
    const time = iso(chosen.time);
    out.attestation = {
      source: chosen.item.source,
      manifestDigest: chosen.item.manifestDigest,
      layerDigest: chosen.item.layerDigest,
      predicateType: chosen.item.predicateType ?? '',
      signer: chosen.signer,
      ...(time !== undefined ? { time } : {}),
      timeSource: chosen.timeSource,
      candidates: chosen.candidates,
    };
  }
  return out;
}

/**
 * The prelude of every attestation gate: the newest valid attestation of its predicate types, parsed —
 * or the failing result that says why there is nothing to judge (no reader here, none valid, or the
 * newest does not parse).
 */
function newestAttestation<T>(
  gate: Gate,
  env: GateEnv,
  what: string,
  read: (reader: AttestationReader, item: FoundSignature) => Parsed<T>,
  scanTime: (content: T) => number | undefined = () => undefined,
  unreadable: Record<string, unknown> = { format: 'unknown' },
): { newest: Chosen<T>; value: T } | { failed: GateResult } {
  const reader = env.reader;
  if (reader === undefined)
    return { failed: result(gate, false, ['attestation content cannot be read here'], {}) };
  const { chosen, rejected } = choose(
    gate,
    env,
    gate.predicateTypes,
    gate.attestors,
    (i) => read(reader, i),
    scanTime,
  );
  const newest = chosen[0];
  if (newest === undefined) return { failed: missing(gate, env, what, rejected) };
  if (!newest.content.ok)
    return {
      failed: result(gate, false, [`${which(newest)}: ${newest.content.reason}`], unreadable, newest),
    };
  return { newest, value: newest.content.value };
}

function missing(gate: Gate, env: GateEnv, what: string, rejected: string[]): GateResult {
  const reasons = [
    `no valid ${what} attestation (${gate.predicateTypes.join(', ')}) from ${gate.attestors.length} attestor${gate.attestors.length === 1 ? '' : 's'}`,
    ...rejected,
    ...tooLarge(env).map((p) => `discovery: ${p}`),
  ];
  return result(gate, false, reasons, { missing: what });
}

function which(c: Chosen<unknown>): string {
  const when = c.time === undefined ? '' : ` (${c.timeSource} time ${iso(c.time) ?? ''})`;
  const of = c.candidates > 1 ? `, newest of ${c.candidates}` : '';
  return `attestation ${c.item.manifestDigest}${when}${of}`;
}

// ------------------------------------------------------------------------------- vulnerabilities

function ignoredUntil(until: string | undefined): number {
  if (until === undefined) return Infinity;
  const t = Date.parse(until);
  // A date alone ("2026-12-31") holds through that whole day (UTC).
  return /^\d{4}-\d{2}-\d{2}$/.test(until) ? t + DAY_MS - 1 : t;
}

function idsOf(v: Vulnerability): string[] {
  return [v.id, ...v.aliases];
}

function isKnownExploited(v: Vulnerability, kev: KnownExploitedCatalog | undefined): boolean {
  return v.knownExploited === true || (kev !== undefined && idsOf(v).some((id) => kev.has(id)));
}

/** The VEX verdict for each vulnerability ID: the newest statement about it that applies to `digest`. */
function vexVerdicts(env: GateEnv, gate: Gate & { kind: 'vulnerabilities' }): Map<string, string> {
  const types = gate.vulnerabilities.vexPredicateTypes;
  const verdicts = new Map<string, { status: string; time: number }>();
  if (types.length === 0 || env.reader === undefined) return new Map();
  const reader = env.reader;
  const hex = env.digest.slice(env.digest.indexOf(':') + 1);
  for (const item of env.attestations) {
    if (item.predicateType === undefined || !types.includes(item.predicateType)) continue;
    if (!env.verify(item, gate.attestors).ok) continue;
    const doc = reader.vex(item);
    if (!doc.ok) continue;
    for (const s of doc.value.statements) {
      // Products naming another image digest are about another image; none named: the statement is
      // bound to this digest by the attestation's subject.
      const named = s.products.filter((p) => /sha256(?::|%3A)[0-9a-f]{64}/i.test(p));
      if (named.length > 0 && !named.some((p) => p.toLowerCase().includes(hex))) continue;
      const time = s.timestamp ?? env.reader.signedAt(item) ?? 0;
      for (const id of [s.vulnerability, ...s.aliases]) {
        const prev = verdicts.get(id);
        if (prev === undefined || prev.time <= time) verdicts.set(id, { status: s.status, time });
      }
    }
  }
  return new Map([...verdicts].map(([id, v]) => [id, v.status]));
}

function dedupe(list: Vulnerability[]): Vulnerability[] {
  const seen = new Map<string, Vulnerability>();
  for (const v of list) {
    const key = `${v.id}\n${v.package}\n${v.installed}`;
    if (!seen.has(key)) seen.set(key, v);
  }
  return [...seen.values()];
}

function vulnerabilitiesGate(gate: Gate & { kind: 'vulnerabilities' }, env: GateEnv): GateResult {
  const rules = gate.vulnerabilities;
  const read = newestAttestation<VulnReport>(
    gate,
    env,
    'vulnerability scan',
    (reader, i) => reader.vulnerabilities(i),
    (r) => r.scanFinishedOn,
  );
  if ('failed' in read) return read.failed;
  const { newest, value: report } = read;
  const reasons: string[] = [];
  let ok = true;
  if (rules.knownExploited !== undefined && env.kev?.problem !== undefined) {
    ok = false;
    reasons.push(env.kev.problem);
  } else if (rules.knownExploited !== undefined && env.kev === undefined) {
    ok = false;
    reasons.push('knownExploited needs a KEV catalog (trust.kevCatalog)');
  }
  if (rules.maxScanAge !== undefined) {
    const at = report.scanFinishedOn;
    if (at === undefined) {
      ok = false;
      reasons.push('scan finish time unknown (no scanFinishedOn): maxScanAge cannot be checked');
    } else if (at > env.now + SKEW_MS) {
      ok = false;
      reasons.push(`scan finished in the future (${iso(at) ?? ''})`);
    } else if (env.now - at > rules.maxScanAge) {
      ok = false;
      reasons.push(
        `scan is stale: finished ${iso(at) ?? ''}, ${days(env.now - at)} ago, over maxScanAge ${days(rules.maxScanAge)}`,
      );
    }
  }
  const vex = vexVerdicts(env, gate);
  const ignored: string[] = [];
  const expired: string[] = [];
  const vexed: string[] = [];
  const counted: Vulnerability[] = [];
  for (const v of dedupe(report.vulnerabilities)) {
    const ids = idsOf(v);
    const ignore = rules.ignore.find((i) => ids.includes(i.id));
    if (ignore !== undefined) {
      if (env.now <= ignoredUntil(ignore.until)) {
        ignored.push(v.id);
        continue;
      }
      expired.push(`${ignore.id} (until ${ignore.until ?? ''})`);
    }
    const verdict = ids.map((id) => vex.get(id)).find((s) => s !== undefined);
    if (verdict === 'not_affected' || verdict === 'fixed') {
      vexed.push(v.id);
      continue;
    }
    if (rules.fixAvailable !== undefined && v.fixed !== undefined) {
      if (rules.fixAvailable !== v.fixed.length > 0) continue;
    }
    if (rules.knownExploited !== undefined && rules.knownExploited !== isKnownExploited(v, env.kev)) continue;
    counted.push(v);
  }
  const counts = Object.fromEntries(SEVERITY_ORDER.map((s) => [s, 0])) as Record<Severity, number>;
  for (const v of counted) counts[v.severity]++;
  const over = SEVERITY_ORDER.filter((s) => rules.max[s] !== undefined && counts[s] > (rules.max[s] ?? 0));
  const failingSeverities = new Set(over);
  const failing = counted
    .filter((v) => failingSeverities.has(v.severity))
    .sort(
      (a, b) =>
        SEVERITY_ORDER.indexOf(a.severity) - SEVERITY_ORDER.indexOf(b.severity) || a.id.localeCompare(b.id),
    );
  if (over.length > 0) {
    ok = false;
    const filters = [
      rules.fixAvailable === true ? 'with a fix' : rules.fixAvailable === false ? 'without a fix' : '',
      rules.knownExploited === true
        ? 'known exploited'
        : rules.knownExploited === false
          ? 'not known exploited'
          : '',
    ].filter((f) => f !== '');
    const what = over.map((s) => `${counts[s]} ${s} (max ${rules.max[s] ?? 0})`).join(', ');
    const first = failing
      .slice(0, 3)
      .map((v) => `${v.id} in ${v.package || '?'} ${v.installed}`.trim())
      .join(', ');
    reasons.unshift(
      `${what} vulnerabilities${filters.length > 0 ? ` ${filters.join(', ')}` : ''}: ${first}${failing.length > 3 ? ', …' : ''}`,
    );
  }
  if (expired.length > 0) reasons.push(`expired ignores: ${expired.join(', ')}`);
  const listed: FailingVulnerability[] = failing.slice(0, MAX_LISTED).map((v) => ({
    id: v.id,
    package: v.package,
    installed: v.installed,
    fixed: v.fixed ?? null,
    severity: v.severity,
    knownExploited: isKnownExploited(v, env.kev),
  }));
  const summary = `${report.format} report by ${report.scanner}, ${which(newest)}`;
  reasons.push(ok ? `passed: ${summary}` : summary);
  return result(
    gate,
    ok,
    reasons,
    {
      format: report.format,
      scanner: report.scanner,
      ...(report.scanFinishedOn !== undefined ? { scanFinishedOn: iso(report.scanFinishedOn) } : {}),
      findings: report.vulnerabilities.length,
      counts,
      failing: listed,
      failingTotal: failing.length,
      ignored,
      vex: vexed,
    },
    newest,
  );
}

// ------------------------------------------------------------------------------------------ sbom

/** Debian/RPM style `epoch:upstream-revision` → `upstream`, for exact-list matches. */
function upstreamVersion(v: string): string {
  const noEpoch = v.replace(/^\d+:/, '');
  const dash = noEpoch.lastIndexOf('-');
  return dash > 0 ? noEpoch.slice(0, dash) : noEpoch;
}

/** Whether `version` is banned by the rule; undefined when a range cannot compare it (fails closed). */
function versionBanned(rule: PackageRule, version: string | undefined): boolean | 'incomparable' {
  if (rule.versions === undefined) return true;
  if (version === undefined) return 'incomparable';
  if (Array.isArray(rule.versions))
    return rule.versions.some((v) => v === version || v === upstreamVersion(version));
  const sv = valid(version) ?? coerce(version)?.version;
  if (sv === undefined || sv === null) return 'incomparable';
  return satisfies(sv, rule.versions, { includePrerelease: true });
}

function sbomGate(
  gate: Gate & { kind: 'sbom' },
  env: GateEnv,
  rules: readonly { re: RegExp; rule: PackageRule }[],
): GateResult {
  const read = newestAttestation(gate, env, 'SBOM', (reader, i) => reader.sbom(i));
  if ('failed' in read) return read.failed;
  const { newest, value: sbom } = read;
  const banned: { purl: string; name: string; version: string | null; rule: string; reason?: string }[] = [];
  for (const p of sbom.packages) {
    if (p.purl === undefined || p.purlBase === undefined) continue;
    const base = p.purlBase;
    const version = p.purlVersion;
    for (const { re, rule } of rules) {
      if (!re.test(base)) continue;
      const hit = versionBanned(rule, version ?? p.version);
      if (hit === false) continue;
      banned.push({
        purl: p.purl,
        name: p.name,
        version: version ?? p.version ?? null,
        rule: `${rule.purl}${rule.versions === undefined ? '' : ` ${Array.isArray(rule.versions) ? rule.versions.join('|') : rule.versions}`}`,
        ...(hit === 'incomparable'
          ? { reason: 'version not comparable with the range: counted as banned' }
          : rule.reason !== undefined
            ? { reason: rule.reason }
            : {}),
      });
      break;
    }
  }
  const ok = banned.length === 0;
  const summary = `${sbom.format} SBOM with ${sbom.packages.length} packages, ${which(newest)}`;
  const reasons = ok
    ? [`passed: ${summary}`]
    : [
        `${banned.length} banned package${banned.length === 1 ? '' : 's'}: ${banned
          .slice(0, 3)
          .map((b) => `${b.purl} (rule ${b.rule})`)
          .join(', ')}${banned.length > 3 ? ', …' : ''}`,
        summary,
      ];
  return result(
    gate,
    ok,
    reasons,
    { format: sbom.format, packages: sbom.packages.length, banned: banned.slice(0, MAX_LISTED) },
    newest,
  );
}

// ------------------------------------------------------------------------------------ provenance

function provenanceGate(
  gate: Gate & { kind: 'provenance' },
  env: GateEnv,
  globs: Record<string, RegExp>,
): GateResult {
  const read = newestAttestation(gate, env, 'provenance', (reader, i) => reader.provenance(i));
  if ('failed' in read) return read.failed;
  const { newest, value: p } = read;
  const found: Record<string, string | undefined> = {
    builderId: p.builderId,
    buildType: p.buildType,
    sourceRepository: p.source?.repository,
    sourceRef: p.source?.ref,
  };
  const wrong: string[] = [];
  for (const [field, re] of Object.entries(globs)) {
    const got = found[field];
    const want = gate.provenance[field as keyof typeof gate.provenance] ?? '';
    if (got === undefined) wrong.push(`${field} missing (expected ${JSON.stringify(want)})`);
    else if (!re.test(got))
      wrong.push(`${field} is ${JSON.stringify(got)}, expected ${JSON.stringify(want)}`);
  }
  const summary = `SLSA ${p.slsaVersion} provenance, ${which(newest)}`;
  const ok = wrong.length === 0;
  return result(
    gate,
    ok,
    ok ? [`passed: ${summary}`] : [wrong.join('; '), summary],
    {
      slsaVersion: p.slsaVersion,
      ...Object.fromEntries(Object.entries(found).map(([k, v]) => [k, v ?? null])),
    },
    newest,
  );
}

// ------------------------------------------------------------------------------------------- age

function ageGate(gate: Gate & { kind: 'age' }, env: GateEnv): GateResult {
  if (env.images === undefined || env.images.length === 0) {
    return result(gate, false, ['image config not read: age cannot be checked'], {});
  }
  const reasons: string[] = [];
  const platforms = env.images.map((img) => {
    const created = img.created === undefined ? undefined : Date.parse(img.created);
    let problem: string | undefined = img.problem;
    if (problem === undefined) {
      if (created === undefined || !Number.isFinite(created)) problem = 'config has no valid "created" time';
      else if (created > env.now + SKEW_MS)
        problem = `config "created" is in the future (${img.created ?? ''})`;
      else if (env.now - created > gate.age.maxAge)
        problem = `built ${img.created ?? ''}, ${days(env.now - created)} ago, over maxAge ${days(gate.age.maxAge)}`;
    }
    if (problem !== undefined) reasons.push(`${img.platform} (${img.digest}): ${problem}`);
    return {
      platform: img.platform,
      digest: img.digest,
      created: img.created ?? null,
      ...(problem !== undefined ? { problem } : {}),
    };
  });
  const ok = reasons.length === 0;
  return result(
    gate,
    ok,
    ok
      ? [
          `passed: ${platforms.length} platform${platforms.length === 1 ? '' : 's'} within ${days(gate.age.maxAge)}`,
        ]
      : reasons,
    { platforms },
  );
}

// ------------------------------------------------------------------------------------------- cel

function signerFacts(s: SignerIdentity): Record<string, string> {
  return s.kind === 'key'
    ? { identity: '', issuer: '', key: s.key }
    : { identity: s.subject, issuer: s.issuer, key: '' };
}

function celGate(gate: Gate & { kind: 'cel' }, env: GateEnv, program: CelProgram): GateResult {
  const read = newestAttestation(
    gate,
    env,
    gate.predicateTypes.join(' or '),
    (reader, i) => reader.statement(i),
    () => undefined,
    {},
  );
  if ('failed' in read) return read.failed;
  const { newest, value: st } = read;
  const img = env.images?.[0];
  const out = program({
    predicate: (st.predicate ?? null) as never,
    predicateType: st.predicateType,
    subject: st.subjects.map((digest) => ({ digest })),
    signer: signerFacts(newest.signer),
    image: {
      created: img?.created ?? '',
      labels: img?.labels ?? {},
      os: img?.os ?? '',
      architecture: img?.architecture ?? '',
    },
  });
  const what = gate.cel.message ?? gate.cel.expression;
  if (!out.ok)
    return result(
      gate,
      false,
      [`${out.reason} (${what})`, which(newest)],
      { expression: gate.cel.expression },
      newest,
    );
  return result(
    gate,
    out.value,
    out.value ? [`passed: ${which(newest)}`] : [`expression is false: ${what}`, which(newest)],
    { expression: gate.cel.expression },
    newest,
  );
}

// ------------------------------------------------------------------------------------- compiled

/** purl and provenance globs: `*` any run (`/` included), the rest literal; anchored, as identities. */
const ANY_RUN_GLOB: GlobOptions = { star: 'any' };

/** A gate with its globs compiled once (at policy load). */
export interface CompiledGate {
  gate: Gate;
  evaluate(env: GateEnv): GateResult;
}

export function compileGate(gate: Gate): CompiledGate {
  switch (gate.kind) {
    case 'vulnerabilities':
      return { gate, evaluate: (env) => vulnerabilitiesGate(gate, env) };
    case 'sbom': {
      const rules = gate.sbom.deny.map((rule) => ({ re: globToRegExp(rule.purl, ANY_RUN_GLOB), rule }));
      return { gate, evaluate: (env) => sbomGate(gate, env, rules) };
    }
    case 'provenance': {
      const globs = Object.fromEntries(
        Object.entries(gate.provenance).flatMap(([k, v]) =>
          typeof v === 'string' ? [[k, globToRegExp(v, ANY_RUN_GLOB)]] : [],
        ),
      );
      return { gate, evaluate: (env) => provenanceGate(gate, env, globs) };
    }
    case 'age':
      return { gate, evaluate: (env) => ageGate(gate, env) };
    case 'cel': {
      const program = compileCel(gate.cel.expression);
      return { gate, evaluate: (env) => celGate(gate, env, program) };
    }
  }
}
