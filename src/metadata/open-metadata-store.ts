import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { Keyv } from 'keyv';
import type { Logger } from 'pino';
import { KeyvMetadataStore } from './keyv-metadata-store.ts';
import { NodeSqliteStore } from './node-sqlite-store.ts';

export interface OpenMetadataStoreOptions {
  /** `sqlite://PATH` (relative to the working directory, or `sqlite:///abs/path`) or `redis[s]://HOST:PORT[/DB]`. */
  url: string;
  /** Key prefix (config `metadata.namespace`). */
  namespace: string;
  /** Redis password; overrides one in the URL. */
  password?: string;
  logger?: Logger;
  /** Longest a single call may take before it rejects. Default 5000. */
  operationTimeoutMs?: number;
  /** Longest the initial Redis connection (TCP + handshake + PING) may take. Default 5000. */
  connectTimeoutMs?: number;
}

/**
 * Opens the metadata store named by `url`. Fails fast with a clear message when the store cannot be
 * used (unwritable SQLite path, Redis down or refusing the password); once open, failures surface
 * as rejected calls (see {@link KeyvMetadataStore}) and Redis reconnects in the background.
 */
export async function openMetadataStore(options: OpenMetadataStoreOptions): Promise<KeyvMetadataStore> {
  const { url } = options;
  if (url.startsWith('sqlite://')) return openSqlite(url.slice('sqlite://'.length), options);
  if (url.startsWith('redis://') || url.startsWith('rediss://')) return openRedis(url, options);
  throw new Error(`metadata.url: expected sqlite://PATH or redis://HOST:PORT, got "${redactUrl(url)}"`);
}

function openSqlite(path: string, options: OpenMetadataStoreOptions): KeyvMetadataStore {
  if (path === '') throw new Error('metadata.url: sqlite:// needs a path');
  let store: NodeSqliteStore;
  try {
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
    store = new NodeSqliteStore({ path });
  } catch (err) {
    throw new Error(`cannot open the metadata database ${path}: ${messageOf(err)}`, { cause: err });
  }
  const keyv = new Keyv({ store, throwOnErrors: true, useKeyPrefix: false });
  options.logger?.info({ path }, 'metadata store open (sqlite)');
  return new KeyvMetadataStore({
    keyv,
    namespace: options.namespace,
    ...(options.logger === undefined ? {} : { logger: options.logger }),
    ...(options.operationTimeoutMs === undefined ? {} : { operationTimeoutMs: options.operationTimeoutMs }),
  });
}

async function openRedis(url: string, options: OpenMetadataStoreOptions): Promise<KeyvMetadataStore> {
  const where = redactUrl(url);
  const log = options.logger;
  const operationTimeoutMs = options.operationTimeoutMs ?? 5000;
  const connectTimeoutMs = options.connectTimeoutMs ?? 5000;
  let everReady = false;
  let healthy = true;

  // Loaded only for a Redis store: the client is ~10 MB of a SQLite deployment's RSS that it never uses.
  const { default: KeyvRedis, createClient } = await import('@keyv/redis');
  const client = createClient({
    url,
    ...(options.password === undefined ? {} : { password: options.password }),
    // Without this, commands issued while the connection is down wait in a queue until Redis comes
    // back — i.e. requests hang. We want them to fail at once so the service can answer 503.
    disableOfflineQueue: true,
    // Bounds commands stuck on a half-open connection (no RST, e.g. a network partition).
    commandOptions: { timeout: operationTimeoutMs },
    socket: {
      connectTimeout: connectTimeoutMs,
      // At startup, give up on the first failure (a clear error beats a silent retry loop); after
      // the first connection, reconnect forever with capped backoff.
      reconnectStrategy: (retries: number, cause: Error) =>
        everReady ? Math.min(2 ** retries * 100, 2000) + Math.floor(Math.random() * 100) : cause,
    },
  });
  // node-redis emits 'error' on every failed (re)connect; an EventEmitter 'error' without a listener
  // kills the process. Log the transition to unhealthy once, and the recovery.
  client.on('error', (err: unknown) => {
    if (everReady && healthy) {
      healthy = false;
      log?.warn({ err, url: where }, 'metadata store (redis) connection lost; retrying');
    }
  });
  client.on('ready', () => {
    if (everReady && !healthy) log?.info({ url: where }, 'metadata store (redis) reconnected');
    healthy = true;
  });

  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      (async () => {
        await client.connect();
        // A real round trip: connect() alone may succeed against something that is not Redis, or
        // before AUTH is checked.
        await client.ping();
      })(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          reject(new Error(`no answer within ${connectTimeoutMs}ms`));
        }, connectTimeoutMs);
      }),
    ]);
    everReady = true;
  } catch (err) {
    // After a failed first connect the client has already closed itself; destroy() would throw.
    if (client.isOpen) client.destroy();
    throw new Error(`cannot connect to the metadata store at ${where}: ${messageOf(err)}`, { cause: err });
  } finally {
    clearTimeout(timer);
  }

  const adapter = new KeyvRedis(client, { throwOnErrors: true, throwOnConnectError: true });
  const keyv = new Keyv({ store: adapter, throwOnErrors: true, useKeyPrefix: false });
  log?.info({ url: where }, 'metadata store open (redis)');
  return new KeyvMetadataStore({
    keyv,
    namespace: options.namespace,
    operationTimeoutMs,
    ...(log === undefined ? {} : { logger: log }),
    close: async () => {
      // close() waits for commands in flight (QUIT semantics); while Redis is unreachable there is
      // nothing to wait for, and close() would wait for a reconnect that may never come.
      if (client.isReady) await client.close();
      else if (client.isOpen) client.destroy();
    },
  });
}

/** The URL without credentials, for messages and logs. */
function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname === '/' ? '' : u.pathname}`;
  } catch {
    return url.replace(/\/\/[^@/]*@/, '//');
  }
}

function messageOf(err: unknown): string {
  if (err instanceof AggregateError && err.errors.length > 0) {
    return err.errors.map((e: unknown) => messageOf(e)).join('; ');
  }
  if (err instanceof Error) return err.message !== '' ? err.message : err.name;
  return String(err);
}
