import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

/**
 * Cut clients that stop reading a response (`server.sendTimeout`, nginx's `send_timeout`).
 *
 * A client that asks for a 2 GiB layer and then reads nothing (or a few bytes a minute) holds a
 * socket, a cache reader and the fill's memory for as long as it likes: the request timeouts only
 * bound how slowly a request arrives. Node's socket inactivity timer (`server.timeout`) fires when no
 * byte moved in either direction for `ms`, and does not fire while a write still progresses; here it
 * cuts the connection only when a response is waiting on the client (bytes queued that it has not
 * taken). A response the proxy itself is still preparing (a slow upstream, a signature check) is left
 * alone: the upstream timeouts bound those. Idle keep-alive sockets are closed as Node would.
 */
export function limitSlowReaders(server: Server, ms: number, onCut: () => void): void {
  const current = new WeakMap<Socket, ServerResponse>();
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    current.set(req.socket, res);
    res.once('close', () => {
      if (current.get(req.socket) === res) current.delete(req.socket);
    });
  });
  server.timeout = ms;
  // With a listener here Node no longer destroys timed-out sockets itself: every path decides.
  server.on('timeout', (socket: Socket) => {
    const res = current.get(socket);
    if (res === undefined) {
      // Between requests (keep-alive) or before the first one: what Node does without a listener.
      socket.destroy();
      return;
    }
    const waitingOnClient = res.writableNeedDrain || socket.writableLength > 0;
    if (!waitingOnClient) return;
    onCut();
    socket.destroy();
  });
}

/**
 * Count clients cut by `server.headersTimeout` / `requestTimeout` (Node answers them 408 itself and
 * reports them as a client error; this only observes, Fastify's own handler still answers).
 */
export function countRequestTimeouts(server: Server, onTimeout: () => void): void {
  server.on('clientError', (err: NodeJS.ErrnoException) => {
    if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') onTimeout();
  });
}
