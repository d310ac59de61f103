/**
 * The composition root: the one place that builds the adapters (upstream clients, blob store, metadata
 * store), wires them into the service and the HTTP server, and tears them down in order. The process
 * around it (listeners, reload, watchers, signals, workers) is ./lifecycle.ts.
 */
import { access, constants, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { FastifyInstance } from 'fastify';
import { openAuditSink, RecentTags } from '../audit/index.ts';
import type { MultiAuditSink } from '../audit/index.ts';
import { acquireStorageLock, DiskHeadroom, FsBlobStore } from '../cache/index.ts';
import type { StorageLock } from '../cache/index.ts';
import type { LoadedConfig } from '../config/index.ts';
import { PolicyEngine } from '../policy/index.ts';
import { CachingAttestationReader, KevCatalog, TrustMaterialStore } from '../trust/index.ts';
import { buildHttpServer, PullAuth } from '../http/index.ts';
import type { MetadataStore } from '../metadata/index.ts';
import { Metrics, RegistryService, TagGuard, TrustGate } from '../service/index.ts';
import type { TrustContext, UpstreamEntry } from '../service/index.ts';
import { UndiciUpstream } from '../upstream/index.ts';
import type { WorkerBindings } from '../cluster/index.ts';
import { createLogger } from './logger.ts';
import { openConfiguredMetadataStore } from './metadata.ts';
import { readTlsMaterial } from './tls.ts';
import { upstreamAliases } from './upstream-names.ts';

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

export async function buildApp(config: LoadedConfig, options: BuildOptions = {}): Promise<App> {
  const logger = options.logger ?? createLogger(config.log.level, config.log.timestamp);
  await mkdir(config.storage.dir, { recursive: true });
  // Before anything touches the directory: one owner, or replicas that all declared the shared mode.
  // (In a cluster the primary holds it for every worker.)
  const owner = options.cluster ? undefined : await acquireStorageLock(config.storage, logger);
  const lock = owner?.lock;
  try {
    return await assemble(config, options, logger, lock, () => owner?.lost());
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

  const metadata = await openConfiguredMetadataStore(config, logger.child({ module: 'metadata' }));

  const upstreams = new Map<string, UpstreamEntry>();
  const aliases = upstreamAliases(config);
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
        ...(await readTlsMaterial(tls)),
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
