/**
 * The composition root: the one place that builds the adapters (upstream clients, blob store, metadata
 * store), wires them into the service and the HTTP server, and tears them down in order.
 */
import { access, constants, mkdir } from 'node:fs/promises';
import { pino } from 'pino';
import type { Logger } from 'pino';
import type { FastifyInstance } from 'fastify';
import { FsBlobStore } from './cache/index.ts';
import type { LoadedConfig } from './config/index.ts';
import { buildHttpServer } from './http/index.ts';
import { openMetadataStore } from './metadata/index.ts';
import type { MetadataStore } from './metadata/index.ts';
import { Metrics, RegistryService } from './service/index.ts';
import type { UpstreamEntry } from './service/index.ts';
import { UndiciUpstream } from './upstream/index.ts';

export interface App {
  http: FastifyInstance;
  service: RegistryService;
  metrics: Metrics;
  blobs: FsBlobStore;
  metadata: MetadataStore;
  logger: Logger;
  /** Stop accepting requests, drain the ones in flight, wait for cache fills, close stores. */
  close(): Promise<void>;
}

export interface BuildOptions {
  logger?: Logger;
  /** Disable process-wide default metrics (tests build many apps in one process). */
  defaultMetrics?: boolean;
}

/** Paths and keys that must never reach a log line. */
export const redactPaths = [
  'req.headers.authorization',
  'headers.authorization',
  'authorization',
  'password',
  'token',
  '*.password',
  '*.token',
  'config.upstreams.*.password',
];

export function createLogger(level: string): Logger {
  return pino({
    level,
    redact: { paths: redactPaths, censor: '[redacted]' },
    base: { service: 'pullwarden' },
  });
}

export async function buildApp(config: LoadedConfig, options: BuildOptions = {}): Promise<App> {
  const logger = options.logger ?? createLogger(config.log.level);
  const metrics = new Metrics({ defaultMetrics: options.defaultMetrics ?? true });
  await mkdir(config.storage.dir, { recursive: true });

  const blobs = new FsBlobStore({
    dir: config.storage.dir,
    maxBytes: config.storage.maxBytes,
    logger: logger.child({ module: 'cache' }),
  });
  await blobs.init();

  const metadataOptions: Parameters<typeof openMetadataStore>[0] = {
    url: config.metadata.url,
    namespace: config.metadata.namespace,
    logger: logger.child({ module: 'metadata' }),
  };
  if (config.metadata.password !== undefined) metadataOptions.password = config.metadata.password;
  const metadata = await openMetadataStore(metadataOptions);

  const upstreams = new Map<string, UpstreamEntry>();
  const aliases = new Map<string, string>();
  for (const [host, upstreamConfig] of Object.entries(config.upstreams)) {
    const upstream = new UndiciUpstream({
      host,
      config: upstreamConfig,
      maxManifestBytes: config.server.maxManifestBytes,
      logger: logger.child({ module: 'upstream', upstream: host }),
      onRequest: (info) => {
        metrics.upstreamRequests.inc({
          upstream: host,
          method: info.method,
          kind: info.kind,
          status: String(info.status),
        });
        metrics.upstreamDuration.observe({ upstream: host, kind: info.kind }, info.durationMs / 1000);
      },
    });
    for (const alias of upstreamConfig.aliases) aliases.set(alias, host);
    upstreams.set(host, {
      upstream,
      tagTTL: upstreamConfig.tagTTL,
      staleIfError: upstreamConfig.staleIfError,
    });
  }

  const service = new RegistryService({
    upstreams,
    aliases,
    blobs,
    metadata,
    logger,
    metrics,
    maxManifestBytes: config.server.maxManifestBytes,
  });

  let closing = false;
  const http = buildHttpServer({
    service,
    logger,
    metrics,
    defaultUpstream: config.defaultUpstream,
    trustProxy: config.server.trustProxy,
    ready: async () => {
      if (closing) throw new Error('shutting down');
      await access(config.storage.dir, constants.W_OK);
      await metadata.ping();
    },
  });
  metrics.observeCache(() => blobs.stats());

  return {
    http,
    service,
    metrics,
    blobs,
    metadata,
    logger,
    async close() {
      closing = true;
      // Drain requests in flight; past the grace period, cut what is left (a stuck client must not
      // hold a rolling update hostage).
      const grace = setTimeout(() => http.server.closeAllConnections(), config.server.shutdownGrace);
      grace.unref();
      http.server.closeIdleConnections();
      await http.close();
      clearTimeout(grace);
      await blobs.close();
      await Promise.allSettled([...upstreams.values()].map((u) => u.upstream.close()));
      await metadata.close();
    },
  };
}

export interface ServerHandle {
  /** `http://host:port` the server listens on. */
  address: string;
  app: App;
  close(): Promise<void>;
}

/** Build the app and listen on `config.listen`. */
export async function startServer(config: LoadedConfig, options: BuildOptions = {}): Promise<ServerHandle> {
  const app = await buildApp(config, options);
  const { host, port } = splitListen(config.listen);
  try {
    await app.http.listen({ host, port });
  } catch (err) {
    await app.close();
    throw err;
  }
  const addr = app.http.server.address();
  const bound = typeof addr === 'object' && addr !== null ? addr.port : port;
  const shownHost = host.includes(':') ? `[${host}]` : host;
  const address = `http://${shownHost}:${bound}`;
  app.logger.info(
    { address, upstreams: Object.keys(config.upstreams), source: config.source },
    'pullwarden listening',
  );
  return { address, app, close: () => app.close() };
}

export function splitListen(listen: string): { host: string; port: number } {
  const i = listen.lastIndexOf(':');
  let host = listen.slice(0, i);
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  return { host, port: Number(listen.slice(i + 1)) };
}
