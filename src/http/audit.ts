import type { ServerResponse } from 'node:http';
import { Transform } from 'node:stream';
import type { TransformCallback } from 'node:stream';
import type { FastifyRequest } from 'fastify';
import type { PullAudit, PullFacts, PullRequest } from '../service/index.ts';

/**
 * The request facts of an audit event: the HTTP layer adds only these (which request, who, how it
 * ended); the facts of the pull itself are the service's ({@link PullFacts}).
 */
export function pullRequest(request: FastifyRequest, elapsedMs: number): PullRequest {
  return {
    requestId: request.id,
    client: request.ip,
    userAgent: request.headers['user-agent'],
    method: request.method,
    elapsedMs,
  };
}

/**
 * A pass-through for a blob body that holds back its last chunk until the blob's audit event is
 * durable: a client never holds a complete blob whose event could still be lost. Bytes are counted
 * as they pass, so the event has the exact count; a client that goes away gets an event too.
 */
export function auditedBlobStream(
  audit: PullAudit,
  request: FastifyRequest,
  response: ServerResponse,
  elapsed: () => number,
  facts: PullFacts,
  status: number,
): Transform {
  let held: Buffer | undefined;
  let sent = 0;
  let written = false;
  const write = async (bytes: number): Promise<void> => {
    if (written) return;
    written = true;
    await audit.record(facts, pullRequest(request, elapsed()), { status, bytes });
  };
  const stream = new Transform({
    transform(chunk: Buffer, _enc, done: TransformCallback) {
      if (held) {
        sent += held.length;
        this.push(held);
      }
      held = chunk;
      done();
    },
    flush: (done: TransformCallback) => {
      const last = held;
      held = undefined;
      write(sent + (last?.length ?? 0)).then(
        () => done(null, last),
        (err: unknown) => done(err instanceof Error ? err : new Error(String(err))),
      );
    },
  });
  // Aborted responses (client gone, upstream failure mid-stream): record what was actually sent.
  response.once('close', () => {
    if (!written) void write(sent).catch(() => undefined);
  });
  return stream;
}
