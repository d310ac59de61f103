import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { errorBody, isRegistryError, RegistryError, truncate } from '../oci/index.ts';

/**
 * Turn anything thrown into a RegistryError. Fastify's own errors (bad URL, unsupported content type,
 * body too large) carry a 4xx statusCode and keep Fastify's message, which says why; everything else
 * is a bug or an unexpected failure and becomes UNKNOWN with a message that does not leak internals
 * (the log keeps the cause).
 */
export function toRegistryError(err: unknown): RegistryError {
  if (isRegistryError(err)) return err;
  const status =
    typeof err === 'object' && err !== null ? (err as { statusCode?: unknown }).statusCode : undefined;
  if (typeof status === 'number') {
    if (status === 404) return new RegistryError('NAME_UNKNOWN', 'unknown path', { cause: err });
    if (status === 413) return new RegistryError('SIZE_INVALID', 'request body too large', { cause: err });
    if (status === 405) return new RegistryError('UNSUPPORTED', 'method not supported', { cause: err });
    if (status >= 400 && status < 500) {
      // A URL that does not decode, a path parameter too long, a body Fastify cannot parse: the
      // request cannot be read, as NAME_INVALID says for a path the router cannot read.
      const why = frameworkReason(err);
      return new RegistryError(
        'NAME_INVALID',
        `malformed request: ${why?.message ?? 'not a request the registry API reads'}`,
        { cause: err, detail: { reason: 'malformed-request', ...(why ? { framework: why.code } : {}) } },
      );
    }
  }
  return new RegistryError('UNKNOWN', 'internal error', { cause: err });
}

/**
 * Fastify's own refusals (`FST_ERR_…`: a URL that does not decode, a content type it cannot parse, a
 * path parameter too long) carry a message Fastify wrote, not an upstream's or a secret: it says why,
 * and is sent (truncated, control characters out).
 */
function frameworkReason(err: unknown): { code: string; message: string } | undefined {
  const { code, message } = err as { code?: unknown; message?: unknown };
  if (typeof code !== 'string' || !code.startsWith('FST_ERR_') || typeof message !== 'string')
    return undefined;
  // eslint-disable-next-line no-control-regex
  return { code, message: truncate(message.replace(/[\u0000-\u001f\u007f]/g, ' '), 200) };
}

/**
 * The one error mapper: code -> status (from the catalogue in oci/errors.ts) and an OCI error body.
 * HEAD answers carry the status and headers only.
 */
export function sendRegistryError(
  err: unknown,
  request: FastifyRequest,
  reply: FastifyReply,
  log: Logger,
): void {
  const re = toRegistryError(err);
  if (re.code === 'UNKNOWN') {
    log.error({ reqId: request.id, err: re.cause ?? re }, 'request failed with an unexpected error');
  }
  if (reply.sent || reply.raw.headersSent) {
    // Headers are gone: the only honest signal left is to cut the connection.
    reply.raw.destroy(re);
    return;
  }
  reply.code(re.status);
  if (re.retryAfter !== undefined) reply.header('Retry-After', String(Math.max(0, Math.ceil(re.retryAfter))));
  if (re.code === 'RANGE_INVALID') {
    const size = (re.detail as { size?: unknown } | undefined)?.size;
    if (typeof size === 'number') reply.header('Content-Range', `bytes */${size}`);
  }
  if (re.code === 'UNAUTHORIZED' && !reply.hasHeader('WWW-Authenticate')) {
    reply.header('WWW-Authenticate', 'Basic realm="pullwarden"');
  }
  reply.header('Docker-Distribution-API-Version', 'registry/2.0');
  if (request.method === 'HEAD') {
    void reply.send();
    return;
  }
  void reply.type('application/json; charset=utf-8').send(JSON.stringify(errorBody(re)));
}
