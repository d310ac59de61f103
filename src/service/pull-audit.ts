import type { Logger } from 'pino';
import type { AuditEvent, AuditEventType, AuditGate, AuditSink, RecentTags } from '../audit/index.ts';
import { isRegistryError, referencedDigests, RegistryError } from '../oci/index.ts';
import type { Decision, GateResult } from '../policy/index.ts';
import { recordedCacheState } from '../shared/index.ts';
import type { CacheState, DecisionResult, SignerIdentity } from '../shared/index.ts';
import { denyDetail } from './deny-detail.ts';
import type { ManifestResult } from './registry-service.ts';

/** The kinds of request that name a repository, each one audit event of its kind. */
export type PullKind = Exclude<AuditEventType, 'tag-moved'>;

/** What decided a request, in the audit trail's words. */
export interface PullVerdict {
  decision: DecisionResult;
  policy?: string | undefined;
  reasons?: string[];
  signers?: SignerIdentity[];
  gates?: AuditGate[];
}

/**
 * The facts of one pull use case for its audit event: what was asked for, what it resolved to, how it
 * was found and what decided. Built here, from the routing and the service's results, and nowhere else.
 */
export interface PullFacts {
  type: PullKind;
  upstream: string;
  repository: string;
  reference: string;
  tag?: string;
  digest?: string;
  mediaType?: string;
  cache?: CacheState;
  verdict?: PullVerdict;
  /** Authenticated identity label (`anonymous` until credentials verify, when auth is on). */
  identity?: string;
}

/** What the HTTP layer adds to an event: which request it was and how it ended. */
export interface PullRequest {
  requestId: string;
  client: string;
  userAgent: string | undefined;
  method: string;
  /** Milliseconds since the request arrived. */
  elapsedMs: number;
}

export interface PullOutcome {
  status: number;
  bytes: number;
  /** The error answered, for a refusal or failure. */
  error?: unknown;
}

/** Where the audit events of pulls go. */
export interface PullAuditOptions {
  sink: AuditSink;
  /** Refuse a pull (503) when its event cannot be written. */
  failClosed: boolean;
  recentTags: RecentTags;
  /** Told how long each append took and whether it failed (metrics). */
  observe?: (seconds: number, ok: boolean) => void;
}

/**
 * The facts of a request that names a repository, from what the client asked for: the tag of a
 * manifest by tag, the digest of a request by digest (`reference` is `''` for tags/list).
 */
export function pullFacts(
  type: PullKind,
  upstream: string,
  repository: string,
  reference: string,
): PullFacts {
  const facts: PullFacts = { type, upstream, repository, reference };
  // A tag never contains ':', a digest always does.
  if (type === 'manifest' && !reference.includes(':')) facts.tag = reference;
  else if (reference.includes(':')) facts.digest = reference;
  return facts;
}

/** Error codes that are refusals (decision deny), not failures. */
const REFUSALS = new Set(['DENIED', 'UNAUTHORIZED', 'TOOMANYREQUESTS']);

/**
 * The audit trail of pulls: one event per request that names a repository, with the facts of its use
 * case (tag, digest, cache state, decision, signers) and of its request. `record` resolves once the
 * event is durable (the JSONL sink fsyncs before it acknowledges); callers answer after it.
 */
export class PullAudit {
  readonly #options: PullAuditOptions;
  readonly #log: Logger;

  constructor(options: PullAuditOptions, log: Logger) {
    this.#options = options;
    this.#log = log;
  }

  /**
   * A request by digest that follows a tag resolution of the same repository carries that tag (this
   * client's first, then anyone's), so a pull reads as one story.
   */
  followTag(facts: PullFacts, client: string): void {
    if (facts.tag !== undefined || facts.digest === undefined) return;
    const tag = this.#options.recentTags.tagFor(facts.upstream, facts.repository, facts.digest, client);
    if (tag !== undefined) facts.tag = tag;
  }

  /**
   * A manifest answer: the digest it resolved to, its media type, cache state and decision. What a tag
   * led to (the manifest and, when its bytes were parsed, everything it refers to) is remembered for
   * {@link followTag}.
   */
  manifestAnswered(facts: PullFacts, result: ManifestResult, client: string): void {
    facts.digest = result.digest;
    facts.mediaType = result.mediaType;
    facts.cache = result.cache;
    if (result.decision) facts.verdict = verdictOf(result.decision);
    if (facts.tag === undefined) return;
    // The service's one parse of the manifest; without it (a cached HEAD) the digest alone.
    const digests = [result.digest, ...(result.parsed ? referencedDigests(result.parsed) : [])];
    this.#options.recentTags.remember(facts.upstream, facts.repository, facts.tag, digests, client);
  }

  /** A tag list or referrers answer: allowed by the policy that governs the repository. */
  listed(facts: PullFacts, policy: string | undefined): void {
    facts.verdict = policy === undefined ? { decision: 'allow' } : { decision: 'allow', policy };
  }

  /** A request refused before it reached the service (a write to this read-only registry). */
  refused(facts: PullFacts, reason: string): void {
    facts.verdict = { decision: 'deny', reasons: [reason] };
  }

