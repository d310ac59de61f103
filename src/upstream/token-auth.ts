/**
 * Registry credentials (distribution-spec token auth and basic auth): one 401 answered per request,
 * the bearer challenge parsed, its realm checked, a token fetched once per scope and reused until
 * shortly before it expires.
 *
 * Credentials go to exactly two places: the configured registry origin and a token realm on the
 * upstream's own host or in `auth.realms` (docker.io's auth.docker.io is built in); any other realm
 * is refused, counted and not remembered. Nothing is attached to a request off the registry origin (a
 * blob CDN): the signature is in its URL, and some CDNs reject or log the header.
 */
import type { Dispatcher } from 'undici';
import { RegistryError } from '../oci/index.ts';
import { compileHostMatcher } from './address-guard.ts';
import type { UpstreamErrors } from './errors.ts';
import type { Exchange, UpstreamResponse } from './exchange.ts';
import { discard, portOf, unbracket } from './http-util.ts';
import type { UndiciUpstreamConfig, UpstreamLogger } from './options.ts';
import { TokenCache, tokenLifetimeMs } from './token-cache.ts';
import type { IssuedToken } from './token-cache.ts';
import { parseWwwAuthenticate } from './www-authenticate.ts';
import type { AuthChallenge } from './www-authenticate.ts';

const MAX_TOKEN_RESPONSE_BYTES = 1024 * 1024;
// Token realms on another host that a registry is known to use. Docker Hub's registry-1.docker.io
// sends clients to auth.docker.io; every other big registry (GHCR, Quay, GCR, ECR Public, Harbor)
// keeps its realm on its own host.
const WELL_KNOWN_REALMS: Record<string, readonly string[]> = { 'registry-1.docker.io': ['auth.docker.io'] };

/** What token auth sends requests with: the {@link Transport} fits; tests pass a fake that counts. */
export interface AuthTransport {
  dispatch(ex: Exchange, authorization: string | undefined): Promise<Dispatcher.ResponseData>;
  readBody(ex: Pick<Exchange, 'what'>, res: UpstreamResponse, limit: number): Promise<Buffer>;
}

export interface TokenAuthOptions {
  /** The configured upstream host (config key), for messages. */
  host: string;
  /** The registry origin credentials belong to (no userinfo). */
  base: URL;
  credentials: Pick<UndiciUpstreamConfig, 'username' | 'password'>;
  /** `auth.realms`: realm host globs besides the upstream's own host. */
  realms: readonly string[];
  transport: AuthTransport;
  errors: UpstreamErrors;
  log: UpstreamLogger;
  /** The clock token lifetimes are measured with; `Date.now` by default. */
  now?: (() => number) | undefined;
}

interface Authorization {
  header: string;
  /** Set when `header` carries a cached bearer token, so a 401 can invalidate it. */
  token?: string;
}

/** The credentials of one upstream. */
export class TokenAuth {
  readonly #host: string;
  readonly #base: URL;
  readonly #credentials: TokenAuthOptions['credentials'];
  readonly #transport: AuthTransport;
  readonly #errors: UpstreamErrors;
  readonly #log: UpstreamLogger;
  readonly #tokens: TokenCache;
  readonly #realmAllowed: (hostname: string, port: number) => boolean;
  /** Realm and service of the last bearer challenge: lets a new scope fetch its token up front. */
  #bearer: { realm: URL; service: string | undefined } | undefined;
  /** The registry asked for basic auth once; send it up front from then on. */
  #basic = false;

