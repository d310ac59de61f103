import type { FastifyInstance } from 'fastify';
import { RegistryError } from '../../oci/index.ts';
import type { RouteContext } from './context.ts';

export interface HealthRouteOptions {
  /** Resolves when the process can serve pulls; rejects with the reason otherwise. */
  ready: () => Promise<void>;
  /** Conditions that do not stop pulls but need an operator (disk below its reserve). */
  warnings?: (() => string[]) | undefined;
  /** `/metrics` on this listener: `'off'` (404), `'auth'` (credentials `/v2` accepts) or `'open'`. */
  metricsMode: 'off' | 'auth' | 'open';
}

/** `/healthz`, `/readyz` and `/metrics` of the registry listener. */
export function registerHealthRoutes(
  app: FastifyInstance,
  ctx: RouteContext,
  options: HealthRouteOptions,
): void {
  const { facts, metrics, auth } = ctx;
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
    if (options.metricsMode === 'off') throw new RegistryError('NAME_UNKNOWN', 'unknown path');
    if (options.metricsMode === 'auth' && auth) {
      const identity = await auth.authenticate(request);
      if (identity) facts.set(request, { route: 'metrics', identity: identity.label });
      auth.challengeBase(identity);
    }
    return reply.type(metrics.registry.contentType).send(await metrics.render());
  });
}
