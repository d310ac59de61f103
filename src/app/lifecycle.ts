/**
 * The process around the composition root: listeners (registry, metrics, admin), reload of the policy
 * on SIGHUP and when the config file changes, TLS material and htpasswd re-read when they change,
 * graceful shutdown in order, and the choice between one process and a cluster (src/cluster/).
 */
import type { FSWatcher } from 'node:fs';
import type { Logger } from 'pino';
import type { FastifyInstance, FastifyListenOptions } from 'fastify';
import { EMBEDDED_SOURCE, loadConfig, splitListen, watchFile } from '../config/index.ts';
import type { LoadedConfig } from '../config/index.ts';
import { buildAdminServer, buildMetricsServer, PullAuth } from '../http/index.ts';
import { buildInventory } from '../service/index.ts';
import { isClusterWorker, resolveWorkers, startCluster, workerBindings } from '../cluster/index.ts';
import { buildApp } from './compose.ts';
import type { App, BuildOptions } from './compose.ts';
import { auditTrailDirs } from './inventory.ts';
import { createLogger } from './logger.ts';
import { readTlsMaterial } from './tls.ts';

/** A running deployment as the process sees it: what `pullwarden serve` signals and waits on. */
export interface DeploymentHandle {
  /** `http://host:port` the server listens on. */
  address: string;
  /** Re-read the config file and apply its policy (SIGHUP). A broken file keeps the last good policy. */
  reload?(): Promise<void>;
  /** Stop accepting connections, finish requests in flight, release stores. */
  close(): Promise<void>;
  /** A cluster worker: the primary handles signals; resolves with the exit code after its shutdown. */
  managed?: Promise<number>;
}

/** This process's server ({@link startServer}): the app it runs and the addresses of its listeners. */
export interface ServerHandle extends DeploymentHandle {
  /** `http://host:port` of the separate metrics listener, when `metrics.listen` is set. */
  metricsAddress?: string;
  /** `http://host:port` of the admin page, when `admin.listen` is set. */
  adminAddress?: string;
  app: App;
  reload(): Promise<void>;
}

