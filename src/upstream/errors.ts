/**
 * Upstream answers and failures → {@link RegistryError}: the one place the upstream client chooses an
 * error code (never an HTTP status: that is http's error mapper). Messages name the configured upstream
 * and what was asked for, never a token, a credentialed URL or the upstream's own error text.
 */
import type { Readable } from 'node:stream';
import { notFoundCodes, RegistryError } from '../oci/index.ts';
import type { Digest, ErrorCode } from '../oci/index.ts';
import { AddressRefusedError } from './address-guard.ts';
import type { Exchange, UpstreamResponse } from './exchange.ts';
import { BodyDeadlineError, discard, errorCode, parseRetryAfter, readLimited } from './http-util.ts';
import type { UndiciUpstreamConfig, UpstreamLogger, UpstreamRefusal } from './options.ts';

const ERROR_BODY_BYTES = 16 * 1024;
// An error body only tells us which not-found code applies: not worth waiting for.
const ERROR_BODY_DEADLINE_MS = 5_000;

export interface UpstreamErrorsOptions {
  /** The configured upstream host (config key). */
  host: string;
  /** The timeouts named in timeout messages. */
  config: Pick<UndiciUpstreamConfig, 'connectTimeout' | 'headersTimeout' | 'bodyTimeout'>;
  log: UpstreamLogger;
  /** Counts refusals (metrics); must not throw, and is ignored if it does. */
  onRefused: ((reason: UpstreamRefusal) => void) | undefined;
}

/** Builds the {@link RegistryError}s of one upstream. */
export class UpstreamErrors {
  readonly #host: string;
  readonly #config: UpstreamErrorsOptions['config'];
  readonly #log: UpstreamLogger;
  readonly #onRefused: UpstreamErrorsOptions['onRefused'];

  constructor(options: UpstreamErrorsOptions) {
    this.#host = options.host;
    this.#config = options.config;
    this.#log = options.log;
    this.#onRefused = options.onRefused;
  }

  /**
   * Map a non-success answer to a RegistryError, consuming its body: 404 → `notFound` (or the
   * upstream's own not-found code), 401/403 → DENIED, 429 → TOOMANYREQUESTS, anything else →
   * UNAVAILABLE; `Retry-After` is kept for the last two.
   */
  async failure(
    ex: Pick<Exchange, 'kind' | 'method' | 'repository' | 'what'>,
    res: UpstreamResponse,
    notFound: ErrorCode,
  ): Promise<RegistryError> {
    const status = res.statusCode;
    const upstreamCode = status === 404 && ex.method === 'GET' ? await ociErrorCode(res.body) : undefined;
    if (upstreamCode === undefined) await discard(res.body);
    if (status === 404 && ex.kind !== 'token') {
      // The upstream's own code says more ("no such repository" vs "no such tag"); only the three
      // not-found codes are taken from it, and never its message.
      return new RegistryError(upstreamCode ?? notFound, `${ex.what} is unknown to upstream ${this.#host}`);
    }
    if (status === 401 || status === 403) {
      return ex.kind === 'token'
        ? new RegistryError(
            'DENIED',
            `upstream ${this.#host} token service refused access to ${ex.repository}`,
          )
        : this.denied(ex);
    }
    const retryAfter = parseRetryAfter(res.headers['retry-after']);
    const extra = retryAfter === undefined ? {} : { retryAfter };
    if (status === 429) {
      return new RegistryError(
        'TOOMANYREQUESTS',
        `upstream ${this.#host} is rate limiting requests for ${ex.what}`,
        extra,
      );
    }
    return new RegistryError(
      'UNAVAILABLE',
      `upstream ${this.#host} answered ${status} for ${ex.what}`,
      extra,
    );
  }

  /** The upstream refused our credentials (or has none for us) for the repository. */
  denied(ex: Pick<Exchange, 'repository'>): RegistryError {
    return new RegistryError('DENIED', `upstream ${this.#host} refused access to ${ex.repository}`);
  }

