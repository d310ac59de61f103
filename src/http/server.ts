import { randomUUID } from 'node:crypto';
import Fastify, { LogController } from 'fastify';
import type { FastifyBaseLogger, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { parseAccept, RegistryError } from '../oci/index.ts';
import type { Metrics, RegistryService } from '../service/index.ts';
import { AuditRecorder } from './audit.ts';
import type { PullAuth } from './auth.ts';
import type { AuditFacts, HttpAudit } from './audit.ts';
import { sendRegistryError, toRegistryError } from './errors.ts';
import { parseRange } from './range.ts';
import { countRequestTimeouts, limitSlowReaders } from './send-timeout.ts';
import { canonicalHost, parseRegistryPath, refusedRoute, requested } from './routing.ts';
import type { RegistryRoute } from './routing.ts';

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
  audit?: HttpAudit;
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
  };
}

/** What one request did, for its log line and metrics. */
interface RequestFacts {
  route: string;
  upstream?: string;
  repository?: string;
  reference?: string;
  digest?: string;
  cache?: string;
  bytes?: number;
  /** The audit facts of a manifest or blob request (written before its response completes). */
  audit?: AuditFacts;
  /** Authenticated identity label (user:…, token:…, cert:…). */
  identity?: string;
}

const API_VERSION_HEADER = 'Docker-Distribution-API-Version';
const API_VERSION = 'registry/2.0';

/**
 * The HTTP face of the registry: `/v2/` read API, health and metrics. Routes only parse, call the
 * service and write headers; every failure goes through the one error mapper.
 */