  constructor(options: TokenAuthOptions) {
    this.#host = options.host;
    this.#base = options.base;
    this.#credentials = options.credentials;
    this.#transport = options.transport;
    this.#errors = options.errors;
    this.#log = options.log;
    this.#tokens = new TokenCache(options.now === undefined ? {} : { now: options.now });
    this.#realmAllowed = compileHostMatcher([
      ...(WELL_KNOWN_REALMS[options.base.hostname] ?? []),
      ...options.realms,
    ]);
  }

  /** Whether a token realm on `hostname:port` off the registry's own host is allowed (config or built in). */
  realmAllowed(hostname: string, port: number): boolean {
    return this.#realmAllowed(hostname, port);
  }

  /**
   * Send a registry request with credentials, answering one 401 challenge. Credentials are attached
   * only when the URL is on the configured registry origin; anything else (a CDN) gets none.
   */
  async exchange(ex: Exchange): Promise<Dispatcher.ResponseData> {
    if (!ex.authenticate || ex.url.origin !== this.#base.origin)
      return await this.#transport.dispatch(ex, undefined);
    const scope = `repository:${ex.repository}:pull`;
    const first = await this.#upfrontAuthorization(ex, scope);
    const res = await this.#transport.dispatch(ex, first?.header);
    if (res.statusCode !== 401) return res;
    const challenges = parseWwwAuthenticate(res.headers['www-authenticate']);
    await discard(res.body);
    if (first?.token !== undefined) this.#tokens.invalidate(scope, first.token);
    const second = await this.#answerChallenge(ex, scope, challenges);
    if (second === undefined) throw this.#errors.denied(ex);
    const retried = await this.#transport.dispatch(ex, second.header);
    if (retried.statusCode === 401) {
      await discard(retried.body);
      throw this.#errors.denied(ex);
    }
    return retried;
  }

  async #upfrontAuthorization(ex: Exchange, scope: string): Promise<Authorization | undefined> {
    const cached = this.#tokens.get(scope);
    if (cached !== undefined) return { header: `Bearer ${cached}`, token: cached };
    const bearer = this.#bearer;
    if (bearer !== undefined) {
      // The registry has shown its token realm before: fetch this scope's token now rather than
      // spending a round trip on a 401 we know is coming.
      const token = await this.#tokens.obtain(scope, () =>
        this.#fetchToken(ex, bearer.realm, bearer.service, scope),
      );
      return { header: `Bearer ${token}`, token };
    }
    if (this.#basic) return this.#basicAuthorization();
    return undefined;
  }

  async #answerChallenge(
    ex: Exchange,
    scope: string,
    challenges: AuthChallenge[],
  ): Promise<Authorization | undefined> {
    const bearer = challenges.find((c) => c.scheme === 'bearer');
    if (bearer !== undefined) {
      const realm = this.#realm(bearer.params.realm);
      const service = bearer.params.service;
      const previous = this.#bearer?.realm;
      if (previous === undefined) {
        this.#log.info(
          { upstream: this.#host, realm: realm.origin + realm.pathname },
          'upstream token realm',
        );
      } else if (previous.href !== realm.href) {
        // Credentials now go somewhere else: an operator should be able to see when and where.
        this.#log.warn(
          {
            upstream: this.#host,
            from: previous.origin + previous.pathname,
            to: realm.origin + realm.pathname,
          },
          'upstream token realm changed',
        );
      }
      this.#bearer = { realm, service };
      // Ask for the scope the registry named when it named one (it knows best), cache it under ours.
      const wanted = bearer.params.scope ?? scope;
      const token = await this.#tokens.obtain(scope, () => this.#fetchToken(ex, realm, service, wanted));
      return { header: `Bearer ${token}`, token };
    }
    if (challenges.some((c) => c.scheme === 'basic')) {
      this.#basic = true;
      return this.#basicAuthorization();
    }
    return undefined;
  }

  #basicAuthorization(): Authorization | undefined {
    const { username, password } = this.#credentials;
    if (username === undefined) return undefined;
    return { header: `Basic ${Buffer.from(`${username}:${password ?? ''}`).toString('base64')}` };
  }

  /** Validate a token realm from a challenge: http(s) only, and never a downgrade from https. */
  #realm(value: string | undefined): URL {
    const realm = this.#parseRealm(value);
    const own = realm.host === this.#base.host;
    if (!own && !this.#realmAllowed(unbracket(realm.hostname), portOf(realm))) {
      throw this.#errors.refuse(
        'realm-host',
        `upstream ${this.#host} announced token realm ${realm.origin}, which is neither on ${this.#base.host} nor in upstreams.${this.#host}.auth.realms; refused (no credentials sent)`,
        { realm: realm.origin },
      );
    }
    return realm;
  }

  #parseRealm(value: string | undefined): URL {
    let realm: URL | undefined;
    try {
      realm = value === undefined ? undefined : new URL(value);
    } catch {
      realm = undefined;
    }
    if (realm === undefined || (realm.protocol !== 'https:' && realm.protocol !== 'http:')) {
      throw this.#errors.refuse('realm-unusable', `upstream ${this.#host} announced an unusable token realm`);
    }
    // Basic credentials (and the token) would cross the network in clear text.
    if (realm.protocol === 'http:' && this.#base.protocol === 'https:') {
      throw this.#errors.refuse(
        'realm-unusable',
        `upstream ${this.#host} announced a plain-http token realm`,
      );
    }
    realm.username = '';
    realm.password = '';
    return realm;
  }

  async #fetchToken(
    ex: Exchange,
    realm: URL,
    service: string | undefined,
    scope: string,
  ): Promise<IssuedToken> {
    const url = new URL(realm);
    if (service !== undefined) url.searchParams.set('service', service);
    url.searchParams.set('scope', scope);
    const tokenEx: Exchange = {
      kind: 'token',
      method: 'GET',
      url,
      headers: { accept: 'application/json' },
      repository: ex.repository,
      what: `token for ${ex.repository}`,
      authenticate: false,
      // Not the caller's signal: the token is shared with every concurrent request for this scope.
      signal: undefined,
    };
    const res = await this.#transport.dispatch(tokenEx, this.#basicAuthorization()?.header);
    if (res.statusCode !== 200) throw await this.#errors.failure(tokenEx, res, 'UNAVAILABLE');
    const body = await this.#transport.readBody(tokenEx, res, MAX_TOKEN_RESPONSE_BYTES);
    let json: unknown;
    try {
      json = JSON.parse(body.toString('utf8'));
    } catch {
      json = undefined;
    }
    const fields = typeof json === 'object' && json !== null ? (json as Record<string, unknown>) : {};
    // distribution-spec token auth: `token`, with `access_token` as the OAuth 2 compatible alias.
    const token =
      typeof fields.token === 'string' && fields.token !== '' ? fields.token : fields.access_token;
    if (typeof token !== 'string' || !/^[\x21-\x7e]+$/.test(token)) {
      throw new RegistryError('UNAVAILABLE', `upstream ${this.#host} token service sent no usable token`);
    }
    const lifetimeMs = tokenLifetimeMs(fields.expires_in);
    this.#log.debug(
      { upstream: this.#host, repository: ex.repository, expiresIn: fields.expires_in, lifetimeMs },
      'upstream token issued',
    );
    return { token, lifetimeMs };
  }
}
