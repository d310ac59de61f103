/**
 * The ceiling of pullwarden's HTTP stack for row m: a bare Fastify app (same major, same node flags)
 * that answers `HEAD /v2/<name>/manifests/<tag>` with the headers a manifest HEAD carries and does
 * nothing else — no routing, auth, metadata, policy, audit or logging. Prints its port when ready.
 */
import { createHash } from 'node:crypto';
import Fastify from 'fastify';

const digest = `sha256:${createHash('sha256').update('bench').digest('hex')}`;
const app = Fastify({ logger: false, exposeHeadRoutes: false });
app.head('/v2/*', (_request, reply) => {
  void reply
    .header('Content-Type', 'application/vnd.oci.image.manifest.v1+json')
    .header('Docker-Content-Digest', digest)
    .header('Content-Length', '1234')
    .send();
});
const address = await app.listen({ host: '127.0.0.1', port: 0 });
process.stdout.write(`${address}\n`);
