import type { FastifyReply, FastifyRequest } from 'fastify';
import type { RegistryRoute } from '../routing.ts';
import { pullRequest } from '../audit.ts';
import { queryParameters } from '../query.ts';
import type { QueryString } from '../query.ts';
import { pullFactsOf, unsupported } from './context.ts';
import type { RequestFacts, RouteContext } from './context.ts';

/**
 * `GET /v2/<name>/tags/list` and `GET /v2/<name>/referrers/<digest>`: answers that name what a
 * repository holds, listed only where its policy would let a pull through, and audited as answers.
 */
export function listingRoutes(ctx: RouteContext) {
  const { service, pulls } = ctx;

  /** The audit event of a tag list or referrers answer (durable before the answer is sent). */
  async function recordListing(
    request: FastifyRequest,
    reply: FastifyReply,
    f: RequestFacts,
    policy: string | undefined,
    bytes: number,
  ): Promise<void> {
    if (!pulls) return;
    const a = pullFactsOf(f);
    pulls.listed(a, policy);
    await pulls.record(a, pullRequest(request, reply.elapsedTime), { status: 200, bytes });
  }

  async function serveTags(
    route: Extract<RegistryRoute, { kind: 'tags' }>,
    request: FastifyRequest,
    reply: FastifyReply,
    f: RequestFacts,
    ns: string | undefined,
    q: QueryString,
  ): Promise<unknown> {
    if (request.method === 'HEAD') throw unsupported();
    const query: { n?: number; last?: string } = {};
    const n = q.single(queryParameters.n);
    const last = q.single(queryParameters.last);
    if (n !== undefined) query.n = Number(n);
    if (last !== undefined) query.last = last;
    const list = await service.listTags(route.target, query);
    f.bytes = list.body.length;
    await recordListing(request, reply, f, list.policy, list.body.length);
    if (list.link) {
      const next = rewriteLink(list.link, route.name, ns);
      if (next) reply.header('Link', next);
    }
    return reply.type('application/json').send(list.body);
  }

  async function serveReferrers(
    route: Extract<RegistryRoute, { kind: 'referrers' }>,
    request: FastifyRequest,
    reply: FastifyReply,
    f: RequestFacts,
    q: QueryString,
  ): Promise<unknown> {
    if (request.method === 'HEAD') throw unsupported();
    const artifactType = q.single(queryParameters.artifactType);
    const answer = await service.getReferrers(route.target, route.digest, artifactType);
    f.bytes = answer.body.length;
    await recordListing(request, reply, f, answer.policy, answer.body.length);
    if (answer.filtersApplied) reply.header('OCI-Filters-Applied', 'artifactType');
    return reply.type('application/vnd.oci.image.index.v1+json').send(answer.body);
  }

  return { serveTags, serveReferrers };
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
