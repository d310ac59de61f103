import Fastify, { LogController } from 'fastify';
import type { FastifyBaseLogger, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { isRegistryError } from '../../oci/index.ts';
import type { Identity } from '../auth.ts';
import { ADMIN_CSS, renderAdminPage } from './page.ts';
import type { AdminView } from './page.ts';

export interface AdminServerOptions {
  /** Authenticates a request (the API's {@link PullAuth}, or one on the admin's own htpasswd). */
  authenticate: (request: FastifyRequest) => Promise<Identity | undefined>;
  /** Whether an authenticated identity may see the page. */
  allowed: (identity: Identity) => boolean;
  view: () => Promise<AdminView>;
  logger: Logger;
}

/**
 * Strict: no script at all, styles only from this origin, nothing framed or posted. The chart is
 * inline SVG (markup, not script), so it needs no exception.
 */
const CSP =
  "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/**
 * The read-only admin listener (`admin.listen`): the inventory page, its stylesheet and the same data
 * as JSON. Only GET; every request authenticated; nothing here changes state.
 */
export function buildAdminServer(options: AdminServerOptions): FastifyInstance {
  const loggerInstance: FastifyBaseLogger = options.logger;
  const app = Fastify({
    loggerInstance,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: 1024,
  });
  app.addHook('onRequest', async (request, reply) => {
    void reply.headers({
      'content-security-policy': CSP,
      'x-content-type-options': 'nosniff',
      'referrer-policy': 'no-referrer',
      'cache-control': 'no-store',
      'x-frame-options': 'DENY',
    });
    if (request.url === '/healthz') return;
    let identity: Identity | undefined;
    try {
      identity = await options.authenticate(request);
    } catch (error) {
      if (isRegistryError(error) && error.code === 'TOOMANYREQUESTS')
        return deny(reply, 429, 'too many failed attempts');
      return challenge(reply);
    }
    if (identity === undefined) return challenge(reply);
    if (!options.allowed(identity)) return deny(reply, 403, `${identity.label} may not view the admin page`);
  });
  app.get('/', async (_request, reply) =>
    reply.type('text/html; charset=utf-8').send(renderAdminPage(await options.view())),
  );
  app.get('/admin.css', (_request, reply) => reply.type('text/css; charset=utf-8').send(ADMIN_CSS));
  app.get('/inventory.json', async (_request, reply) => {
    const v = await options.view();
    return reply.send({ ...v.inventory, cacheStore: v.cache, generatedAt: v.now.toISOString() });
  });
  // Browsers ask for it on every page: an empty answer, not a 404 in the console.
  app.get('/favicon.ico', (_request, reply) => reply.code(204).send());
  app.get('/healthz', (_request, reply) => reply.send({ status: 'ok' }));
  return app;
}

function challenge(reply: FastifyReply): FastifyReply {
  return reply
    .code(401)
    .header('www-authenticate', 'Basic realm="pullwarden admin", charset="UTF-8"')
    .type('text/plain; charset=utf-8')
    .send('authentication required\n');
}

function deny(reply: FastifyReply, status: number, message: string): FastifyReply {
  return reply.code(status).type('text/plain; charset=utf-8').send(`${message}\n`);
}