  /** Bytes that do not hash to the digest asked for: an upstream failure, never a success. */
  mismatch(ex: Pick<Exchange, 'what'>, digest: Digest): RegistryError {
    return new RegistryError(
      'UNAVAILABLE',
      `upstream ${this.#host} sent bytes that do not match digest ${digest} (${ex.what})`,
    );
  }

  /**
   * A failure of the connection or of the body (no usable answer): UNAVAILABLE naming the timeout
   * that ran out, or the refusal of a non-public redirect target by the connector.
   */
  transport(ex: Pick<Exchange, 'what'>, err: unknown): RegistryError {
    const host = this.#host;
    const refused = findRefusal(err);
    if (refused !== undefined) {
      this.#count('redirect-address');
      this.#log.warn(
        { upstream: host, what: ex.what, to: refused.host, address: refused.address, reason: refused.reason },
        'refused redirect to a non-public address',
      );
      return new RegistryError(
        'UNAVAILABLE',
        `upstream ${host} redirected ${ex.what} to ${refused.host}, a ${refused.reason} address (${refused.address}); refused. If that host is yours, add it to upstreams.${host}.redirects.allow`,
        { cause: err, detail: { reason: 'redirect-refused', host: refused.host } },
      );
    }
    const code = errorCode(err);
    let message: string;
    if (code === 'UND_ERR_HEADERS_TIMEOUT') {
      message = `upstream ${host} sent no response within ${this.#config.headersTimeout} ms (${ex.what})`;
    } else if (code === 'UND_ERR_BODY_TIMEOUT') {
      message = `upstream ${host} stalled for ${this.#config.bodyTimeout} ms while sending ${ex.what}`;
    } else if (err instanceof BodyDeadlineError) {
      message = `upstream ${host} sent ${ex.what} too slowly (${err.message}); abandoned`;
    } else if (code === 'UND_ERR_CONNECT_TIMEOUT') {
      message = `could not connect to upstream ${host} within ${this.#config.connectTimeout} ms`;
    } else {
      message = `upstream ${host} failed while sending ${ex.what} (${code ?? 'connection error'})`;
    }
    return new RegistryError('UNAVAILABLE', message, { cause: err });
  }

  /** A refusal of where the upstream sent us: counted, logged, and answered 503 with the reason. */
  refuse(reason: UpstreamRefusal, message: string, detail: Record<string, string> = {}): RegistryError {
    this.#count(reason);
    this.#log.warn({ upstream: this.#host, reason, ...detail }, 'refused where the upstream sent us');
    return new RegistryError('UNAVAILABLE', message, { detail: { reason, ...detail } });
  }

  #count(reason: UpstreamRefusal): void {
    try {
      this.#onRefused?.(reason);
    } catch {
      // Metrics must never break a pull.
    }
  }
}

/** The {@link AddressRefusedError} in an error's cause chain (undici may wrap connector errors). */
export function findRefusal(err: unknown): AddressRefusedError | undefined {
  for (let e: unknown = err, depth = 0; e !== undefined && e !== null && depth < 5; depth++) {
    if (e instanceof AddressRefusedError) return e;
    e = typeof e === 'object' && 'cause' in e ? e.cause : undefined;
  }
  return undefined;
}

/**
 * The code of the first error in an OCI error body, if it is one of the not-found codes. Consumes
 * (or destroys) the body, and gives up on a large or slow one.
 */
export async function ociErrorCode(body: Readable): Promise<ErrorCode | undefined> {
  try {
    const bytes = await readLimited(body, ERROR_BODY_BYTES, ERROR_BODY_DEADLINE_MS);
    if (bytes === undefined) return undefined;
    const json = JSON.parse(bytes.toString('utf8')) as { errors?: { code?: unknown }[] };
    const code = json.errors?.[0]?.code;
    return typeof code === 'string' && notFoundCodes.has(code as ErrorCode) ? (code as ErrorCode) : undefined;
  } catch {
    return undefined;
  } finally {
    if (!body.destroyed) body.destroy();
  }
}
