/**
 * The wire: one undici connection pool per origin (the registry, its token realm, its blob CDN)
 * behind the connect-time address guard, retries of idempotent requests, bounded body reads and the
 * slow-body (trickle) guard of streamed blobs. Knows nothing about registries or credentials.
 */
import { readFileSync } from 'node:fs';
import { PassThrough } from 'node:stream';
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { rootCertificates } from 'node:tls';
import { Agent } from 'undici';
import type { Dispatcher } from 'undici';
import { RegistryError } from '../oci/index.ts';
import { guardedConnector } from './address-guard.ts';
import type { LookupFunction } from './address-guard.ts';
import type { UpstreamErrors } from './errors.ts';
import type { Exchange, UpstreamResponse } from './exchange.ts';
import {
  BodyDeadlineError,
  discard,
  errorCode,
  isRetryableConnectionError,
  readLimited,
} from './http-util.ts';
import type { UndiciUpstreamConfig, UpstreamLogger, UpstreamRequestInfo } from './options.ts';

// All response headers together (Node's default; a signed CDN Location is a few KiB).
const MAX_RESPONSE_HEADER_BYTES = 16 * 1024;
// The slowest blob body accepted: at least this many bytes in every bodyTimeout window (1 KiB/s at the
// default 60 s). undici's bodyTimeout alone bounds a pause, so one byte every 59 s would never end.
const MIN_BLOB_BYTES_PER_WINDOW = 64 * 1024;

export interface TransportOptions {
  /** The configured upstream host (config key), for logs and {@link UpstreamRequestInfo}. */
  host: string;
  config: Pick<
    UndiciUpstreamConfig,
    | 'connectTimeout'
    | 'headersTimeout'
    | 'bodyTimeout'
    | 'retries'
    | 'connections'
    | 'insecureSkipTLSVerify'
    | 'caFile'
  >;
  log: UpstreamLogger;
  errors: UpstreamErrors;
  /**
   * Hosts connected to without the address check (the upstream's own, allowed redirect targets and
   * realms): they were named in the config.
   */
  trustedHost: (hostname: string, port: number) => boolean;
  onRequest: ((info: UpstreamRequestInfo) => void) | undefined;
  /** Base of the exponential backoff between retries, in ms. */
  retryDelayMs: number;
  userAgent: string;
  lookup: LookupFunction | undefined;
}

/** The HTTP client of one upstream. */
export class Transport {
  readonly #host: string;
  readonly #config: TransportOptions['config'];
  readonly #log: UpstreamLogger;
  readonly #errors: UpstreamErrors;
  readonly #onRequest: TransportOptions['onRequest'];
  readonly #retryDelayMs: number;
  readonly #userAgent: string;
  readonly #agent: Agent;