  /** The event of a request: its facts, the request's, and how it ended. */
  event(facts: PullFacts, request: PullRequest, outcome: PullOutcome): AuditEvent {
    const elapsedMs = request.elapsedMs;
    // Refusals: by policy or routing (DENIED), and by authentication (401, and 429 once a client
    // has spent its failure budget). All are `decision: deny`, so `--decision deny` finds them.
    const error = outcome.error;
    const denied = error !== undefined && isRegistryError(error) && REFUSALS.has(error.code);
    // Only DENIED carries a detail worth reading here (401 and 429 name no decision).
    const detail = denied ? denyDetail(error) : undefined;
    const event: AuditEvent = {
      // `time` first: the trail's line starts with it, and then the event is serialized as it is.
      time: new Date(Date.now() - elapsedMs).toISOString(),
      type: facts.type,
      requestId: request.requestId,
      client: request.client,
      identity: facts.identity,
      userAgent: request.userAgent,
      method: request.method,
      upstream: facts.upstream,
      repository: facts.repository,
      reference: facts.reference,
      // A denial names the digest it decided (and the tag) even when the request was by tag.
      tag: facts.tag ?? (detail !== undefined && 'tag' in detail ? detail.tag : undefined),
      digest: facts.digest ?? (detail !== undefined && 'digest' in detail ? detail.digest : undefined),
      mediaType: facts.mediaType,
      cache: facts.cache === undefined ? undefined : recordedCacheState(facts.cache),
      bytes: outcome.bytes,
      durationMs: Math.round(elapsedMs * 10) / 10,
      status: outcome.status,
    };
    let verdict = facts.verdict;
    if (verdict === undefined && denied) {
      verdict = {
        decision: 'deny',
        policy: (detail !== undefined && 'policy' in detail ? detail.policy : undefined) ?? undefined,
        reasons: (detail !== undefined && 'reasons' in detail ? detail.reasons : undefined) ?? [
          error instanceof Error ? error.message : String(error),
        ],
      };
      if (detail !== undefined && 'signers' in detail) verdict.signers = detail.signers;
      if (detail !== undefined && 'gates' in detail && detail.gates) verdict.gates = auditGates(detail.gates);
    }
    if (verdict) {
      event.decision = verdict.decision;
      if ('policy' in verdict) event.policy = verdict.policy;
      if (verdict.reasons) event.reasons = verdict.reasons;
      if (verdict.signers) event.signers = verdict.signers;
      if (verdict.gates) event.gates = verdict.gates;
    }
    return event;
  }

  /** {@link event} and {@link append}: the event of a request, durable. */
  async record(facts: PullFacts, request: PullRequest, outcome: PullOutcome): Promise<void> {
    await this.append(this.event(facts, request, outcome));
  }

  /**
   * Append an event and wait until it is durable. A failure is logged; with failClosed it becomes a
   * 503 for the request (the caller has not answered yet).
   */
  async append(event: AuditEvent): Promise<void> {
    const started = performance.now();
    try {
      await this.#options.sink.append(event);
      this.#options.observe?.((performance.now() - started) / 1000, true);
    } catch (err) {
      this.#options.observe?.((performance.now() - started) / 1000, false);
      this.#log.error(
        { err: err instanceof Error ? err.message : String(err), requestId: event.requestId },
        'audit event could not be written',
      );
      if (this.#options.failClosed) {
        throw new RegistryError(
          'UNAVAILABLE',
          'the audit trail cannot be written; pulls are refused until it can',
          {
            cause: err,
          },
        );
      }
    }
  }
}

/**
 * A decision in the audit trail's words. Left out when they say nothing the line does not (the warm
 * path writes millions of these): no signers, or the one reason an allow-only policy gives.
 */
function verdictOf(d: Decision): PullVerdict {
  // A cached decision is the same object on every hit: its verdict (gate summaries copied, reasons
  // compared) is built once, not once per request. Events only read it.
  const known = verdicts.get(d);
  if (known) return known;
  const verdict: PullVerdict = { decision: d.result, policy: d.policy };
  const restated =
    d.result === 'allow' && d.reasons.length === 1 && d.reasons[0] === `allowed by policy "${d.policy}"`;
  if (d.reasons.length > 0 && !restated) verdict.reasons = d.reasons;
  if (d.signers.length > 0) verdict.signers = d.signers;
  if (d.gates !== undefined) verdict.gates = auditGates(d.gates);
  verdicts.set(d, verdict);
  return verdict;
}

const verdicts = new WeakMap<Decision, PullVerdict>();

/** Gate results in the compact audit shape: outcome, deciding attestation and time, counts. */
function auditGates(gates: readonly GateResult[]): AuditGate[] {
  return gates.map((g) => {
    const counts = g.facts.counts;
    const out: AuditGate = { gate: g.gate, kind: g.kind, mode: g.mode, result: g.result };
    if (g.attestation !== undefined) out.attestation = g.attestation.manifestDigest;
    if (g.attestation?.time !== undefined) out.time = g.attestation.time;
    if (typeof counts === 'object' && counts !== null) out.counts = { ...(counts as Record<string, number>) };
    if (g.result !== 'pass' && g.reasons[0] !== undefined) out.reason = g.reasons[0];
    return out;
  });
}
