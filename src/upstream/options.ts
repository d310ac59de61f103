/**
 * What the upstream client is configured with. The upstream module owns these types: it never
 * imports the config schema (config is imported below `app` for types only, and not at all here).
 * The parsed `upstreams.<host>` entry of the config fits {@link UndiciUpstreamConfig} as it is; a
 * type test (test/unit/upstream/options.test.ts) keeps the two in step.
 */
import { noopLogger } from '../shared/index.ts';
import type { Logger } from '../shared/index.ts';
import type { LookupFunction } from './address-guard.ts';

/**
 * The settings of one upstream this client uses. Durations are milliseconds. `password` is the
 * resolved secret (the caller reads `passwordFile` / `passwordEnv` before constructing).
 */
export interface UndiciUpstreamConfig {
  /** Base URL of the registry API; `https://<host>` when absent. */
  url?: string | undefined;
  username?: string | undefined;
  password?: string | undefined;
  connectTimeout: number;
  headersTimeout: number;
  /** Longest pause between two body chunks (and the window of the lowest blob rate accepted). */
  bodyTimeout: number;
  /** Retries of idempotent requests on connection errors (and one of a 5xx, unless 0). */
  retries: number;
  /** Pooled connections per origin. */
  connections: number;
  insecureSkipTLSVerify: boolean;
  /** PEM CA bundle added to the public roots. */
  caFile?: string | undefined;
  redirects?: {
    /** Host globs a redirect may lead to even when they resolve to a non-public address. */
    allow?: readonly string[];
    /** Follow a redirect from an https upstream to plain http. */
    allowHttp?: boolean;
  };
  auth?: {
    /** Token realm host globs besides the upstream's own host. */
    realms?: readonly string[];
  };
}

/** The logger upstream logs with: the one logger interface (shared/logger.ts). */
export type UpstreamLogger = Logger;

/** What an upstream HTTP exchange was for, as reported to {@link UndiciUpstreamOptions.onRequest}. */
export type UpstreamRequestKind = 'manifest' | 'blob' | 'tags' | 'referrers' | 'token';

/**
 * Why the proxy refused to go where an upstream sent it: a redirect to a non-public address
 * (`redirect-address`), from https to plain http (`redirect-http`), to a URL that is not http(s) or
 * carries credentials (`redirect-unusable`), one hop too many (`redirect-limit`); a token realm off the
 * upstream's host (`realm-host`) or one that is not https (`realm-unusable`).
 */
export type UpstreamRefusal =
  | 'redirect-address'
  | 'redirect-http'
  | 'redirect-unusable'
  | 'redirect-limit'
  | 'realm-host'
  | 'realm-unusable';

/** One upstream HTTP exchange (each retry, redirect hop and token request counts on its own). */
export interface UpstreamRequestInfo {
  /** The configured upstream host (config key), not the origin that answered (a CDN, a token realm). */
  host: string;
  method: 'GET' | 'HEAD';
  kind: UpstreamRequestKind;
  /** The response status, or `'error'` when no response headers arrived. */
  status: number | 'error';
  /** Milliseconds until the response headers (blob bodies stream on after this). */
  durationMs: number;
}

export interface UndiciUpstreamOptions {
  /** The registry host clients name (the config key), e.g. `docker.io`. */
  host: string;
  config: UndiciUpstreamConfig;
  logger?: UpstreamLogger;
  /** Called after every upstream exchange; for metrics. Must not throw (errors are ignored). */
  onRequest?: (info: UpstreamRequestInfo) => void;
  /**
   * Called when the upstream told us to go somewhere we refused (a redirect or a token realm); for
   * `pullwarden_upstream_refused_total`. Must not throw (errors are ignored).
   */
  onRefused?: (reason: UpstreamRefusal) => void;
  /** Largest manifest accepted; defaults to `MAX_MANIFEST_BYTES` (oci). */
  maxManifestBytes?: number;
  /** Base of the exponential backoff between retries, in ms (default 100). */
  retryDelayMs?: number;
  /** `User-Agent` sent upstream. */
  userAgent?: string;
  /**
   * Name resolution for origins other than the upstream's own (redirect targets, token realms);
   * `dns.lookup` by default. Every address it returns is checked before a connection is made.
   */
  lookup?: LookupFunction;
  /** The clock token lifetimes are measured with (tests move it); `Date.now` by default. */
  now?: () => number;
}

/** A logger that drops everything (no logger configured). */
export const silentLogger: UpstreamLogger = noopLogger;
