import type { FastifyReply, FastifyRequest } from 'fastify';
import { parseAccept } from '../../oci/index.ts';
import type { AuditFacts } from '../audit.ts';
import type { RegistryRoute } from '../routing.ts';
import type { RequestFacts, RouteContext } from './context.ts';

/** `HEAD`/`GET /v2/<name>/manifests/<reference>`: resolved, decided and audited before the first byte. */
export function manifestRoute(ctx: RouteContext) {
  const { service, recorder } = ctx;
  return async function serveManifest(
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
  };
}
