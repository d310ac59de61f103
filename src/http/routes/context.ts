import type { FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { RegistryError } from '../../oci/index.ts';
import type { CacheState } from '../../shared/index.ts';
import type { Metrics, PullAudit, PullFacts, RegistryService } from '../../service/index.ts';
import type { PullAuth } from '../auth.ts';
import type { RoutingConfig } from '../routing.ts';

/** What one request did, for its log line and metrics. */
export interface RequestFacts {
  route: string;
  upstream?: string;
  repository?: string;
  reference?: string;
  digest?: string;
  cache?: CacheState;
  bytes?: number;
  /** The audit facts of a manifest or blob request (written before its response completes). */
  audit?: PullFacts;
  /** Authenticated identity label (user:…, token:…, cert:…). */
  identity?: string;
}

/** What every route module shares: the service, the request facts and the audit trail. */
export interface RouteContext {
  service: RegistryService;
  metrics: Metrics;
  log: Logger;
  routing: RoutingConfig;
  /** Facts of each request, read by the access log line, the error handler and the audit trail. */
  facts: WeakMap<FastifyRequest, RequestFacts>;
  /** The audit trail; undefined when no audit events are written. */
  pulls: PullAudit | undefined;
  /** Pull authentication when it is enabled; undefined when every request is anonymous and allowed. */
  auth: PullAuth | undefined;
  /** Whether the server is shutting down (new requests are refused, those in flight finish). */
  closing: () => boolean;
}

export const API_VERSION_HEADER = 'Docker-Distribution-API-Version';
export const API_VERSION = 'registry/2.0';

export function unsupported(): RegistryError {
  return new RegistryError(
    'UNSUPPORTED',
    'this is a read-only pull-through registry: the operation is not supported',
  );
}

/** The audit facts the registry route set for a request that names a repository. */
export function pullFactsOf(f: RequestFacts): PullFacts {
  if (f.audit === undefined) throw new Error('a route that names a repository has no audit facts');
  return f.audit;
}
