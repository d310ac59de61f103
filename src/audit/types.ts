import type { DecisionResult, RecordedCacheState, SignerIdentity } from '../shared/index.ts';

/**
 * What an audit event records.
 * - `manifest`: one per manifest request (HEAD or GET, by tag or by digest).
 * - `blob`: one per blob request (bytes and status exact, summarised over the request).
 * - `tags`: a tag list request (`reference` empty).
 * - `referrers`: a referrers request (`reference` and `digest`: the subject digest).
 * - `tag-moved`: a tag now resolves to a different digest than last time (`old` → `new`).
 *
 * Refusals are events of the request's type with `decision: deny`: at routing (an upstream that is
 * not configured: `upstream` is the host the client asked for, never dialled), at authentication
 * (`identity: "anonymous"` or the identity refused; never a secret) and by policy.
 */
export type AuditEventType = 'manifest' | 'blob' | 'tags' | 'referrers' | 'tag-moved';

/** One gate's outcome as the audit trail keeps it (compact: no full finding lists). */
export interface AuditGate {
  gate: string;
  kind: string;
  mode: 'enforce' | 'warn';
  result: 'pass' | 'deny' | 'warn';
  /** Digest of the attestation manifest that decided, and its (scan or signature) time. */
  attestation?: string;
  time?: string;
  /** Vulnerability gates: counted findings per severity. */
  counts?: Record<string, number>;
  reason?: string;
}

/**
 * One audit event, as the service hands it to the sink. Optional fields are left out of the JSON line
 * when undefined (`undefined` is accepted so that callers can pass maybe-values straight through).
 */
export interface AuditEvent {
  type: AuditEventType;
  /** When the request arrived: `Date.prototype.toISOString()` (UTC, milliseconds). */
  time: string;
  /** The request id of the HTTP layer (also in the access log). */
  requestId: string;
  /** Client address as seen by the proxy (after trusted proxy headers, if any). */
  client: string;
  /** Authenticated client identity, when the client authenticated. */
  identity?: string | undefined;
  userAgent?: string | undefined;
  /** HEAD or GET. */
  method?: string | undefined;
  /** Upstream host, e.g. "docker.io". */
  upstream: string;
  /** Repository within the upstream, e.g. "library/nginx". */
  repository: string;
  /** The reference the client asked for: a tag or a digest. */
  reference: string;
  /**
   * The tag of the story: the tag asked for, or — for a request by digest that follows a tag
   * resolution of the same repository — the tag that resolved to that digest.
   */
  tag?: string | undefined;
  /** The digest the reference resolved to (manifests) or the blob digest. */
  digest?: string | undefined;
  mediaType?: string | undefined;
  decision?: DecisionResult | undefined;
  /** Name of the policy that decided; absent when none matched or no decision was needed. */
  policy?: string | undefined;
  reasons?: string[] | undefined;
  /** Verified signer identities that counted (keyless: issuer + subject; key: key name). */
  signers?: SignerIdentity[] | undefined;
  /** Each attestation gate's outcome: result, the attestation that decided, its scan time, counts. */
  gates?: AuditGate[] | undefined;
  /** How the answer was found: in the cache, fetched from upstream, or served stale (upstream down). */
  cache?: RecordedCacheState | undefined;
  /** Body bytes sent to the client (0 for HEAD). */
  bytes: number;
  /** From arrival to the end of the response, in milliseconds. */
  durationMs: number;
  /** HTTP status sent to the client. */
  status: number;
  /** tag-moved: the digest the tag resolved to before. */
  old?: string | undefined;
  /** tag-moved: the digest the tag resolves to now. */
  new?: string | undefined;
}

/**
 * An event as stored in the JSONL files: the event plus its place in the hash chain.
 * See jsonl-sink.ts for the line format.
 */
export type AuditRecord = AuditEvent & {
  /** Position in the chain, 1-based, continuous across files. */
  seq: number;
  /** `hash` of the previous line (the last line of the previous file for a file's first line). */
  prev: string;
  /** sha256 (hex) of this line's bytes up to, not including, its `,"hash":…` member. */
  hash: string;
};

/** Health as readiness reports it. */
export interface AuditHealth {
  ok: boolean;
  reason?: string;
}

/**
 * Where audit events go (port). Implementations: {@link JsonlAuditSink} (durable, hash-chained),
 * {@link StdoutAuditSink}, {@link WebhookAuditSink}, and {@link MultiAuditSink} to fan out.
 */
export interface AuditSink {
  /**
   * Record one event. Resolves only when the event is durable as this sink defines it (JSONL: written
   * and fsync'd). Rejects when it cannot be recorded; the caller decides whether the pull fails.
   */
  append(event: AuditEvent): Promise<void>;
  /** Not ok while the sink cannot record events (full disk, I/O error, collector unreachable). */
  health(): AuditHealth;
  /** Finish what was accepted, then release files and timers. Appends after close reject. */
  close(): Promise<void>;
}

/** A sink that places events in the hash chain and hands back the stored record. */
export interface ChainedAuditSink extends AuditSink {
  appendRecord(event: AuditEvent): Promise<AuditRecord>;
}

/** Counters for metrics. */
export interface AuditSinkStats {
  /** Events acknowledged (durable). */
  appended: number;
  /** Appends rejected. */
  failed: number;
  /** Group commits (one write + one fsync each). */
  batches: number;
}

/** Stable error codes of the audit module. */
export type AuditErrorCode = 'AUDIT_WRITE_FAILED' | 'AUDIT_CLOSED' | 'AUDIT_CHAIN_UNREADABLE';

export class AuditError extends Error {
  override name = 'AuditError';
  readonly code: AuditErrorCode;
  constructor(code: AuditErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}
