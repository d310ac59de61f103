import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * Prometheus metrics. One instance per app (tests build many apps in one process, so nothing is
 * registered on prom-client's global registry).
 */
export class Metrics {
  readonly registry = new Registry();

  readonly httpRequests = new Counter({
    name: 'pullwarden_http_requests_total',
    help: 'Requests answered, by route and status',
    labelNames: ['route', 'method', 'status'] as const,
    registers: [this.registry],
  });

  readonly httpDuration = new Histogram({
    name: 'pullwarden_http_request_duration_seconds',
    help: 'Time to answer a request (until the last byte)',
    labelNames: ['route'] as const,
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120],
    registers: [this.registry],
  });

  readonly cacheRequests = new Counter({
    name: 'pullwarden_cache_requests_total',
    help: 'Cache lookups by kind (tag, manifest, blob) and result (hit, miss, joined, stale)',
    labelNames: ['kind', 'result'] as const,
    registers: [this.registry],
  });

  readonly blobBytesServed = new Counter({
    name: 'pullwarden_blob_bytes_served_total',
    help: 'Blob bytes sent to clients, by cache result',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });

  readonly upstreamRequests = new Counter({
    name: 'pullwarden_upstream_requests_total',
    help: 'Requests made to upstream registries',
    labelNames: ['upstream', 'method', 'kind', 'status'] as const,
    registers: [this.registry],
  });

  readonly upstreamDuration = new Histogram({
    name: 'pullwarden_upstream_request_duration_seconds',
    help: 'Upstream response time (until headers)',
    labelNames: ['upstream', 'kind'] as const,
    buckets: [0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });

  readonly upstreamErrors = new Counter({
    name: 'pullwarden_upstream_errors_total',
    help: 'Upstream failures: no response (code "error"), 429 or 5xx, by status',
    labelNames: ['upstream', 'code'] as const,
    registers: [this.registry],
  });

  readonly upstreamRefused = new Counter({
    name: 'pullwarden_upstream_refused_total',
    help: 'Places an upstream sent the proxy that it refused to go (redirects, token realms), by reason',
    labelNames: ['upstream', 'reason'] as const,
    registers: [this.registry],
  });

  readonly blobsRefused = new Counter({
    name: 'pullwarden_upstream_blobs_refused_total',
    help: 'Upstream blob answers refused for their size (not what the admitted manifest declares), by reason',
    labelNames: ['upstream', 'reason'] as const,
    registers: [this.registry],
  });

  readonly requestsLimited = new Counter({
    name: 'pullwarden_requests_limited_total',
    help: 'Client connections cut or requests refused by a server limit, by reason',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });

  readonly decisions = new Counter({
    name: 'pullwarden_decisions_total',
    help: 'Trust decisions evaluated (not cache hits), by policy and result (allow, deny, warn)',
    labelNames: ['policy', 'result'] as const,
    registers: [this.registry],
  });

  readonly gateResults = new Counter({
    name: 'pullwarden_gate_results_total',
    help: 'Attestation gate outcomes of evaluated decisions (not cache hits): pass, deny or warn',
    labelNames: ['policy', 'gate', 'result'] as const,
    registers: [this.registry],
  });

  readonly verifyDuration = new Histogram({
    name: 'pullwarden_verification_duration_seconds',
    help: 'Signature discovery and verification time for one decision',
    buckets: [0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [this.registry],
  });

  readonly tagMoves = new Counter({
    name: 'pullwarden_tag_moves_total',
    help: 'Tags seen pointing at a new digest upstream',
    labelNames: ['upstream'] as const,
    registers: [this.registry],
  });

  readonly auditWriteDuration = new Histogram({
    name: 'pullwarden_audit_write_duration_seconds',
    help: 'Time for an audit event to become durable (write + fsync, group-committed)',
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1],
    registers: [this.registry],
  });

  readonly auditWriteFailures = new Counter({
    name: 'pullwarden_audit_write_failures_total',
    help: 'Audit events that could not be written',
    registers: [this.registry],
  });

  readonly denials = new Counter({
    name: 'pullwarden_denials_total',
    help: 'Requests refused with 403, by policy and reason',
    labelNames: ['policy', 'reason'] as const,
    registers: [this.registry],
  });

  #cacheStats: (() => { bytes: number; blobs: number; fillsInFlight: number }) | undefined;

  // Gauges are read at scrape time, so the hot path does no bookkeeping for them.
  readonly fillsInFlight = new Gauge({
    name: 'pullwarden_blob_fills_in_flight',
    help: 'Blob cache fills currently streaming from upstream',
    registers: [this.registry],
    collect: () => {
      if (this.#cacheStats) this.fillsInFlight.set(this.#cacheStats().fillsInFlight);
    },
  });

  readonly cacheBytes = new Gauge({
    name: 'pullwarden_cache_bytes',
    help: 'Bytes held in the blob cache',
    registers: [this.registry],
    collect: () => {
      if (this.#cacheStats) this.cacheBytes.set(this.#cacheStats().bytes);
    },
  });

  readonly cacheBlobs = new Gauge({
    name: 'pullwarden_cache_blobs',
    help: 'Blobs (and manifests) held in the blob cache',
    registers: [this.registry],
    collect: () => {
      if (this.#cacheStats) this.cacheBlobs.set(this.#cacheStats().blobs);
    },
  });

  #diskState: (() => { free: number; reserve: number; low: boolean }) | undefined;

  readonly storageFree = new Gauge({
    name: 'pullwarden_storage_free_bytes',
    help: 'Free bytes on the storage filesystem (as last read, less bytes written since)',
    registers: [this.registry],
    collect: () => {
      if (this.#diskState) this.storageFree.set(this.#diskState().free);
    },
  });

  readonly storageReserve = new Gauge({
    name: 'pullwarden_storage_reserve_bytes',
    help: 'Free bytes storage.reserve keeps; below it cache fills are refused',
    registers: [this.registry],
    collect: () => {
      if (this.#diskState) this.storageReserve.set(this.#diskState().reserve);
    },
  });

  readonly storageLow = new Gauge({
    name: 'pullwarden_storage_headroom_low',
    help: '1 while free space is below storage.reserve (cache fills refused), else 0',
    registers: [this.registry],
    collect: () => {
      if (this.#diskState) this.storageLow.set(this.#diskState().low ? 1 : 0);
    },
  });

  /** Where the disk gauges read their values from. */
  observeDisk(state: () => { free: number; reserve: number; low: boolean }): void {
    this.#diskState = state;
  }

  /** Where the cache gauges read their values from. */
  observeCache(stats: () => { bytes: number; blobs: number; fillsInFlight: number }): void {
    this.#cacheStats = stats;
  }

  constructor(options: { defaultMetrics?: boolean } = {}) {
    if (options.defaultMetrics !== false)
      collectDefaultMetrics({ register: this.registry, prefix: 'pullwarden_' });
  }

  #render: (() => Promise<string>) | undefined;

  /** The exposition `/metrics` serves: this registry, or (in a cluster worker) the whole deployment's. */
  render(): Promise<string> {
    return this.#render === undefined ? this.registry.metrics() : this.#render();
  }

  /** Serve `render` instead of this registry alone (the cluster primary's aggregate). */
  renderWith(render: () => Promise<string>): void {
    this.#render = render;
  }
}
