import { createServer } from 'node:net';

/**
 * Asks the kernel for a free TCP port on `host` by listening on port 0 and closing again.
 *
 * For child processes that need a port in their config file before they start (distribution,
 * containerd's clients). There is a small window in which another process could take the port;
 * callers that start a daemon on it should treat "address already in use" as a reason to retry.
 */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  return await new Promise<number>((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen({ host, port: 0, exclusive: true }, () => {
      const address = server.address();
      if (address === null || typeof address === 'string') {
        server.close();
        reject(new Error('listen(0) did not return a TCP address'));
        return;
      }
      server.close(() => resolve(address.port));
    });
  });
}
