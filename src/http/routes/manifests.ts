import type { FastifyReply, FastifyRequest } from 'fastify';
import { parseAccept } from '../../oci/index.ts';
import { pullRequest } from '../audit.ts';
import type { RegistryRoute } from '../routing.ts';
import { pullFactsOf } from './context.ts';
import type { RequestFacts, RouteContext } from './context.ts';

/** Accept headers parsed so far: a fleet's clients send a handful of distinct ones. */
const acceptLists = new Map<string, readonly string[]>();
const ACCEPT_LISTS_LIMIT = 256;
/** Longest header kept in {@link acceptLists} (a real client's is a few hundred bytes). */
const ACCEPT_MEMO_MAX_LENGTH = 1024;

/** {@link parseAccept}, parsed once per distinct header. */
function acceptList(header: string | string[] | undefined): readonly string[] {
  if (typeof header !== 'string' || header.length > ACCEPT_MEMO_MAX_LENGTH) return parseAccept(header);
  let list = acceptLists.get(header);
  if (list === undefined) {
    list = Object.freeze(parseAccept(header));
    if (acceptLists.size >= ACCEPT_LISTS_LIMIT) acceptLists.clear();
    acceptLists.set(header, list);
  }
  return list;
}

/** `HEAD`/`GET /v2/<name>/manifests/<reference>`: resolved, decided and audited before the first byte. */
export function manifestRoute(ctx: RouteContext) {
  const { service, pulls } = ctx;
  return async function serveManifest(
    route: Extract<RegistryRoute, { kind: 'manifest' }>,
    request: FastifyRequest,
    reply: FastifyReply,
    f: RequestFacts,
  ): Promise<unknown> {
    f.reference = route.reference.kind === 'tag' ? route.reference.tag : route.reference.digest;
    const a = pullFactsOf(f);
    pulls?.followTag(a, request.ip);
    const withBody = request.method === 'GET';
    const result = await service.resolveManifest(route.target, route.reference, {
      accept: acceptList(request.headers.accept),
      withBody,
    });
    f.digest = result.digest;
    f.cache = result.cache;
    f.bytes = withBody ? result.size : 0;
    if (pulls) {
      pulls.manifestAnswered(a, result, request.ip);
      await pulls.record(a, pullRequest(request, reply.elapsedTime), { status: 200, bytes: f.bytes });
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