/** Build the app and listen on `config.listen`. */
export async function startServer(config: LoadedConfig, options: BuildOptions = {}): Promise<ServerHandle> {
  const app = await buildApp(config, options);
  const { host, port: configuredPort } = splitListen(config.listen);
  // reuseport: this worker listens itself (SO_REUSEPORT) instead of taking connections from the primary.
  const reusePort = options.cluster !== undefined && config.server.balance === 'reuseport';
  const port = (reusePort ? options.cluster?.port : undefined) ?? configuredPort;
  try {
    // Fastify hands these to net.Server.listen; its own option type does not list `reusePort` yet.
    const listenOptions: FastifyListenOptions & { reusePort?: boolean } = { host, port };
    if (reusePort) listenOptions.reusePort = true;
    await app.http.listen(listenOptions);
  } catch (err) {
    await app.close();
    throw err;
  }
  const address = boundAddress(app.http, host, port, config.server.tls ? 'https' : 'http');
  let metricsServer: FastifyInstance | undefined;
  let metricsAddress: string | undefined;
  if (config.metrics.listen !== undefined) {
    const m = splitListen(config.metrics.listen);
    metricsServer = buildMetricsServer({ metrics: app.metrics, logger: app.logger });
    try {
      await metricsServer.listen({ host: m.host, port: m.port });
    } catch (err) {
      await app.close();
      throw err;
    }
    metricsAddress = boundAddress(metricsServer, m.host, m.port, 'http');
  } else if (!app.auth.enabled || !config.metrics.auth) {
    app.logger.warn(
      {},
      '/metrics is served to anyone who can reach the registry port; set metrics.listen to move it',
    );
  }
  let adminServer: FastifyInstance | undefined;
  let adminAuth: PullAuth | undefined;
  let adminAddress: string | undefined;
  const admin = config.admin;
  if (admin.listen !== undefined) {
    const a = splitListen(admin.listen);
    try {
      // Own credentials, or the API's: then only the listed identities.
      adminAuth =
        admin.htpasswd === undefined
          ? undefined
          : await PullAuth.load({ htpasswd: admin.htpasswd, users: {}, tokens: [] });
      const auth = adminAuth ?? app.auth;
      const identities = new Set(admin.identities ?? []);
      adminServer = buildAdminServer({
        authenticate: (request) => auth.authenticate(request),
        allowed: (identity) => adminAuth !== undefined || identities.has(identity.label),
        view: async () => {
          const now = new Date();
          const stats = app.blobs.stats();
          const inventory = await buildInventory(
            {
              auditDir: await auditTrailDirs(config),
              readBlob: (digest, max) => app.blobs.readBytes(digest, max).catch(() => undefined),
            },
            { since: new Date(now.getTime() - admin.window), now },
          );
          return {
            inventory,
            cache: { bytes: stats.bytes, blobs: stats.blobs },
            windowMs: admin.window,
            now,
          };
        },
        logger: app.logger.child({ module: 'admin' }),
      });
      await adminServer.listen({ host: a.host, port: a.port });
    } catch (err) {
      await adminServer?.close();
      await adminAuth?.close();
      await metricsServer?.close();
      await app.close();
      throw err;
    }
    adminAddress = boundAddress(adminServer, a.host, a.port, 'http');
    if (!/^(127\.|\[?::1\]?$|localhost$)/.test(a.host)) {
      app.logger.warn(
        { admin: adminAddress },
        'the admin page is plain HTTP on a non-loopback address: credentials cross the network in the clear; put it behind TLS',
      );
    }
  }
  app.logger.info(
    {
      address,
      ...(adminAddress === undefined ? {} : { admin: adminAddress }),
      upstreams: Object.keys(config.upstreams),
      source: config.source,
      policyHash: app.gate.context.engine.hash,
      ...(metricsAddress === undefined ? {} : { metrics: metricsAddress }),
    },
    'pullwarden listening',
  );

  let chain = Promise.resolve();
  const reload = (): Promise<void> => {
    // Reloads run one after another, so two quick edits cannot apply out of order.
    chain = chain.then(async () => {
      if (config.source === EMBEDDED_SOURCE) return;
      try {
        await app.reload(await loadConfig(config.source));
      } catch (err) {
        app.logger.error(
          { err: err instanceof Error ? err.message : String(err), source: config.source },
          'config reload failed; keeping the last good policy',
        );
      }
    });
    return chain;
  };
  let watcher: FSWatcher | undefined;
  const worker = options.cluster;
  if (worker !== undefined) {
    // The primary watches the file and handles SIGHUP; it tells every worker once the file is good.
    worker.channel.onReload(() => void reload());
    worker.channel.onProbe(() => app.checkReady());
  } else if (config.source !== EMBEDDED_SOURCE) {
    watcher = watchFile(
      config.source,
      () => void reload(),
      (err) => app.logger.warn({ err: err.message }, 'config file watch failed'),
    );
  }
  // TLS material and the htpasswd file are re-read when they change (cert-manager renewals, new users).
  const watchers: FSWatcher[] = [];
  const tls = config.server.tls;
  if (tls) {
    const reloadTls = async () => {
      try {
        const server = app.http.server as unknown as { setSecureContext(o: Record<string, Buffer>): void };
        server.setSecureContext(await readTlsMaterial(tls));
        app.logger.info({ certFile: tls.certFile }, 'TLS certificate reloaded');
      } catch (err) {
        app.logger.error(
          { err: err instanceof Error ? err.message : String(err) },
          'TLS reload failed; keeping the old certificate',
        );
      }
    };
    for (const f of new Set([tls.certFile, tls.keyFile, ...(tls.clientCAFile ? [tls.clientCAFile] : [])])) {
      watchers.push(watchPath(f, reloadTls, app.logger));
    }
  }
  const htpasswd = config.auth.htpasswd;
  if (htpasswd !== undefined) {
    watchers.push(
      watchPath(
        htpasswd,
        async () => {
          try {
            await app.auth.reload();
            app.logger.info({ file: htpasswd }, 'htpasswd reloaded');
          } catch (err) {
            app.logger.error(
              { err: err instanceof Error ? err.message : String(err) },
              'htpasswd reload failed; keeping the old users',
            );
          }
        },
        app.logger,
      ),
    );
  }
  worker?.channel.notify({ pw: 'up', address });
  return {
    address,
    ...(metricsAddress === undefined ? {} : { metricsAddress }),
    ...(adminAddress === undefined ? {} : { adminAddress }),
    app,
    reload,
    close: async () => {
      watcher?.close();
      for (const w of watchers) w.close();
      await chain;
      await metricsServer?.close();
      await adminServer?.close();
      await adminAuth?.close();
      await app.close();
    },
  };
}

/**
 * Start what `server.workers` asks for: this process serving alone (1), or a cluster primary with
 * that many workers; in a worker (started by the primary), its share of the serving.
 */
export async function startDeployment(config: LoadedConfig): Promise<DeploymentHandle> {
  if (isClusterWorker()) {
    const cluster = workerBindings();
    const { promise: shutdown, resolve } = Promise.withResolvers<undefined>();
    cluster.channel.onShutdown(() => resolve(undefined));
    const handle = await startServer(config, { cluster });
    const managed = shutdown.then(() =>
      handle.close().then(
        () => 0,
        (err: unknown) => {
          handle.app.logger.error({ err }, 'worker shutdown failed');
          return 1;
        },
      ),
    );
    return { address: handle.address, reload: () => handle.reload(), close: () => handle.close(), managed };
  }
  const workers = resolveWorkers(config.server.workers);
  if (workers > 1) {
    return startCluster(config, { workers, logger: createLogger(config.log.level, config.log.timestamp) });
  }
  return startServer(config);
}

/** `scheme://host:port` a Fastify instance is bound to (the real port when `port` was 0). */
function boundAddress(server: FastifyInstance, host: string, port: number, scheme: string): string {
  const addr = server.server.address();
  const bound = typeof addr === 'object' && addr !== null ? addr.port : port;
  const shownHost = host.includes(':') ? `[${host}]` : host;
  return `${scheme}://${shownHost}:${bound}`;
}

/** Call `onChange` when `path` is written or replaced (see {@link watchFile}). */
function watchPath(path: string, onChange: () => Promise<void>, logger: Logger): FSWatcher {
  return watchFile(
    path,
    () => void onChange(),
    (err) => logger.warn({ err: err.message, path }, 'file watch failed'),
  );
}
