import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { RegistryError } from '../../oci/index.ts';
import { pullFacts } from '../../service/index.ts';
import type { PullFacts } from '../../service/index.ts';
import { pullRequest } from '../audit.ts';
import { sendRegistryError } from '../errors.ts';
import { QueryString, queryParameters } from '../query.ts';
import { canonicalHost, parseRegistryPath, refusedRoute, requested } from '../routing.ts';
import type { RegistryRoute } from '../routing.ts';
import { blobRoute } from './blobs.ts';
import { API_VERSION, API_VERSION_HEADER, unsupported } from './context.ts';
import type { RequestFacts, RouteContext } from './context.ts';
import { listingRoutes } from './listings.ts';
import { manifestRoute } from './manifests.ts';

const WRITE_METHODS = new Set(['PUT', 'POST', 'PATCH', 'DELETE']);

/**
 * The `/v2` read API: the path is parsed once (routing refusals audited with what the client asked
 * for), the client authenticated and authorized, then the route of its kind answers. Writes are
 * refused before their body is read.
 */
export function registerRegistryRoutes(app: FastifyInstance, ctx: RouteContext): void {
  const { facts, pulls, auth, metrics, log } = ctx;
  const serveManifest = manifestRoute(ctx);
  const serveBlob = blobRoute(ctx);
  const { serveTags, serveReferrers } = listingRoutes(ctx);

  app.addHook('onRequest', async (request, reply) => {
    const refusal = earlyRefusal(ctx, request);
    if (refusal === undefined) return;
    if (refusal.code === 'UNSUPPORTED') {
      // RFC 9110: a 405 lists the methods the resource does support.
      void reply.header('Allow', 'GET, HEAD');
      metrics.requestsLimited.inc({
        reason: WRITE_METHODS.has(request.method) ? 'write-method' : 'other-method',
      });
    }
    void reply.header(API_VERSION_HEADER, API_VERSION).header('Connection', 'close');
    facts.set(request, { route: refusal.code === 'UNSUPPORTED' ? 'write' : 'refused' });
    // A request that names a repository is audited (decision deny) before the refusal is sent.
    const a = pulls && request.url.startsWith('/v2') ? pathAuditFacts(ctx, request) : undefined;
    if (pulls && a) {
      pulls.refused(a, refusal.message);
      try {
        await pulls.record(a, pullRequest(request, reply.elapsedTime), { status: refusal.status, bytes: 0 });
      } catch (auditErr) {
        sendRegistryError(auditErr, request, reply, log);
        return reply;
      }
    }
    sendRegistryError(refusal, request, reply, log);
    return reply;
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
    reply.header(API_VERSION_HEADER, API_VERSION);
    const { path, ns, query } = splitUrl(request.raw.url ?? '/');
    let route: RegistryRoute;
    try {
      route = parseRegistryPath(path, ns, ctx.routing);
    } catch (err) {
      // Refused at routing (an upstream that is not configured): audited with the host the client
      // asked for, as data. Nothing was, or will be, dialled.
      const refused = refusedRoute(err);
      if (refused !== undefined) {
        const identity = await auditIdentity(request);
        const a = pullFacts(refused.kind, refused.upstream, refused.repository, refused.reference);
        if (identity !== undefined) a.identity = identity;
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
      f.audit = pullFacts(route.kind, route.target.upstream, route.target.repository, referenceOf(route));
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
        return serveTags(route, request, reply, f, ns, query);
      case 'referrers':
        return serveReferrers(route, request, reply, f, query);
    }
  };

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
}

/**
 * What is refused before routing, the connection then closed: a request that is not one Host's
 * (RFC 9112 section 3.2: an HTTP/1.1 request without Host, or any with more than one — Node keeps
 * the first, a proxy in front may have routed by the last, and Host picks the upstream); any request
 * while the server shuts down (those in flight finish); and on `/v2`, every method but GET and HEAD
 * (a pull-through proxy is read-only: refused before a body is read, which Fastify would otherwise
 * parse first).
 */
function earlyRefusal(ctx: RouteContext, request: FastifyRequest): RegistryError | undefined {
  const hosts = hostHeaderCount(request.raw.rawHeaders);
  if (hosts > 1 || (request.raw.httpVersion === '1.1' && request.headers.host === undefined)) {
    const why =
      hosts > 1
        ? `malformed request: ${hosts} Host headers, a request carries one Host header`
        : 'malformed request: HTTP/1.1 requires a Host header';
    return new RegistryError('NAME_INVALID', why, { detail: { reason: 'malformed-request' } });
  }
  if (ctx.closing()) {
    return new RegistryError('UNAVAILABLE', 'pullwarden is shutting down', {
      retryAfter: 1,
      detail: { reason: 'shutting-down' },
    });
  }
  if (request.method !== 'GET' && request.method !== 'HEAD' && request.url.startsWith('/v2')) {
    return unsupported();
  }
  return undefined;
}

/** How many Host fields a request's raw header list holds (names at even indexes). */
function hostHeaderCount(raw: readonly string[]): number {
  let n = 0;
  for (let i = 0; i < raw.length; i += 2) if (raw[i]?.length === 4 && raw[i]?.toLowerCase() === 'host') n++;
  return n;
}

/**
 * Audit facts of a request refused before routing (a push attempt, a malformed request) that names a
 * repository; undefined when it names none. Only what the path names: nothing was resolved, so
 * neither tag nor digest is "of the story".
 */
function pathAuditFacts(ctx: RouteContext, request: FastifyRequest): PullFacts | undefined {
  let route: RegistryRoute;
  let ns: string | undefined;
  try {
    const url = splitUrl(request.raw.url ?? '/');
    ns = url.ns;
    route = parseRegistryPath(url.path, ns, ctx.routing);
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
    return { type: 'blob', ...requested(route.name, ns, ctx.routing), reference: '' };
  return {
    type: route.kind,
    upstream: route.target.upstream,
    repository: route.target.repository,
    reference: referenceOf(route),
  };
}

/** The tag or digest a route names (`''` for tags/list). */
function referenceOf(route: Exclude<RegistryRoute, { kind: 'base' | 'upload' }>): string {
  switch (route.kind) {
    case 'manifest':
      return route.reference.kind === 'tag' ? route.reference.tag : route.reference.digest;
    case 'tags':
      return '';
    case 'blob':
    case 'referrers':
      return route.digest;
  }
}

/**
 * Raw path (still percent-encoded), the decoded `ns` parameter and the whole query, parsed once. A
 * repeated `ns` (`?ns=a&ns=b` names two upstreams) or one that does not decode is refused here rather
 * than picking one a cache or another proxy in front may read differently.
 */
export function splitUrl(rawUrl: string): { path: string; ns: string | undefined; query: QueryString } {
  const q = rawUrl.indexOf('?');
  const path = q >= 0 ? rawUrl.slice(0, q) : rawUrl;
  const query = QueryString.parse(q >= 0 ? rawUrl.slice(q + 1) : '');
  const ns = query.single(queryParameters.ns);
  return { path, ns: ns === undefined ? undefined : canonicalHost(ns), query };
}
