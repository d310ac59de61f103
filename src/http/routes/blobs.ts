import type { ServerResponse } from 'node:http';
import { pipeline } from 'node:stream/promises';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { auditedBlobStream, pullRequest } from '../audit.ts';
import { parseRange } from '../range.ts';
import type { RegistryRoute } from '../routing.ts';
import { pullFactsOf } from './context.ts';
import type { RequestFacts, RouteContext } from './context.ts';

/** `HEAD`/`GET /v2/<name>/blobs/<digest>`: a HEAD never opens a body; a GET streams (Range too). */
export function blobRoute(ctx: RouteContext) {
  const { service, pulls, metrics } = ctx;
  return async function serveBlob(
    route: Extract<RegistryRoute, { kind: 'blob' }>,
    request: FastifyRequest,
    reply: FastifyReply,
    f: RequestFacts,
  ): Promise<unknown> {
    f.digest = route.digest;
    const a = pullFactsOf(f);
    pulls?.followTag(a, request.ip);
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
      if (pulls) await pulls.record(a, pullRequest(request, reply.elapsedTime), { status: 200, bytes: 0 });
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
      if (handle.recycle) recycleWrittenChunks(reply.raw, handle.recycle);
      const label = handle.state;
      stream.on('end', () => metrics.blobBytesServed.inc({ result: label }, f.bytes ?? 0));
      if (!pulls) return await reply.send(stream);
      // The last chunk waits for the blob's audit event to be durable.
      const status = range ? 206 : 200;
      const audited = auditedBlobStream(pulls, request, reply.raw, () => reply.elapsedTime, a, status);
      // pipeline destroys each stream when another fails: a cache read that fails destroys `audited`
      // with its error, which Fastify turns into an error answer while no header is out and into a
      // cut connection after; a client that goes away destroys `audited` (Fastify) and so the cache
      // read, never the fill, which other requests may be following. The rejection carries nothing
      // those paths do not already handle.
      pipeline(stream, audited).catch(() => undefined);
      return await reply.send(audited);
    } catch (err) {
      handle.release();
      throw err;
    }
  };
}

/**
 * Reports each chunk this response wrote to `recycle` once the socket took all of it (the write's
 * callback without error), so the store reads into that buffer again instead of allocating another.
 * A failed write (client gone, response destroyed) reports nothing: its buffer is left to the GC.
 */
function recycleWrittenChunks(res: ServerResponse, recycle: (chunk: Uint8Array) => void): void {
  const write = res.write.bind(res) as (chunk: unknown, encoding: unknown, callback: unknown) => boolean;
  const recycling = (chunk: unknown, encoding?: unknown, callback?: unknown): boolean => {
    const done = typeof encoding === 'function' ? encoding : callback;
    const enc = typeof encoding === 'function' ? undefined : encoding;
    if (!(chunk instanceof Uint8Array)) return write(chunk, enc, done);
    return write(chunk, enc, (err?: Error | null) => {
      if (!err) recycle(chunk);
      if (typeof done === 'function') (done as (err?: Error | null) => void)(err);
    });
  };
  res.write = recycling as ServerResponse['write'];
}