export function buildHttpServer(options: HttpServerOptions): FastifyInstance {
  // Fastify types the instance by its logger; the rest of the app only needs the base logger type.
  const loggerInstance: FastifyBaseLogger = options.logger;
  const { service, metrics } = options;
  const log = options.logger.child({ module: 'http' });
  const facts = new WeakMap<FastifyRequest, RequestFacts>();

  const timeouts = nodeTimeouts(options.timeouts ?? DEFAULT_TIMEOUTS);
  const metricsMode = options.metricsEndpoint ?? 'auth';
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
    return503OnClosing: true,
    ...(options.https ? { https: { ...options.https, ...timeouts } } : {}),
    bodyLimit: 1024,
  });

  limitSlowReaders(app.server, options.timeouts?.send ?? DEFAULT_TIMEOUTS.send ?? 60_000, () =>
    metrics.requestsLimited.inc({ reason: 'send-timeout' }),
  );
  countRequestTimeouts(app.server, () => metrics.requestsLimited.inc({ reason: 'request-timeout' }));
  const recorder = options.audit ? new AuditRecorder(options.audit, log) : undefined;
  const auth = options.auth?.enabled === true ? options.auth : undefined;
  const countDenial = (err: unknown): void => {
    if (err instanceof RegistryError && err.code === 'DENIED') metrics.denials.inc(denialLabels(err.detail));
  };

  /** Audit facts of a write (a push attempt) that names a repository; undefined when it names none. */
  const writeAuditFacts = (request: FastifyRequest): AuditFacts | undefined => {
    const { path, ns } = splitUrl(request.raw.url ?? '/');
    const routing = {
      resolveHost: (host: string) => service.resolveHost(host),
      defaultUpstream: options.defaultUpstream,
    };
    let route: RegistryRoute;
    try {
      route = parseRegistryPath(path, ns, routing);
    } catch (err) {
      const refused = refusedRoute(err);
      if (refused === undefined) return undefined;
      return {
        type: refused.kind,
        upstream: refused.upstream,
        repository: refused.repository,
        reference: refused.reference,
      };
    }
    if (route.kind === 'base') return undefined;
    if (route.kind === 'upload')
      return { type: 'blob', ...requested(route.name, ns, routing), reference: '' };
    const reference =
      route.kind === 'manifest'
        ? route.reference.kind === 'tag'
          ? route.reference.tag
          : route.reference.digest
        : route.kind === 'tags'
          ? ''
          : route.digest;
    return {
      type: route.kind,
      upstream: route.target.upstream,
      repository: route.target.repository,
      reference,
    };
  };

  app.addHook('onRequest', async (request, reply) => {
    // No response of a registry is meant to be rendered by a browser; never let one guess a type.
    void reply.header('X-Content-Type-Options', 'nosniff');
    // A pull-through proxy is read-only: a write on /v2 is refused before its body is read (Fastify
    // would otherwise parse it first), and the connection closes rather than drain a body we refused.
    if (WRITE_METHODS.has(request.method) && request.url.startsWith('/v2')) {
      facts.set(request, { route: 'write' });
      metrics.requestsLimited.inc({ reason: 'write-method' });
      void reply.header(API_VERSION_HEADER, API_VERSION).header('Connection', 'close');
      const refusal = unsupported();
      // A push attempt names a repository: audited (decision deny) before the refusal is sent.
      const a = recorder ? writeAuditFacts(request) : undefined;
      if (recorder && a) {
        const event = recorder.event(request, reply.elapsedTime, a, { status: refusal.status, bytes: 0 });
        event.decision = 'deny';
        event.reasons = [refusal.message];
        try {
          await recorder.record(event);
        } catch (auditErr) {
          sendRegistryError(auditErr, request, reply, log);
          return reply;
        }
      }
      sendRegistryError(refusal, request, reply, log);
      return reply;
    }
  });

  app.setErrorHandler(async (err, request, reply) => {
    const a = facts.get(request)?.audit;
    countDenial(err);
    if (recorder && a && !reply.sent && !reply.raw.headersSent) {
      // Refusals and failures are audited like answers: "what did we deny last night?".
      const re = toRegistryError(err);
      const event = recorder.event(request, reply.elapsedTime, a, { status: re.status, bytes: 0, error: re });
      // The access log line names the digest a denial decided, as the event does.
      const f = facts.get(request);
      if (f && f.digest === undefined && event.digest !== undefined) f.digest = event.digest;
      try {
        await recorder.record(event);
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

  app.get('/healthz', (request, reply) => {
    facts.set(request, { route: 'health' });
    return reply.send({ status: 'ok' });
  });

  app.get('/readyz', async (request, reply) => {
    facts.set(request, { route: 'health' });
    try {
      await options.ready();
      // Still ready (cached content is served), but say what is degraded.
      const warnings = options.warnings?.() ?? [];
      return warnings.length === 0 ? { status: 'ready' } : { status: 'warning', warnings };
    } catch (err) {
      return reply
        .code(503)
        .send({ status: 'not ready', reason: err instanceof Error ? err.message : String(err) });
    }
  });

  app.get('/metrics', async (request, reply) => {
    facts.set(request, { route: 'metrics' });
    // Metrics name policies, upstreams and repositories: not for whoever can reach the registry port.
    if (metricsMode === 'off') throw new RegistryError('NAME_UNKNOWN', 'unknown path');
    if (metricsMode === 'auth' && auth) {
      const identity = await auth.authenticate(request);
      if (identity) facts.set(request, { route: 'metrics', identity: identity.label });
      auth.challengeBase(identity);
    }
    return reply.type(metrics.registry.contentType).send(await metrics.render());
  });

  /** Who the audit trail names for a request: the identity, `anonymous`, or nobody without auth. */
  const auditIdentity = async (request: FastifyRequest): Promise<string | undefined> => {
    if (!auth) return undefined;
    try {
      return (await auth.authenticate(request))?.label ?? 'anonymous';
    } catch {
      // Credentials that do not verify name nobody (the user name they claim is not an identity).
      return 'anonymous';
    }
  };

  const handleRead = async (request: FastifyRequest, reply: FastifyReply): Promise<unknown> => {
    const { path, ns } = splitUrl(request.raw.url ?? '/');
    reply.header(API_VERSION_HEADER, API_VERSION);
    let route: RegistryRoute;
    try {
      route = parseRegistryPath(path, ns, {
        resolveHost: (host) => service.resolveHost(host),
        defaultUpstream: options.defaultUpstream,
      });
    } catch (err) {
      // Refused at routing (an upstream that is not configured): audited with the host the client
      // asked for, as data. Nothing was, or will be, dialled.
      const refused = refusedRoute(err);
      if (refused !== undefined) {
        const identity = await auditIdentity(request);
        const a: AuditFacts = {
          type: refused.kind,
          upstream: refused.upstream,
          repository: refused.repository,
          reference: refused.reference,
        };
        if (identity !== undefined) a.identity = identity;
        if (refused.kind === 'manifest' && !refused.reference.includes(':')) a.tag = refused.reference;
        else if (refused.reference.includes(':')) a.digest = refused.reference;
        facts.set(request, {
          route: refused.kind,
          upstream: refused.upstream,
          repository: refused.repository,
          reference: refused.reference,
          ...(identity === undefined ? {} : { identity }),
          audit: a,
        });
      }
      throw err;
    }
    const f: RequestFacts = { route: route.kind };
    facts.set(request, f);
    if (route.kind !== 'base' && route.kind !== 'upload') {
      f.upstream = route.target.upstream;
      f.repository = route.target.repository;
      // Provisional audit facts, so that a refusal below (auth, policy) is audited too.
      f.audit = {
        type: route.kind,
        upstream: route.target.upstream,
        repository: route.target.repository,
        reference:
          route.kind === 'blob' || route.kind === 'referrers'
            ? route.digest
            : route.kind === 'tags'
              ? ''
              : route.reference.kind === 'tag'
                ? route.reference.tag
                : route.reference.digest,
      };
      if (route.kind === 'manifest' && route.reference.kind === 'tag') f.audit.tag = route.reference.tag;
      else if (route.kind !== 'tags') f.audit.digest = f.audit.reference;
      // Until credentials verify, the request is anonymous (a 401 below is audited as such).
      if (auth) f.audit.identity = 'anonymous';
    }
    if (auth) {
      const identity = await auth.authenticate(request);
      if (identity) {
        f.identity = identity.label;
        if (f.audit) f.audit.identity = identity.label;
      }
      if (route.kind === 'base') auth.challengeBase(identity);
      else if (route.kind !== 'upload')
        auth.authorize(identity, route.target.upstream, route.target.repository);
    }
    switch (route.kind) {
      case 'base':
        return reply.type('application/json').send('{}');
      case 'upload':
        throw unsupported();
      case 'manifest':
        return serveManifest(route, request, reply, f);
      case 'blob':
        return serveBlob(route, request, reply, f);
      case 'tags':
        return serveTags(route, request, reply, ns, f);
      case 'referrers':
        return serveReferrers(route, request, reply, f);
    }
  };

  async function serveManifest(
    route: Extract<RegistryRoute, { kind: 'manifest' }>,
    request: FastifyRequest,
    reply: FastifyReply,
    f: RequestFacts,
  ): Promise<unknown> {
    f.reference = route.reference.kind === 'tag' ? route.reference.tag : route.reference.digest;
    const a: AuditFacts = {
      type: 'manifest',
      upstream: route.target.upstream,
      repository: route.target.repository,
      reference: f.reference,
    };
    if (f.audit?.identity !== undefined) a.identity = f.audit.identity;
    if (route.reference.kind === 'tag') a.tag = route.reference.tag;
    else {
      a.digest = route.reference.digest;
      const tag = recorder?.tagFor(request, a.upstream, a.repository, route.reference.digest);
      if (tag !== undefined) a.tag = tag;
    }
    f.audit = a;
    const withBody = request.method === 'GET';
    const result = await service.resolveManifest(route.target, route.reference, {
      accept: parseAccept(request.headers.accept),
      withBody,
    });
    f.digest = result.digest;
    f.cache = result.cache;
    f.bytes = withBody ? result.size : 0;
    a.digest = result.digest;
    a.mediaType = result.mediaType;
    a.cache = result.cache;
    if (result.decision) a.decision = result.decision;
    if (recorder) {
      recorder.remember(request, a, result.parsed);
      await recorder.record(recorder.event(request, reply.elapsedTime, a, { status: 200, bytes: f.bytes }));
    }
    reply
      .header('Content-Type', result.mediaType)
      .header('Docker-Content-Digest', result.digest)
      .header('Content-Length', String(result.size))
      .header('ETag', `"${result.digest}"`)
      .header('X-Pullwarden-Cache', result.cache);
    if (result.cache === 'stale') reply.header('Warning', '110 pullwarden "Response is Stale"');
    // warn = the policy would deny but is in warn mode: served, and visible to whoever looks.
    if (result.decision) reply.header('X-Pullwarden-Decision', result.decision.result);
    if (!withBody) return reply.send();
    return reply.send(result.bytes);
  }

  async function serveBlob(
    route: Extract<RegistryRoute, { kind: 'blob' }>,
    request: FastifyRequest,
    reply: FastifyReply,
    f: RequestFacts,
  ): Promise<unknown> {
    f.digest = route.digest;
    const a: AuditFacts = {
      type: 'blob',
      upstream: route.target.upstream,
      repository: route.target.repository,
      reference: route.digest,
      digest: route.digest,
    };
    if (f.audit?.identity !== undefined) a.identity = f.audit.identity;
    const tag = recorder?.tagFor(request, a.upstream, a.repository, route.digest);
    if (tag !== undefined) a.tag = tag;
    f.audit = a;
    // Set only on success (after the service answered): an error must not name the blob's digest.
    const blobHeaders = () =>
      reply
        .header('Docker-Content-Digest', route.digest)
        .header('Content-Type', 'application/octet-stream')
        .header('Accept-Ranges', 'bytes')
        .header('ETag', `"${route.digest}"`);
    if (request.method === 'HEAD') {
      const head = await service.headBlob(route.target, route.digest);
      blobHeaders();
      f.cache = head.cache;
      f.bytes = 0;
      a.cache = head.cache;
      if (recorder)
        await recorder.record(recorder.event(request, reply.elapsedTime, a, { status: 200, bytes: 0 }));
      return reply
        .header('Content-Length', String(head.size))
        .header('X-Pullwarden-Cache', head.cache)
        .send();
    }
    const handle = await service.getBlob(route.target, route.digest);
    f.cache = handle.state;
    a.cache = handle.state;
    blobHeaders();
    // The handle pins the blob against eviction until the response is over, however it ends.
    reply.raw.once('close', () => handle.release());
    try {
      const size = handle.size;
      const range = size === undefined ? undefined : parseRange(request.headers.range, size);
      reply.header('X-Pullwarden-Cache', handle.state);
      if (range && size !== undefined) {
        const length = range.end - range.start + 1;
        f.bytes = length;
        reply
          .code(206)
          .header('Content-Range', `bytes ${range.start}-${range.end}/${size}`)
          .header('Content-Length', String(length));
      } else if (size !== undefined) {
        f.bytes = size;
        reply.header('Content-Length', String(size));
      }
      const stream = handle.createReadStream(range);
      const label = handle.state;
      stream.on('end', () => metrics.blobBytesServed.inc({ result: label }, f.bytes ?? 0));
      if (!recorder) return await reply.send(stream);
      // The last chunk waits for the blob's audit event to be durable.
      const audited = recorder.blobStream(request, reply.raw, () => reply.elapsedTime, a, range ? 206 : 200);
      stream.once('error', (err) => audited.destroy(err));
      return await reply.send(stream.pipe(audited));
    } catch (err) {
      handle.release();
      throw err;
    }
  }

  async function serveTags(
    route: Extract<RegistryRoute, { kind: 'tags' }>,
    request: FastifyRequest,
    reply: FastifyReply,
    ns: string | undefined,
    f: RequestFacts,
  ): Promise<unknown> {
    if (request.method === 'HEAD') throw unsupported();
    const q = request.query as Record<string, string | undefined>;
    const query: { n?: number; last?: string } = {};
    if (q.n !== undefined && /^\d{1,6}$/.test(q.n)) query.n = Number(q.n);
    if (q.last !== undefined && q.last !== '') query.last = q.last;
    const list = await service.listTags(route.target, query);
    f.bytes = list.body.length;
    await recordListing(request, reply, f, list.policy, list.body.length);
    if (list.link) {
      const next = rewriteLink(list.link, route.name, ns);
      if (next) reply.header('Link', next);
    }
    return reply.type('application/json').send(list.body);
  }

  /** The audit event of a tag list or referrers answer (durable before the answer is sent). */
  async function recordListing(
    request: FastifyRequest,
    reply: FastifyReply,
    f: RequestFacts,
    policy: string | undefined,
    bytes: number,
  ): Promise<void> {
    const a = f.audit;
    if (!recorder || !a) return;
    const event = recorder.event(request, reply.elapsedTime, a, { status: 200, bytes });
    event.decision = 'allow';
    if (policy !== undefined) event.policy = policy;
    await recorder.record(event);
  }

  async function serveReferrers(
    route: Extract<RegistryRoute, { kind: 'referrers' }>,
    request: FastifyRequest,
    reply: FastifyReply,
    f: RequestFacts,
  ): Promise<unknown> {
    if (request.method === 'HEAD') throw unsupported();
    const artifactType = (request.query as Record<string, string | undefined>).artifactType;
    const answer = await service.getReferrers(route.target, route.digest, artifactType || undefined);
    f.bytes = answer.body.length;
    await recordListing(request, reply, f, answer.policy, answer.body.length);
    if (answer.filtersApplied) reply.header('OCI-Filters-Applied', 'artifactType');
    return reply.type('application/vnd.oci.image.index.v1+json').send(answer.body);
  }

  app.route({ method: ['GET', 'HEAD'], url: '/v2', handler: handleRead });
  app.route({ method: ['GET', 'HEAD'], url: '/v2/*', handler: handleRead });
  // Writes never get here (the onRequest hook answers them); the route keeps them out of the 404 path.
  app.route({
    method: [...WRITE_METHODS],
    url: '/v2/*',
    handler: () => {
      throw unsupported();
    },
  });
  return app;
}

const WRITE_METHODS = new Set(['PUT', 'POST', 'PATCH', 'DELETE']);

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

/** The reason label of a denial: the rule's own reason, or the first signature failure. */
function denialLabels(detail: unknown): { policy: string; reason: string } {
  const d = (detail ?? {}) as {
    policy?: string | null;
    reason?: string;
    signatures?: { failures?: { code?: string }[] }[];
    reasons?: string[];
  };
  const failure = d.signatures?.flatMap((s) => s.failures ?? [])[0]?.code;
  const reason =
    d.reason ??
    failure ??
    (d.signatures !== undefined &&
    d.signatures.length === 0 &&
    d.reasons?.some((r) => r.includes('no signature'))
      ? 'no-signature'
      : 'policy');
  return { policy: d.policy ?? '(none)', reason };
}

function unsupported(): RegistryError {
  return new RegistryError(
    'UNSUPPORTED',
    'this is a read-only pull-through registry: the operation is not supported',
  );
}

function routeLabel(request: FastifyRequest): string {
  return request.url.startsWith('/v2') ? 'v2-other' : 'other';
}

/** Raw path (still percent-encoded) and the decoded `ns` parameter. */
export function splitUrl(rawUrl: string): { path: string; ns: string | undefined } {
  const q = rawUrl.indexOf('?');
  const path = q >= 0 ? rawUrl.slice(0, q) : rawUrl;
  if (q < 0) return { path, ns: undefined };
  const params = new URLSearchParams(rawUrl.slice(q + 1));
  const ns = params.get('ns');
  return { path, ns: ns === null ? undefined : canonicalHost(ns) };
}

/** Point the upstream's `Link: <…?last=x&n=y>; rel="next"` at this proxy's path for the same name. */
function rewriteLink(link: string, name: string, ns: string | undefined): string | undefined {
  const m = /<([^>]*)>/.exec(link);
  if (!m) return undefined;
  const target = m[1] ?? '';
  const q = target.indexOf('?');
  const params = new URLSearchParams(q >= 0 ? target.slice(q + 1) : '');
  const out = new URLSearchParams();
  const n = params.get('n');
  const last = params.get('last');
  if (n !== null) out.set('n', n);
  if (last !== null) out.set('last', last);
  if (ns !== undefined) out.set('ns', ns);
  return `</v2/${name}/tags/list?${out.toString()}>; rel="next"`;
}
