/**
 * A loopback "canary" listener for SSRF tests: it counts every TCP connection it accepts. A refused
 * redirect, realm or connection must leave it at zero; a test that allows the host can make it answer.
 */
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Canary {
  port: number;
  /** `127.0.0.1:<port>` or `[::1]:<port>`. */
  host: string;
  /** TCP connections accepted so far. */
  connections: number;
  /** Requests with their Authorization header. */
  requests: { url: string; authorization: string | undefined }[];
  /** What every request is answered with (404 until set). */
  respond:
    | ((url: string, authorization: string | undefined) => Promise<{ status: number; body: Buffer }>)
    | undefined;
  close(): Promise<void>;
}

/** Start a canary on `address`, port 0. */
export async function startCanary(address: '127.0.0.1' | '::1' = '127.0.0.1'): Promise<Canary> {
  const canary: Canary = {
    port: 0,
    host: '',
    connections: 0,
    requests: [],
    respond: undefined,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
  const server: Server = createServer((req, res) => {
    const authorization = req.headers.authorization;
    canary.requests.push({ url: req.url ?? '', authorization });
    void (async () => {
      const answer = (await canary.respond?.(req.url ?? '', authorization)) ?? {
        status: 404,
        body: Buffer.from('canary'),
      };
      res.writeHead(answer.status, { 'content-length': answer.body.length }).end(answer.body);
    })();
  });
  server.on('connection', () => {
    canary.connections++;
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, address, () => resolve());
  });
  canary.port = (server.address() as AddressInfo).port;
  canary.host = address === '::1' ? `[::1]:${canary.port}` : `127.0.0.1:${canary.port}`;
  return canary;
}
