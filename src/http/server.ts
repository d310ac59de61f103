import { randomUUID } from 'node:crypto';
import Fastify, { LogController } from 'fastify';
import type { FastifyBaseLogger, FastifyInstance, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { RegistryError } from '../oci/index.ts';
import { denialLabels, denyDetail } from '../service/index.ts';
import { PullAudit } from '../service/index.ts';
import type { Metrics, PullAuditOptions, RegistryService } from '../service/index.ts';
import { pullRequest } from './audit.ts';
import type { PullAuth } from './auth.ts';
import { sendRegistryError, toRegistryError } from './errors.ts';
import { answerClientError } from './client-errors.ts';
import { countRequestTimeouts, limitSlowReaders } from './send-timeout.ts';
import { API_VERSION, API_VERSION_HEADER } from './routes/context.ts';
import type { RequestFacts, RouteContext } from './routes/context.ts';
import { registerHealthRoutes } from './routes/health.ts';
import { registerRegistryRoutes } from './routes/registry.ts';

export interface HttpServerOptions {
  service: RegistryService;
  logger: Logger;
  metrics: Metrics;
  defaultUpstream: string | undefined;
  /** Resolves when the process can serve pulls; rejects with the reason otherwise (for /readyz). */
  ready: () => Promise<void>;
  /** Conditions that do not stop pulls but need an operator (disk below its reserve), for /readyz. */
  warnings?: () => string[];
  trustProxy?: boolean;
  /** The audit trail; without it no audit events are written. */
  audit?: PullAuditOptions;
  /** Pull authentication; without it every request is anonymous and allowed. */
  auth?: PullAuth;
  /** Serve HTTPS with these (PEM) materials. */
  https?: { key: Buffer; cert: Buffer; ca?: Buffer; requestCert: boolean; rejectUnauthorized: boolean };
  /** Client-side timeouts in ms (`server.headersTimeout`, `requestTimeout`, `keepAliveTimeout`). */
  timeouts?: HttpTimeouts;
  /**
   * `/metrics` on this listener: `'off'` (served on `metrics.listen` instead: 404 here), `'auth'`
   * (needs credentials `/v2` accepts, when pull auth is configured) or `'open'`. Default `'auth'`.
   */
  metricsEndpoint?: 'off' | 'auth' | 'open';
}

/** Limits on how slowly a client may send a request, and how long an idle connection stays open. */
export interface HttpTimeouts {
  /** Until the request headers are complete. */
  headers: number;
  /** Until the whole request (headers and any body) is received; responses are not limited. */
  request: number;
  /** Idle keep-alive connection between two requests. */
  keepAlive: number;
  /** A response the client takes no byte of for this long is cut (`server.sendTimeout`). */
  send?: number;
}

const DEFAULT_TIMEOUTS: HttpTimeouts = { headers: 10_000, request: 30_000, keepAlive: 72_000, send: 60_000 };

/**
 * Node options for the timeouts. Node checks them every `connectionsCheckingInterval` (default 30 s),
 * which would let a slow client run far past a short limit; check at a fraction of the shortest one.
 */
function nodeTimeouts(t: HttpTimeouts) {
  const shortest = Math.min(t.headers, t.request);
  return {
    headersTimeout: t.headers,
    requestTimeout: t.request,
    keepAliveTimeout: t.keepAlive,
    connectionsCheckingInterval: Math.max(100, Math.min(5_000, Math.floor(shortest / 4))),
    // Node answers an HTTP/1.1 request without Host with a bare 400 of its own; the onRequest hook
    // refuses it with an OCI error instead.
    requireHostHeader: false,
  };
}

/**
 * The HTTP face of the registry: `/v2/` read API, health and metrics. Routes only parse, call the
 * service and write headers; every failure goes through the one error mapper. This wires the route
 * modules (routes/) to one shared context and keeps what spans every route: timeouts, the access log
 * line, and the error handler that audits refusals.
 */
export function buildHttpServer(options: HttpServerOptions): FastifyInstance {
  // Fastify types the instance by its logger; the rest of the app only needs the base logger type.
  const loggerInstance: FastifyBaseLogger = options.logger;
  const { service, metrics } = options;
  const log = options.logger.child({ module: 'http' });
  const facts = new WeakMap<FastifyRequest, RequestFacts>();

  const timeouts = nodeTimeouts(options.timeouts ?? DEFAULT_TIMEOUTS);
  const app = Fastify({
    loggerInstance,
    // A client that trickles its request (1 byte every few seconds) holds a socket and a parser for
    // nothing: headers and the whole request must arrive within these limits. Responses (a blob
    // download) are not limited by them.
    requestTimeout: timeouts.requestTimeout,
    keepAliveTimeout: timeouts.keepAliveTimeout,
    http: timeouts,
    // One log line per request is written in onResponse, with the registry facts attached.
    logController: new LogController({ disableRequestLogging: true }),
    // The automatic HEAD route would run the GET handler and drain its stream: a HEAD on a blob would
    // download the blob. Every HEAD here is written by hand and never opens a body.
    exposeHeadRoutes: false,
    trustProxy: options.trustProxy ?? false,
    requestIdHeader: 'x-request-id',
    genReqId: () => randomUUID(),
    // Requests that arrive while the server closes (on a connection still busy) get the OCI 503 of
    // the onRequest hook below, not Fastify's own body.
    return503OnClosing: false,
    ...(options.https ? { https: { ...options.https, ...timeouts } } : {}),
    bodyLimit: 1024,
    // Requests Node's parser refuses (smuggling shapes, bad headers, oversize header blocks, timeouts)
    // and URLs Fastify cannot decode get the OCI error body every other answer has, saying why.
    clientErrorHandler: answerClientError,
    frameworkErrors: (err, request, reply) => {
      void reply.header(API_VERSION_HEADER, API_VERSION).header('X-Content-Type-Options', 'nosniff');
      sendRegistryError(err, request, reply, log);
    },
  });

  limitSlowReaders(app.server, options.timeouts?.send ?? DEFAULT_TIMEOUTS.send ?? 60_000, () =>
    metrics.requestsLimited.inc({ reason: 'send-timeout' }),
  );
  countRequestTimeouts(app.server, () => metrics.requestsLimited.inc({ reason: 'request-timeout' }));
  const pulls = options.audit ? new PullAudit(options.audit, log) : undefined;
  /** Set when the server begins to close (preClose below); read by the early refusals of routes/. */
  let closing = false;
  const ctx: RouteContext = {
    service,
    metrics,
    log,
    routing: {
      resolveHost: (host: string) => service.resolveHost(host),
      defaultUpstream: options.defaultUpstream,
    },
    facts,
    pulls,
    auth: options.auth?.enabled === true ? options.auth : undefined,
    closing: () => closing,
  };
  const countDenial = (err: unknown): void => {
    if (err instanceof RegistryError && err.code === 'DENIED')
      metrics.denials.inc(denialLabels(denyDetail(err)));
  };

  app.addHook('preClose', (done) => {
    closing = true;
    done();
  });
  app.addHook('onRequest', async (_request, reply) => {
    // No response of a registry is meant to be rendered by a browser; never let one guess a type.
    void reply.header('X-Content-Type-Options', 'nosniff');
  });

  app.setErrorHandler(async (err, request, reply) => {
    const a = facts.get(request)?.audit;
    countDenial(err);
    if (pulls && a && !reply.sent && !reply.raw.headersSent) {
      // Refusals and failures are audited like answers: "what did we deny last night?".
      const re = toRegistryError(err);
      const outcome = { status: re.status, bytes: 0, error: re };
      const event = pulls.event(a, pullRequest(request, reply.elapsedTime), outcome);
      // The access log line names the digest a denial decided, as the event does.
      const f = facts.get(request);
      if (f && f.digest === undefined && event.digest !== undefined) f.digest = event.digest;
      try {
        await pulls.append(event);
      } catch (auditErr) {
        sendRegistryError(auditErr, request, reply, log);
        return;
      }
    }
    sendRegistryError(err, request, reply, log);
  });
  app.setNotFoundHandler((request, reply) =>
    sendRegistryError(new RegistryError('NAME_UNKNOWN', 'unknown path'), request, reply, log),
  );

  app.addHook('onResponse', (request, reply, done) => {
    const f = facts.get(request) ?? { route: routeLabel(request) };
    const status = reply.statusCode;
    const durationMs = reply.elapsedTime;
    metrics.httpRequests.inc({ route: f.route, method: request.method, status: String(status) });
    metrics.httpDuration.observe({ route: f.route }, durationMs / 1000);
    const aborted = !reply.raw.writableFinished;
    const line = {
      reqId: request.id,
      method: request.method,
      client: request.ip,
      identity: f.identity,
      route: f.route,
      upstream: f.upstream,
      repository: f.repository,
      reference: f.reference,
      digest: f.digest,
      cache: f.cache,
      status,
      bytes: aborted ? undefined : f.bytes,
      aborted: aborted || undefined,
      durationMs: Math.round(durationMs * 10) / 10,
    };
    if (f.route === 'health' || f.route === 'metrics') log.debug(line, 'request completed');
    else log.info(line, 'request completed');
    done();
  });

  registerHealthRoutes(app, ctx, {
    ready: options.ready,
    warnings: options.warnings,
    metricsMode: options.metricsEndpoint ?? 'auth',
  });
  registerRegistryRoutes(app, ctx);
  return app;
}

/**
 * A listener that serves only `/metrics` (and `/healthz`), for `metrics.listen`: a port that can stay
 * inside the cluster network or on loopback while the registry port faces the nodes.
 */
export function buildMetricsServer(options: { metrics: Metrics; logger: Logger }): FastifyInstance {
  const loggerInstance: FastifyBaseLogger = options.logger;
  const app = Fastify({
    loggerInstance,
    logController: new LogController({ disableRequestLogging: true }),
    requestTimeout: DEFAULT_TIMEOUTS.request,
    keepAliveTimeout: DEFAULT_TIMEOUTS.keepAlive,
    http: nodeTimeouts(DEFAULT_TIMEOUTS),
    bodyLimit: 1024,
  });
  app.addHook('onRequest', (_request, reply, done) => {
    void reply.header('X-Content-Type-Options', 'nosniff');
    done();
  });
  app.get('/metrics', async (_request, reply) =>
    reply.type(options.metrics.registry.contentType).send(await options.metrics.render()),
  );
  app.get('/healthz', (_request, reply) => reply.send({ status: 'ok' }));
  return app;
}

function routeLabel(request: FastifyRequest): string {
  return request.url.startsWith('/v2') ? 'v2-other' : 'other';
}