  constructor(options: TransportOptions) {
    const { config } = options;
    this.#host = options.host;
    this.#config = config;
    this.#log = options.log;
    this.#errors = options.errors;
    this.#onRequest = options.onRequest;
    this.#retryDelayMs = options.retryDelayMs;
    this.#userAgent = options.userAgent;
    // A private CA is added to the public roots, not put in their place: the token realm and blob CDN
    // of a registry are often public services even when the registry itself is not.
    const ca =
      config.caFile === undefined ? undefined : [...rootCertificates, readFileSync(config.caFile, 'utf8')];
    this.#agent = new Agent({
      connections: config.connections,
      headersTimeout: config.headersTimeout,
      bodyTimeout: config.bodyTimeout,
      // Set here rather than inherited from --max-http-header-size: a hostile upstream's 1 MiB
      // WWW-Authenticate or Location must fail the request, whatever NODE_OPTIONS says.
      maxHeaderSize: MAX_RESPONSE_HEADER_BYTES,
      connect: guardedConnector({
        tls: { rejectUnauthorized: !config.insecureSkipTLSVerify, ...(ca === undefined ? {} : { ca }) },
        timeout: config.connectTimeout,
        trustedHost: options.trustedHost,
        ...(options.lookup === undefined ? {} : { lookup: options.lookup }),
      }),
    });
  }

  /**
   * One HTTP exchange with retries: connection failures before any response are retried up to
   * `config.retries` times with backoff, and a 5xx once. Every retry is a new request (counted).
   */
  async dispatch(ex: Exchange, authorization: string | undefined): Promise<Dispatcher.ResponseData> {
    const headers: Record<string, string> = { 'user-agent': this.#userAgent, ...ex.headers };
    if (authorization !== undefined) headers.authorization = authorization;
    let connectionRetries = 0;
    let serverErrorRetried = this.#config.retries === 0;
    for (let attempt = 0; ; attempt++) {
      const started = performance.now();
      let res: Dispatcher.ResponseData;
      try {
        res = await this.#agent.request({
          origin: ex.url.origin,
          path: ex.url.pathname + ex.url.search,
          method: ex.method,
          headers,
          signal: ex.signal ?? null,
        });
      } catch (err) {
        this.#observe(ex, 'error', started);
        if (ex.signal?.aborted === true) throw err;
        if (connectionRetries < this.#config.retries && isRetryableConnectionError(err)) {
          connectionRetries++;
          this.#log.debug(
            { upstream: this.#host, what: ex.what, code: errorCode(err) },
            'retrying upstream request',
          );
          await this.backoff(attempt, ex.signal);
          continue;
        }
        throw this.#errors.transport(ex, err);
      }
      this.#observe(ex, res.statusCode, started);
      // 501 means "never"; other 5xx are often one bad backend behind a load balancer.
      if (res.statusCode >= 500 && res.statusCode !== 501 && !serverErrorRetried) {
        serverErrorRetried = true;
        await discard(res.body);
        this.#log.debug(
          { upstream: this.#host, what: ex.what, status: res.statusCode },
          'retrying upstream request',
        );
        await this.backoff(attempt, ex.signal);
        continue;
      }
      return res;
    }
  }

  async backoff(attempt: number, signal: AbortSignal | undefined): Promise<void> {
    const ms = Math.min(2_000, this.#retryDelayMs * 2 ** attempt) * (0.5 + Math.random() / 2);
    await sleep(ms, undefined, signal === undefined ? {} : { signal });
  }

  async readBody(ex: Pick<Exchange, 'what'>, res: UpstreamResponse, limit: number): Promise<Buffer> {
    let body: Buffer | undefined;
    try {
      body = await readLimited(res.body, limit, this.#config.bodyTimeout);
    } catch (err) {
      throw this.#errors.transport(ex, err);
    }
    if (body === undefined) {
      throw new RegistryError(
        'UNAVAILABLE',
        `upstream ${this.#host} sent more than ${limit} bytes for ${ex.what}`,
      );
    }
    return body;
  }

  /**
   * Wrap a streaming blob body so failures surface as UNAVAILABLE naming the upstream, and so a
   * consumer that destroys the stream also destroys the undici body (freeing the connection).
   */
  guardBody(body: Readable, what: string, signal: AbortSignal | undefined): Readable {
    const out = new PassThrough({ highWaterMark: 64 * 1024 });
    body.on('error', (err) => {
      out.destroy(signal?.aborted === true ? err : this.#errors.transport({ what }, err));
    });
    // A trickle (slowloris) upstream: too few bytes in a whole bodyTimeout window, while we were
    // ready to take more (a window in which our reader held the stream back does not count).
    const window = this.#config.bodyTimeout;
    let received = 0;
    let heldBack = false;
    body.on('data', (chunk: Buffer) => {
      received += chunk.length;
    });
    body.on('pause', () => (heldBack = true));
    const timer =
      window > 0
        ? setInterval(() => {
            // No byte at all is a stall, which undici's own bodyTimeout reports as such.
            const trickle = received > 0 && received < MIN_BLOB_BYTES_PER_WINDOW;
            if (trickle && !heldBack && !body.isPaused()) {
              body.destroy(
                new BodyDeadlineError(
                  window,
                  `${received} bytes in ${window} ms, below ${MIN_BLOB_BYTES_PER_WINDOW} bytes per bodyTimeout`,
                ),
              );
            }
            received = 0;
            heldBack = body.isPaused();
          }, window).unref()
        : undefined;
    const stop = () => clearInterval(timer);
    body.once('end', stop);
    body.once('close', stop);
    out.on('close', () => {
      stop();
      if (!body.destroyed) body.destroy();
    });
    body.pipe(out);
    return out;
  }

  #observe(ex: Exchange, status: number | 'error', started: number): void {
    if (this.#onRequest === undefined) return;
    try {
      this.#onRequest({
        host: this.#host,
        method: ex.method,
        kind: ex.kind,
        status,
        durationMs: performance.now() - started,
      });
    } catch {
      // Metrics must never break a pull.
    }
  }

  async close(): Promise<void> {
    // close() waits for in-flight requests; a body someone forgot to consume would hang shutdown.
    const timer = sleep(5_000, 'timeout' as const, { ref: false });
    const result = await Promise.race([this.#agent.close().then(() => 'closed' as const), timer]);
    if (result === 'timeout') await this.#agent.destroy();
  }
}
