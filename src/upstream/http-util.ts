import type { Readable } from 'node:stream';
import { readAtMost } from '../shared/index.ts';

/**
 * Seconds to wait from a `Retry-After` value (RFC 9110 §10.2.3): delay-seconds or an HTTP date.
 * Returns undefined for a missing or unparseable value, and never a negative number.
 */
export function parseRetryAfter(value: string | string[] | undefined, now = Date.now()): number | undefined {
  const v = (Array.isArray(value) ? value[0] : value)?.trim();
  if (v === undefined || v === '') return undefined;
  if (/^\d+$/.test(v)) return Number(v);
  const at = Date.parse(v);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, Math.ceil((at - now) / 1000));
}

/** The bare media type of a `Content-Type` value: parameters dropped, lower-cased. */
export function bareMediaType(value: string | string[] | undefined): string {
  const v = Array.isArray(value) ? value[0] : value;
  return (v ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
}

/** First value of a response header that undici may hand us as a string or an array. */
export function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/** A non-negative integer `Content-Length`, or undefined. */
export function contentLength(value: string | string[] | undefined): number | undefined {
  const v = headerValue(value)?.trim();
  if (v === undefined || !/^\d+$/.test(v)) return undefined;
  const n = Number(v);
  return Number.isSafeInteger(n) ? n : undefined;
}

// Failures of the connection itself, before any response byte: the request never reached a handler
// that could have acted on it, so repeating an idempotent GET/HEAD is safe. Header and body timeouts
// are not here on purpose: the upstream is alive but slow, and a retry would multiply the wait.
const RETRYABLE_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'EPIPE',
  'ENETUNREACH',
  'EHOSTUNREACH',
  'EAI_AGAIN',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
]);

/** The `code` of an error or its cause chain (undici wraps socket errors). */
export function errorCode(err: unknown): string | undefined {
  for (let e: unknown = err, depth = 0; e !== undefined && e !== null && depth < 5; depth++) {
    if (typeof e === 'object' && 'code' in e && typeof e.code === 'string') return e.code;
    e = typeof e === 'object' && 'cause' in e ? e.cause : undefined;
  }
  return undefined;
}

/** Whether a failed idempotent request may be sent again (connection-level failures only). */
export function isRetryableConnectionError(err: unknown): boolean {
  const code = errorCode(err);
  return code !== undefined && RETRYABLE_CODES.has(code);
}

/**
 * Read a body into memory, giving up (and destroying the stream) once it exceeds `limit` bytes.
 * Returns undefined when the limit was exceeded, so the caller can choose the error. The stream is
 * always consumed or destroyed: `for await` destroys it when the loop is left early.
 */
export async function readLimited(
  body: Readable,
  limit: number,
  deadlineMs?: number,
): Promise<Buffer | undefined> {
  // undici's bodyTimeout bounds each pause between chunks; a body that trickles one byte just inside
  // it would never end. A buffered body (a manifest, a token, a tag list) must be complete in time.
  const timer =
    deadlineMs === undefined
      ? undefined
      : setTimeout(() => body.destroy(new BodyDeadlineError(deadlineMs)), deadlineMs).unref();
  try {
    return await readAtMost(body, limit);
  } finally {
    clearTimeout(timer);
  }
}

/** A body that did not arrive in time (in whole, or at the lowest rate accepted for a blob). */
export class BodyDeadlineError extends Error {
  readonly code = 'PW_BODY_DEADLINE';
  readonly ms: number;

  constructor(ms: number, message = `body not complete within ${ms} ms`) {
    super(message);
    this.ms = ms;
  }
}

const DISCARD_DEADLINE_MS = 2_000;

/**
 * Discard a body we do not need. Small bodies are read so the keep-alive connection can be reused;
 * anything larger is destroyed (closing that connection) rather than downloaded for nothing.
 */
export async function discard(
  body: Readable & { dump?: (opts?: { limit: number; signal?: AbortSignal }) => Promise<void> },
) {
  try {
    if (body.destroyed || body.readableEnded) return;
    // Never wait long for bytes nobody needs: an upstream trickling an error page one byte at a time
    // would otherwise hold the request for as long as it likes.
    if (typeof body.dump === 'function') {
      await body.dump({ limit: 64 * 1024, signal: AbortSignal.timeout(DISCARD_DEADLINE_MS) });
    } else body.destroy();
  } catch {
    // A body that fails while being discarded has nothing left to tell us.
  }
}

/** A URL hostname without the brackets of an IPv6 literal (`[::1]` → `::1`). */
export function unbracket(hostname: string): string {
  return hostname.startsWith('[') && hostname.endsWith(']') ? hostname.slice(1, -1) : hostname;
}

/** The port a URL connects to (its default port when none is written). */
export function portOf(url: URL): number {
  return url.port === '' ? (url.protocol === 'https:' ? 443 : 80) : Number(url.port);
}
