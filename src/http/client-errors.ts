import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import { errorBody, RegistryError, truncate } from '../oci/index.ts';
import type { ErrorCode } from '../oci/index.ts';

/**
 * Why Node's HTTP parser (llhttp) refused a request, by its error code, as a client reads it. Two
 * codes of the one table (oci/errors.ts), both `400` as HTTP wants for a request that cannot be read
 * (RFC 9112 section 2.2), chosen by what is wrong:
 * - `SIZE_INVALID` ("provided length did not match content length") for framing and size: a body
 *   length that cannot be known (both Transfer-Encoding and Content-Length: the request smuggling
 *   shape, RFC 9112 section 6.1), a bad Content-Length or chunk size, a header block over the limit,
 *   a request that did not arrive in full within the server's timeouts;
 * - `NAME_INVALID` for a request line or header that is not HTTP (the proxy's answer for a request
 *   path it cannot read, too).
 * `UNSUPPORTED` is not used: its status (405, "method not allowed") would tell a client to change the
 * method, when the request itself cannot be read. No second status table: the status is the code's.
 */
const PARSER_ERRORS: Record<string, { code: ErrorCode; why: string }> = {
  // Duplicate Content-Length headers.
  HPE_UNEXPECTED_CONTENT_LENGTH: { code: 'SIZE_INVALID', why: 'the request length is ambiguous' },
  // Also Content-Length with Transfer-Encoding: the request smuggling shape.
  HPE_INVALID_CONTENT_LENGTH: {
    code: 'SIZE_INVALID',
    why: 'the request length is ambiguous or not a number',
  },
  HPE_INVALID_TRANSFER_ENCODING: {
    code: 'SIZE_INVALID',
    why: 'the Transfer-Encoding header is not valid (chunked must be the last encoding)',
  },
  HPE_INVALID_CHUNK_SIZE: { code: 'SIZE_INVALID', why: 'a chunk size of the request body is not valid' },
  HPE_CHUNK_EXTENSIONS_OVERFLOW: {
    code: 'SIZE_INVALID',
    why: 'the chunk extensions of the request body are too large',
  },
  HPE_HEADER_OVERFLOW: {
    code: 'SIZE_INVALID',
    why: 'the request header block is larger than the server accepts',
  },
  ERR_HTTP_REQUEST_TIMEOUT: {
    code: 'SIZE_INVALID',
    why: 'the request did not arrive in full within the server timeout (server.headersTimeout / server.requestTimeout)',
  },
  HPE_INVALID_METHOD: { code: 'NAME_INVALID', why: 'the request method is not valid' },
  HPE_INVALID_URL: { code: 'NAME_INVALID', why: 'the request target is not a valid URL path' },
  HPE_INVALID_VERSION: { code: 'NAME_INVALID', why: 'the HTTP version is not valid' },
  HPE_INVALID_HEADER_TOKEN: {
    code: 'NAME_INVALID',
    why: 'a request header name or value contains characters HTTP does not allow',
  },
  HPE_INVALID_CONSTANT: { code: 'NAME_INVALID', why: 'the request is not HTTP/1.x' },
  HPE_LF_EXPECTED: { code: 'NAME_INVALID', why: 'a request line is not terminated by CRLF' },
  HPE_CR_EXPECTED: { code: 'NAME_INVALID', why: 'a request line is not terminated by CRLF' },
};

/** The OCI error a client error (Node's `clientError` event) is answered with. */
export function clientErrorOf(err: NodeJS.ErrnoException): RegistryError {
  const known = err.code === undefined ? undefined : PARSER_ERRORS[err.code];
  const { code, why } = known ?? { code: 'NAME_INVALID' as const, why: 'the request is not valid HTTP' };
  // llhttp's reason is one of its own fixed strings ("Content-Length can't be present with
  // Transfer-Encoding"): it names the exact fault and carries nothing the client sent.
  const reason = (err as { reason?: unknown }).reason;
  const exact = typeof reason === 'string' && reason !== '' ? ` (${truncate(reason, 120)})` : '';
  return new RegistryError(code, `malformed request: ${why}${exact}`, {
    detail: { reason: 'malformed-request', parser: err.code ?? 'unknown' },
  });
}

/**
 * Answer a request Node's parser refused, on the raw socket (there is no request or response object
 * then, see Node's `clientError` event), with the OCI error body every other `/v2` answer has, and
 * close the connection: after a framing error nothing more on it can be read safely.
 */
export function answerClientError(err: NodeJS.ErrnoException, socket: Socket): void {
  // A reset connection, or one already gone: nobody to answer.
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  // A response already started on this connection (keep-alive): it cannot be followed by another.
  const inFlight = (socket as Socket & { _httpMessage?: { headersSent?: boolean } })._httpMessage;
  if (!socket.writable || inFlight?.headersSent === true) {
    socket.destroy();
    return;
  }
  const re = clientErrorOf(err);
  const body = JSON.stringify(errorBody(re));
  socket.end(
    [
      `HTTP/1.1 ${re.status} ${STATUS_CODES[re.status] ?? 'Error'}`,
      'Content-Type: application/json; charset=utf-8',
      `Content-Length: ${Buffer.byteLength(body)}`,
      'Docker-Distribution-API-Version: registry/2.0',
      'X-Content-Type-Options: nosniff',
      'Connection: close',
      '',
      body,
    ].join('\r\n'),
  );
  // Whatever the client still sends is not read; the socket closes once the answer is flushed.
  socket.once('finish', () => socket.destroy());
}
