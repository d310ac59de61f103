/**
 * Where an upstream's redirects may lead (blob → CDN): the checks on the `Location` itself. Where
 * the address may be (no loopback, link-local or private target unless allowed) is checked later, by
 * the connector, on the address actually connected to (address-guard.ts). Credentials are never sent
 * past the registry's own origin: the token auth attaches them to that origin only.
 */
import { compileHostMatcher } from './address-guard.ts';
import type { UpstreamErrors } from './errors.ts';
import type { UpstreamLogger } from './options.ts';

const REDIRECT_STATUSES: ReadonlySet<number> = new Set([301, 302, 303, 307, 308]);
/** Docker and containerd stop after a handful of hops; real registries use one (registry → CDN). */
export const MAX_REDIRECTS = 5;

/** Whether an upstream status is a redirect the client follows (blobs only). */
export function isRedirect(status: number): boolean {
  return REDIRECT_STATUSES.has(status);
}

export interface RedirectPolicyOptions {
  /** The configured upstream host (config key), for messages. */
  host: string;
  /** The upstream's own base URL: an https upstream is not followed to plain http. */
  base: URL;
  /** `redirects.allow`: host globs a redirect may reach even at a non-public address. */
  allow: readonly string[];
  /** `redirects.allowHttp`: follow https → http anyway. */
  allowHttp: boolean;
  errors: UpstreamErrors;
  log: UpstreamLogger;
}

/** The redirect rules of one upstream. */
export class RedirectPolicy {
  readonly #host: string;
  readonly #httpsBase: boolean;
  readonly #allowHttp: boolean;
  readonly #allowed: (hostname: string, port: number) => boolean;
  readonly #errors: UpstreamErrors;
  readonly #log: UpstreamLogger;

  constructor(options: RedirectPolicyOptions) {
    this.#host = options.host;
    this.#httpsBase = options.base.protocol === 'https:';
    this.#allowHttp = options.allowHttp;
    this.#allowed = compileHostMatcher(options.allow);
    this.#errors = options.errors;
    this.#log = options.log;
  }

  /**
   * Whether `hostname:port` is in `redirects.allow`: the connector then skips its address check
   * (the operator named the host; it may well be in the cluster).
   */
  hostAllowed(hostname: string, port: number): boolean {
    return this.#allowed(hostname, port);
  }

  /**
   * Where redirect number `hop` (0 for the first) from `from` leads, or a counted refusal: only
   * http(s) URLs without credentials in them, never from an https upstream to plain http unless
   * `redirects.allowHttp` (a signed CDN URL and the blob would cross the network in clear text, open
   * to anyone on the path), and at most {@link MAX_REDIRECTS} hops.
   */
  next(location: string | undefined, from: URL, what: string, hop: number): URL {
    const host = this.#host;
    let next: URL | undefined;
    try {
      next = location === undefined ? undefined : new URL(location, from);
    } catch {
      next = undefined;
    }
    if (next === undefined || (next.protocol !== 'http:' && next.protocol !== 'https:')) {
      throw this.#errors.refuse(
        'redirect-unusable',
        `upstream ${host} sent an unusable redirect for ${what}`,
      );
    }
    if (next.username !== '' || next.password !== '') {
      throw this.#errors.refuse(
        'redirect-unusable',
        `upstream ${host} redirected ${what} to a URL with credentials in it (${next.protocol}//${next.host}); refused`,
      );
    }
    if (next.protocol === 'http:' && this.#httpsBase && !this.#allowHttp) {
      throw this.#errors.refuse(
        'redirect-http',
        `upstream ${host} redirected ${what} from https to plain http (${next.host}); refused. If that is intended, set upstreams.${host}.redirects.allowHttp`,
        { host: next.host },
      );
    }
    if (hop + 1 > MAX_REDIRECTS) {
      throw this.#errors.refuse(
        'redirect-limit',
        `upstream ${host} redirected ${what} more than ${MAX_REDIRECTS} times; refused`,
      );
    }
    // Only the origin is logged: the rest of a CDN URL is usually a signature.
    this.#log.debug({ upstream: host, what, to: next.origin }, 'following blob redirect');
    return next;
  }
}
