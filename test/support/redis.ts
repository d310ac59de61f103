import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export interface RedisServer {
  /** redis://127.0.0.1:PORT (no credentials, even when started with a password). */
  url: string;
  port: number;
  /** Stops the server and removes its directory. Safe to call more than once. */
  stop(): Promise<void>;
}

export interface StartRedisOptions {
  /** Started with `--requirepass`. */
  password?: string;
  /** A fixed port, e.g. to restart a stopped server where its clients expect it. Default: a free one. */
  port?: number;
}

/** The binary to run; REDIS_SERVER overrides it (e.g. a build outside PATH). */
const REDIS_SERVER = process.env['REDIS_SERVER'] ?? 'redis-server';

/**
 * Starts a real, throwaway redis-server on 127.0.0.1 and a free port, without persistence, in a
 * temp directory, and waits until it answers PING. A missing binary is an error, not a skip: the
 * Redis backend is what scale-out relies on, so its tests must not silently disappear.
 */
export async function startRedis(options: StartRedisOptions = {}): Promise<RedisServer> {
  const dir = await mkdtemp(join(tmpdir(), 'pullwarden-redis-'));
  let lastError: unknown;
  // The free port is only reserved until we close the probe socket; retry if someone takes it.
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = options.port ?? (await freePort());
    const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'];
    args.push('--dir', dir, '--daemonize', 'no', '--loglevel', 'warning');
    if (options.password !== undefined) args.push('--requirepass', options.password);
    const child = spawn(REDIS_SERVER, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (chunk: string) => {
      stderr += chunk;
    });
    const exited = new Promise<Error>((resolve) => {
      child.once('error', (err: NodeJS.ErrnoException) => {
        resolve(
          err.code === 'ENOENT'
            ? new Error(
                `redis-server not found ("${REDIS_SERVER}"): the metadata suite needs a real Redis. ` +
                  'Install it (apt-get install redis-server) or set REDIS_SERVER to its path.',
              )
            : err,
        );
      });
      child.once('exit', (code, signal) => {
        resolve(new Error(`redis-server exited early (code ${code}, signal ${signal}): ${stderr.trim()}`));
      });
    });
    try {
      await Promise.race([waitForPong(port, 10_000), exited.then((err) => Promise.reject(err))]);
      return { url: `redis://127.0.0.1:${port}`, port, stop: stopper(child, dir) };
    } catch (err) {
      lastError = err;
      await kill(child);
      if (err instanceof Error && err.message.startsWith('redis-server not found')) break;
    }
  }
  await rm(dir, { recursive: true, force: true });
  throw lastError instanceof Error ? lastError : new Error(String(lastError));
}

function stopper(child: ChildProcess, dir: string): () => Promise<void> {
  let stopping: Promise<void> | undefined;
  return () => {
    stopping ??= (async () => {
      await kill(child);
      await rm(dir, { recursive: true, force: true });
    })();
    return stopping;
  };
}

async function kill(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('no TCP address');
  return address.port;
}

/** Polls with a raw inline PING until the server answers (+PONG, or -NOAUTH when a password is set). */
async function waitForPong(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await answersPing(port)) return;
    if (Date.now() > deadline)
      throw new Error(`redis-server on port ${port} did not answer PING within ${timeoutMs}ms`);
    await sleep(25);
  }
}

/** Sends one inline command to a Redis on 127.0.0.1 and resolves with the first reply line. */
export function redisCommand(port: number, command: string, timeoutMs = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    let reply = '';
    socket.setTimeout(timeoutMs, () => socket.destroy(new Error(`redis: no answer to ${command}`)));
    socket.once('error', reject);
    socket.once('connect', () => socket.write(`${command}\r\n`));
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      reply += chunk;
      if (reply.includes('\r\n')) {
        socket.destroy();
        resolve(reply.slice(0, reply.indexOf('\r\n')));
      }
    });
  });
}

/** Whether a Redis answers PING on `port` (+PONG, or -NOAUTH when a password is set). */
export function answersPing(port: number): Promise<boolean> {
  return redisCommand(port, 'PING', 1000).then(
    (reply) => reply.startsWith('+PONG') || reply.startsWith('-NOAUTH'),
    () => false,
  );
}
