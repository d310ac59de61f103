/**
 * The composition root: the one place that builds the adapters (upstream clients, blob store, metadata
 * store), wires them into the service and the HTTP server, and tears them down in order.
 */
import { watch } from 'node:fs';
import type { FSWatcher } from 'node:fs';
import { access, constants, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { pino } from 'pino';
import type { Logger } from 'pino';
import { logTimestamp } from './logger.ts';
import type { LogTimestamp } from './logger.ts';
import type { FastifyInstance } from 'fastify';
import { auditChainDirs, openAuditSink, RecentTags } from './audit/index.ts';
import type { MultiAuditSink } from './audit/index.ts';
import { DiskHeadroom, FsBlobStore, StorageLock } from './cache/index.ts';
import { EMBEDDED_SOURCE, loadConfig } from './config/index.ts';
import type { LoadedConfig } from './config/index.ts';
import { PolicyEngine } from './policy/index.ts';
import type { Decision, Policy } from './policy/index.ts';
import { normalizeRepository, parseImageReference } from './oci/index.ts';
import type { ManifestReference } from './oci/index.ts';
import { CachingAttestationReader, KevCatalog, TrustMaterialStore } from './trust/index.ts';
import {
  buildAdminServer,
  buildHttpServer,
  buildMetricsServer,
  canonicalHost,
  PullAuth,
} from './http/index.ts';
import { buildInventory } from './service/index.ts';
import { openMetadataStore } from './metadata/index.ts';
import type { MetadataStore } from './metadata/index.ts';
import { Metrics, RegistryService, TagGuard, TrustGate } from './service/index.ts';
import type { TrustContext, UpstreamEntry } from './service/index.ts';
import { UndiciUpstream } from './upstream/index.ts';
import { isClusterWorker, resolveWorkers, startCluster, workerBindings } from './cluster/index.ts';
import type { WorkerBindings } from './cluster/index.ts';

export interface App {
  http: FastifyInstance;
  service: RegistryService;
  metrics: Metrics;
  blobs: FsBlobStore;
  /** Free space of the storage filesystem, for every writer on it (cache fills, the audit trail). */
  headroom: DiskHeadroom;
  metadata: MetadataStore;
  logger: Logger;
  gate: TrustGate;
  auth: PullAuth;
  /** Rejects, saying why, when this process is not ready (what `/readyz` checks here). */
  checkReady(): Promise<void>;
  /**
   * Apply a new configuration's policies, trust material and decision TTLs without a restart (other
   * changes need one and are reported). Throws, keeping the running policy, when the new one is bad.
   */
  reload(config: LoadedConfig): Promise<void>;
  /** Stop accepting requests, drain the ones in flight, wait for cache fills, close stores. */
  close(): Promise<void>;
}

/** Policy engine + trust material built from a config, and what to release when replaced. */
async function buildTrustContext(
  config: LoadedConfig,
  logger: Logger,
  reader: CachingAttestationReader,
  worker: WorkerBindings | undefined,
): Promise<{ context: TrustContext; store: TrustMaterialStore; kev: KevCatalog | undefined }> {
  const hasPublicGood = Object.values(config.trust.roots).some((r) => 'sigstore' in r);
  const store = await TrustMaterialStore.load(
    { roots: config.trust.roots, keys: config.trust.keys },
    {
      // The public-good root embedded in @sigstore/tuf is used from the start; a TUF refresh keeps it
      // current when the Sigstore CDN is reachable (trust.refresh: 0 turns it off, e.g. air-gapped).
      ...(hasPublicGood && config.trust.refresh > 0
        ? {
            refresh: {
              cachePath: join(config.storage.dir, 'tuf'),
              intervalMs: config.trust.refresh,
              // In a cluster the primary runs the one TUF client; workers take the root it fetched.
              ...(worker === undefined ? {} : { fetch: () => worker.fetchTrustedRoot() }),
            },
          }
        : {}),
      // One line, no stack: offline start-up (no route to the TUF mirror) is normal for air-gapped nodes.
      onRefreshError: (_err, { reason, using, mirror }) =>
        logger.warn({ mirror, reason, using }, `trust root refresh over TUF failed; using ${using}`),
      onRefreshed: (version) => logger.info({ version }, 'trust root refreshed'),
    },
  );
  const engine = new PolicyEngine(config.policies, config.trust);
  const kevFile = config.trust.kevCatalog;
  const kev =
    kevFile === undefined
      ? undefined
      : new KevCatalog(kevFile, {
          onReload: (c) =>
            c.problem === undefined
              ? logger.info({ file: kevFile, entries: c.size }, 'KEV catalog reloaded')
              : logger.warn(
                  { file: kevFile, problem: c.problem },
                  'KEV catalog unreadable; knownExploited gates fail',
                ),
        });
  return {
    store,
    kev,
    context: {
      engine,
      verifier: store,
      reader,
      ...(kev !== undefined ? { kev } : {}),
      ttl: {
        allow: config.decisions.allowTTL,
        deny: config.decisions.denyTTL,
        evidence: config.decisions.evidenceTTL,
        missingEvidence: config.decisions.missingEvidenceTTL,
      },
    },
  };
}

/** Keys a reload can apply; anything else in the file needs a restart. */
const RELOADABLE = new Set(['trust', 'policies', 'decisions', 'source']);

export interface BuildOptions {
  logger?: Logger;
  /** Disable process-wide default metrics (tests build many apps in one process). */
  defaultMetrics?: boolean;
  /**
   * This process is a worker of a cluster (`server.workers` > 1): the primary holds the storage lock,
   * writes the audit trail, runs the TUF refresh and answers for readiness and metrics.
   */
  cluster?: WorkerBindings;
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

export function createLogger(level: string, timestamp: LogTimestamp = 'iso'): Logger {
  return pino({
    level,
    timestamp: logTimestamp(timestamp),
    redact: { paths: redactPaths, censor: '[redacted]' },
    base: { service: 'pullwarden' },
  });
}

export async function buildApp(config: LoadedConfig, options: BuildOptions = {}): Promise<App> {
  const logger = options.logger ?? createLogger(config.log.level, config.log.timestamp);
  await mkdir(config.storage.dir, { recursive: true });
  // Before anything touches the directory: one owner, or replicas that all declared the shared mode.
  let lockLost: string | undefined;
  const lock = options.cluster
    ? undefined
    : new StorageLock({
        dir: config.storage.dir,
        mode: config.storage.shared ? 'shared' : 'exclusive',
        replica: config.storage.replica ?? hostname(),
        onLost: (reason) => {
          lockLost = reason;
          logger.error({ dir: config.storage.dir }, `${reason}; not ready until restarted`);
        },
      });
  await lock?.acquire();
  try {
    return await assemble(config, options, logger, lock, () => lockLost);
  } catch (err) {
    await lock?.release();
    throw err;
  }
}

/** Everything of {@link buildApp} once the storage directory is this process's. */
async function assemble(
  config: LoadedConfig,
  options: BuildOptions,
  logger: Logger,
  lock: StorageLock | undefined,
  lockLost: () => string | undefined,
): Promise<App> {
  const metrics = new Metrics({ defaultMetrics: options.defaultMetrics ?? true });

  // One headroom for the storage filesystem: cache fills stop at the reserve so that the audit trail
  // (and the metadata database) on the same disk still have room.
  const headroom = new DiskHeadroom({
    path: config.storage.dir,
    reserve: config.storage.reserve,
    onError: (err) => logger.warn({ err }, 'could not read free disk space'),
  });
  await headroom.start();
  const blobs = new FsBlobStore({
    dir: config.storage.dir,
    maxBytes: config.storage.maxBytes,
    maxBlobSize: config.storage.maxBlobSize,
    abandonedFillGraceMs: config.storage.abandonedFillGrace,
    headroom,
    // Workers fill through the directory exactly like replicas sharing it.
    shared: config.storage.shared || options.cluster !== undefined,
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
      onRefused: (reason) => metrics.upstreamRefused.inc({ upstream: host, reason }),
      onRequest: (info) => {
        metrics.upstreamRequests.inc({
          upstream: host,
          method: info.method,
          kind: info.kind,
          status: String(info.status),
        });
        metrics.upstreamDuration.observe({ upstream: host, kind: info.kind }, info.durationMs / 1000);
        if (info.status === 'error' || info.status === 429 || info.status >= 500) {
          metrics.upstreamErrors.inc({ upstream: host, code: String(info.status) });
        }
      },
    });
    for (const alias of upstreamConfig.aliases) aliases.set(alias, host);
    upstreams.set(host, {
      upstream,
      tagTTL: upstreamConfig.tagTTL,
      staleIfError: upstreamConfig.staleIfError,
    });
  }

  // One parse cache for the process: attestation content is keyed by its digest, so it survives a
  // policy reload unchanged.
  const attestationReader = new CachingAttestationReader();
  let trust = await buildTrustContext(config, logger, attestationReader, options.cluster);
  const gate = new TrustGate({
    context: trust.context,
    metadata,
    logger,
    metrics,
    maxTrustMaterialBlobBytes: config.server.maxTrustMaterialBlobBytes,
  });
  const audit: MultiAuditSink =
    options.cluster?.audit(logger.child({ module: 'audit' })) ??
    (await openAuditSink(config.audit, {
      dir: config.audit.dir,
      log: logger.child({ module: 'audit' }),
      checkpointKey: config.audit.checkpointKey,
    }));
  const tags = new TagGuard({
    metadata,
    logger,
    metrics,
    onMove: async (move) => {
      try {
        await audit.append({
          type: 'tag-moved',
          time: new Date().toISOString(),
          requestId: '',
          client: '',
          upstream: move.upstream,
          repository: move.repository,
          reference: move.tag,
          tag: move.tag,
          digest: move.to,
          old: move.from,
          new: move.to,
          bytes: 0,
          durationMs: 0,
          status: 0,
        });
      } catch (err) {
        metrics.auditWriteFailures.inc();
        logger.error(
          { err: err instanceof Error ? err.message : String(err), move },
          'tag-moved audit event lost',
        );
      }
    },
  });

  const service = new RegistryService({
    gate,
    tags,
    upstreams,
    aliases,
    blobs,
    metadata,
    logger,
    metrics,
    maxManifestBytes: config.server.maxManifestBytes,
    maxBlobBytes: config.storage.maxBlobSize,
  });

  const authConfig: Parameters<typeof PullAuth.load>[0] = {
    users: config.auth.users,
    tokens: config.auth.tokens,
    ...(config.auth.htpasswd === undefined ? {} : { htpasswd: config.auth.htpasswd }),
    ...(config.auth.anonymous === undefined ? {} : { anonymous: config.auth.anonymous }),
    ...(config.auth.verifyWorkers === undefined ? {} : { verifyWorkers: config.auth.verifyWorkers }),
    verifyQueue: config.auth.verifyQueue,
    maxFailures: config.auth.maxFailures,
    failureWindowMs: config.auth.failureWindow,
  };
  const auth = await PullAuth.load(authConfig);
  const tls = config.server.tls;
  const https = tls
    ? {
        key: await readFile(tls.keyFile),
        cert: await readFile(tls.certFile),
        ...(tls.clientCAFile === undefined ? {} : { ca: await readFile(tls.clientCAFile) }),
        requestCert: tls.clientCAFile !== undefined,
        rejectUnauthorized: tls.requireClientCert,
      }
    : undefined;

  let closing = false;
  /** This process's own readiness (in a cluster, the primary adds every other worker's). */
  const checkReady = async (): Promise<void> => {
    if (closing) throw new Error('shutting down');
    const lost = lockLost();
    if (lost !== undefined) throw new Error(lost);
    await access(config.storage.dir, constants.W_OK);
    await metadata.ping();
    const failing = audit.status().filter((s) => !s.ok);
    if (failing.length > 0) {
      throw new Error(`audit: ${failing.map((s) => `${s.name}: ${s.reason ?? 'failing'}`).join('; ')}`);
    }
  };
  const http = buildHttpServer({
    auth,
    ...(https ? { https } : {}),
    service,
    logger,
    metrics,
    defaultUpstream: config.defaultUpstream,
    trustProxy: config.server.trustProxy,
    timeouts: {
      headers: config.server.headersTimeout,
      request: config.server.requestTimeout,
      keepAlive: config.server.keepAliveTimeout,
      send: config.server.sendTimeout,
    },
    metricsEndpoint: config.metrics.listen !== undefined ? 'off' : config.metrics.auth ? 'auth' : 'open',
    audit: {
      sink: audit,
      failClosed: config.audit.failClosed,
      recentTags: new RecentTags(),
      observe: (seconds, ok) => {
        metrics.auditWriteDuration.observe(seconds);
        if (!ok) metrics.auditWriteFailures.inc();
      },
    },
    warnings: () => {
      const disk = headroom.state();
      return disk.low
        ? [
            `disk: ${disk.free} bytes free on ${config.storage.dir}, below storage.reserve (${disk.reserve} bytes): cache fills are refused`,
          ]
        : [];
    },
    ready: async () => {
      await checkReady();
      await options.cluster?.ready();
    },
  });
  if (options.cluster) {
    const worker = options.cluster;
    worker.shareMetrics(metrics.registry);
    metrics.renderWith(() => worker.renderMetrics());
  }
  metrics.observeCache(() => blobs.stats());
  metrics.observeDisk(() => headroom.state());

  let running = config;
  return {
    http,
    service,
    metrics,
    blobs,
    headroom,
    metadata,
    logger,
    gate,
    auth,
    checkReady,
    async reload(next) {
      const built = await buildTrustContext(next, logger, attestationReader, options.cluster);
      const previous = trust;
      trust = built;
      gate.swap(built.context);
      previous.store.close();
      previous.kev?.close();
      const needRestart = Object.keys(next).filter(
        (k) =>
          !RELOADABLE.has(k) &&
          JSON.stringify((next as Record<string, unknown>)[k]) !==
            JSON.stringify((running as Record<string, unknown>)[k]),
      );
      running = next;
      logger.info(
        { policyHash: built.context.engine.hash, trustVersion: built.store.version, needRestart },
        needRestart.length > 0
          ? 'policy reloaded; other changed keys need a restart to apply'
          : 'policy reloaded',
      );
    },
    async close() {
      closing = true;
      trust.store.close();
      trust.kev?.close();
      // Drain requests in flight; past the grace period, cut what is left (a stuck client must not
      // hold a rolling update hostage).
      const grace = setTimeout(() => http.server.closeAllConnections(), config.server.shutdownGrace);
      grace.unref();
      http.server.closeIdleConnections();
      await http.close();
      clearTimeout(grace);
      await blobs.close();
      headroom.stop();
      await auth.close();
      await Promise.allSettled([...upstreams.values()].map((u) => u.upstream.close()));
      await audit.close();
      await metadata.close();
      await lock?.release();
    },
  };
}

export interface ServerHandle {
  /** `http://host:port` the server listens on. */
  address: string;
  /** `http://host:port` of the separate metrics listener, when `metrics.listen` is set. */
  metricsAddress?: string;
  /** `http://host:port` of the admin page, when `admin.listen` is set. */
  adminAddress?: string;
  app: App;
  /** Re-read the config file and apply its policy (SIGHUP). A broken file keeps the last good policy. */
  reload(): Promise<void>;
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
          // A shared storage directory: every replica's chain, not only this one's.
          const auditDir = config.storage.shared
            ? await auditChainDirs(dirname(config.audit.dir))
            : config.audit.dir;
          const inventory = await buildInventory(
            {
              auditDir,
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
    let timer: NodeJS.Timeout | undefined;
    // Watch the directory, not the file: editors and ConfigMap updates replace the file (a rename),
    // which a watch on the old inode would never report.
    const file = basename(config.source);
    watcher = watch(dirname(config.source), { persistent: false }, (_event, name) => {
      if (name !== null && name !== file && !name.startsWith('..')) return;
      clearTimeout(timer);
      timer = setTimeout(() => void reload(), 200);
    });
    watcher.on('error', (err) => app.logger.warn({ err: err.message }, 'config file watch failed'));
  }
  // TLS material and the htpasswd file are re-read when they change (cert-manager renewals, new users).
  const watchers: FSWatcher[] = [];
  const tls = config.server.tls;
  if (tls) {
    const reloadTls = async () => {
      try {
        const server = app.http.server as unknown as { setSecureContext(o: Record<string, Buffer>): void };
        server.setSecureContext({
          key: await readFile(tls.keyFile),
          cert: await readFile(tls.certFile),
          ...(tls.clientCAFile === undefined ? {} : { ca: await readFile(tls.clientCAFile) }),
        });
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

/** What `pullwarden serve` runs: one process, a cluster primary, or one of its workers. */
export interface DeploymentHandle {
  address: string;
  reload(): Promise<void>;
  close(): Promise<void>;
  /** A cluster worker: resolves with the exit code once the primary had it shut down. */
  managed?: Promise<number>;
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
  if (workers > 1) return startCluster(config, { workers, logger: createLogger(config.log.level) });
  return startServer(config);
}

/** `scheme://host:port` a Fastify instance is bound to (the real port when `port` was 0). */
function boundAddress(server: FastifyInstance, host: string, port: number, scheme: string): string {
  const addr = server.server.address();
  const bound = typeof addr === 'object' && addr !== null ? addr.port : port;
  const shownHost = host.includes(':') ? `[${host}]` : host;
  return `${scheme}://${shownHost}:${bound}`;
}

export interface CheckResult {
  reference: string;
  upstream: string;
  repository: string;
  digest: string;
  mediaType: string;
  decision: Decision | undefined;
  policy: Policy | undefined;
}

/**
 * `pullwarden check`: resolve, discover and verify an image reference exactly as the proxy would
 * (the same service and gate code), in a private temporary store, so that it never disturbs the
 * cache or metadata of a proxy running from the same config.
 */
export async function checkImage(config: LoadedConfig, reference: string): Promise<CheckResult> {
  const dir = await mkdtemp(join(tmpdir(), 'pullwarden-check-'));
  const isolated: LoadedConfig = {
    ...config,
    storage: { ...config.storage, dir },
    metadata: { ...config.metadata, url: 'sqlite://:memory:' },
    // A dry run is not a pull: its events go to the private directory, not the proxy's trail.
    audit: { ...config.audit, dir: join(dir, 'audit') },
    trust: { ...config.trust, refresh: 0 },
  };
  const app = await buildApp(isolated, { logger: pino({ level: 'silent' }), defaultMetrics: false });
  try {
    const ref = parseImageReference(reference, config.defaultUpstream ?? 'docker.io');
    const upstream = app.service.resolveHost(canonicalHost(ref.host));
    if (upstream === undefined) app.service.upstreamFor(ref.host); // throws DENIED: not configured
    const target = {
      upstream: upstream ?? ref.host,
      repository: normalizeRepository(upstream ?? ref.host, ref.repository),
    };
    const manifestRef: ManifestReference =
      ref.digest !== undefined
        ? { kind: 'digest', digest: ref.digest }
        : { kind: 'tag', tag: ref.tag ?? 'latest' };
    const result = await app.service.check(target, manifestRef);
    return {
      reference,
      upstream: target.upstream,
      repository: target.repository,
      digest: result.digest,
      mediaType: result.mediaType,
      decision: result.decision,
      policy: app.gate.context.engine.match(target.upstream, target.repository),
    };
  } finally {
    await app.close();
    await rm(dir, { recursive: true, force: true });
  }
}

/** Call `onChange` (debounced) when `path` is written or replaced; watches its directory. */
function watchPath(path: string, onChange: () => Promise<void>, logger: Logger): FSWatcher {
  const file = basename(path);
  let timer: NodeJS.Timeout | undefined;
  const w = watch(dirname(path), { persistent: false }, (_event, name) => {
    if (name !== null && name !== file && !name.startsWith('..')) return;
    clearTimeout(timer);
    timer = setTimeout(() => void onChange(), 200);
  });
  w.on('error', (err) => logger.warn({ err: err.message, path }, 'file watch failed'));
  return w;
}

export function splitListen(listen: string): { host: string; port: number } {
  const i = listen.lastIndexOf(':');
  let host = listen.slice(0, i);
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  return { host, port: Number(listen.slice(i + 1)) };
}
