import type { ServerResponse } from 'node:http';
import { Transform } from 'node:stream';
import type { TransformCallback } from 'node:stream';
import type { FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import type { AuditEvent, AuditGate, AuditSink, RecentTags } from '../audit/index.ts';
import { isRegistryError, recordedCacheState, referencedDigests, RegistryError } from '../oci/index.ts';
import type { CacheState, ParsedManifest } from '../oci/index.ts';
import type { Decision, GateResult } from '../policy/index.ts';
import { denyDetail } from '../service/index.ts';

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

/** Error codes that are refusals (decision deny), not failures. */
const REFUSALS = new Set(['DENIED', 'UNAUTHORIZED', 'TOOMANYREQUESTS']);

/** What the HTTP layer needs to write the audit trail. */
export interface HttpAudit {
  sink: AuditSink;
  /** Refuse a pull (503) when its event cannot be written. */
  failClosed: boolean;
  recentTags: RecentTags;
  /** Told how long each append took and whether it failed (metrics). */
  observe?: (seconds: number, ok: boolean) => void;
}

/** The request facts an audit event is built from. */
export interface AuditFacts {
  type: 'manifest' | 'blob' | 'tags' | 'referrers';
  upstream: string;
  repository: string;
  reference: string;
  tag?: string;
  digest?: string;
  mediaType?: string;
  cache?: CacheState;
  decision?: Decision;
  /** Authenticated identity label, when there is one. */
  identity?: string;
}

/**
 * Builds and writes audit events for manifest and blob requests. `record` resolves once the event is
 * durable (the JSONL sink fsyncs before it acknowledges); callers finish the response after it.
 */
export class AuditRecorder {
  readonly #audit: HttpAudit;
  readonly #log: Logger;

  constructor(audit: HttpAudit, log: Logger) {
    this.#audit = audit;
    this.#log = log;
  }

  /** The tag a digest request belongs to, from this client's recent tag resolutions. */
  tagFor(request: FastifyRequest, upstream: string, repository: string, digest: string): string | undefined {
    return this.#audit.recentTags.tagFor(upstream, repository, digest, request.ip);
  }

  /**
   * Remember what a tag led to (the manifest and, when its bytes are at hand, everything it refers to),
   * so the digest requests that follow carry the tag: a pull reads as one story.
   */
  remember(request: FastifyRequest, f: AuditFacts, parsed: ParsedManifest | undefined): void {
    if (f.tag === undefined || f.digest === undefined) return;
    // The service's one parse of the manifest; without it (a cached HEAD) the digest alone.
    const digests = [f.digest, ...(parsed ? referencedDigests(parsed) : [])];
    this.#audit.recentTags.remember(f.upstream, f.repository, f.tag, digests, request.ip);
  }

  event(
    request: FastifyRequest,
    elapsedMs: number,
    f: AuditFacts,
    outcome: { status: number; bytes: number; error?: unknown },
  ): AuditEvent {
    const d = f.decision;
    // Refusals: by policy or routing (DENIED), and by authentication (401, and 429 once a client
    // has spent its failure budget). All are `decision: deny`, so `--decision deny` finds them.
    const denied =
      outcome.error !== undefined && isRegistryError(outcome.error) && REFUSALS.has(outcome.error.code);
    // Only DENIED carries a detail worth reading here (401 and 429 name no decision).
    const detail = denied ? denyDetail(outcome.error) : undefined;
    const event: AuditEvent = {
      type: f.type,
      time: new Date(Date.now() - elapsedMs).toISOString(),
      requestId: request.id,
      client: request.ip,
      identity: f.identity,
      userAgent: request.headers['user-agent'],
      method: request.method,
      upstream: f.upstream,
      repository: f.repository,
      reference: f.reference,
      // A denial names the digest it decided (and the tag) even when the request was by tag.
      tag: f.tag ?? (detail !== undefined && 'tag' in detail ? detail.tag : undefined),
      digest: f.digest ?? (detail !== undefined && 'digest' in detail ? detail.digest : undefined),
      mediaType: f.mediaType,
      cache: f.cache === undefined ? undefined : recordedCacheState(f.cache),
      bytes: outcome.bytes,
      durationMs: Math.round(elapsedMs * 10) / 10,
      status: outcome.status,
    };
    if (d) {
      event.decision = d.result;
      event.policy = d.policy;
      // Left out when they say nothing the line does not (the warm path writes millions of these):
      // no signers, or the one reason an allow-only policy gives ("allowed by policy <policy>").
      const restated =
        d.result === 'allow' && d.reasons.length === 1 && d.reasons[0] === `allowed by policy "${d.policy}"`;
      if (d.reasons.length > 0 && !restated) event.reasons = d.reasons;
      if (d.signers.length > 0) event.signers = d.signers;
      if (d.gates !== undefined) event.gates = auditGates(d.gates);
    } else if (denied) {
      event.decision = 'deny';
      event.policy = (detail !== undefined && 'policy' in detail ? detail.policy : undefined) ?? undefined;
      event.reasons = (detail !== undefined && 'reasons' in detail ? detail.reasons : undefined) ?? [
        outcome.error instanceof Error ? outcome.error.message : String(outcome.error),
      ];
      if (detail !== undefined && 'signers' in detail) event.signers = detail.signers;
      if (detail !== undefined && 'gates' in detail && detail.gates) event.gates = auditGates(detail.gates);
    }
    return event;
  }

  /**
   * Append an event and wait until it is durable. A failure is logged; with failClosed it becomes a 503
   * for the request (the caller has not answered yet).
   */
  async record(event: AuditEvent): Promise<void> {
    const started = performance.now();
    try {
      await this.#audit.sink.append(event);
      this.#audit.observe?.((performance.now() - started) / 1000, true);
    } catch (err) {
      this.#audit.observe?.((performance.now() - started) / 1000, false);
      this.#log.error(
        { err: err instanceof Error ? err.message : String(err), requestId: event.requestId },
        'audit event could not be written',
      );
      if (this.#audit.failClosed) {
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

  /**
   * A pass-through for a blob body that holds back its last chunk until the blob's audit event is
   * durable: a client never holds a complete blob whose event could still be lost. Bytes are counted
   * as they pass, so the event has the exact count; a client that goes away gets an event too.
   */
  blobStream(
    request: FastifyRequest,
    response: ServerResponse,
    elapsed: () => number,
    f: AuditFacts,
    status: number,
  ): Transform {
    let held: Buffer | undefined;
    let sent = 0;
    let written = false;
    const write = async (bytes: number): Promise<void> => {
      if (written) return;
      written = true;
      await this.record(this.event(request, elapsed(), f, { status, bytes }));
    };
    const stream = new Transform({
      transform(chunk: Buffer, _enc, done: TransformCallback) {
        if (held) {
          sent += held.length;
          this.push(held);
        }
        held = chunk;
        done();
      },
      flush: (done: TransformCallback) => {
        const last = held;
        held = undefined;
        write(sent + (last?.length ?? 0)).then(
          () => done(null, last),
          (err: unknown) => done(err instanceof Error ? err : new Error(String(err))),
        );
      },
    });
    // Aborted responses (client gone, upstream failure mid-stream): record what was actually sent.
    response.once('close', () => {
      if (!written) void write(sent).catch(() => undefined);
    });
    return stream;
  }
}
