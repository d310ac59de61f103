import type { Dispatcher } from 'undici';
import {
  defaultManifestAccept,
  digestAlgorithm,
  digestOf,
  isDigest,
  MAX_MANIFEST_BYTES,
  MediaType,
  parseDigest,
  parseManifestReference,
  parseRepositoryName,
  RegistryError,
} from '../oci/index.ts';
import type { Digest, ManifestReference } from '../oci/index.ts';
import {
  bareMediaType,
  contentLength,
  discard,
  errorCode,
  headerValue,
  isRetryableConnectionError,
  portOf,
  readLimited,
  unbracket,
} from './http-util.ts';
import { UpstreamErrors } from './errors.ts';
import type { Exchange } from './exchange.ts';
import { isGenericContentType, manifestMediaType } from './media-type.ts';
import { isRedirect, RedirectPolicy } from './redirects.ts';
import { TokenAuth } from './token-auth.ts';
import { Transport } from './transport.ts';
import { silentLogger } from './options.ts';
import type {
  UndiciUpstreamConfig,
  UndiciUpstreamOptions,
  UpstreamLogger,
  UpstreamRequestKind,
} from './options.ts';
import type {
  FetchedManifest,
  ManifestHead,
  ReferrersAnswer,
  RequestOptions,
  TagList,
  Upstream,
  UpstreamBlob,
} from './types.ts';

/** Thrown by body readers so a failure while reading a buffered body can be retried. */
class BodyReadError extends Error {
  constructor(cause: unknown) {
    super('upstream body failed', { cause });
  }
}

// Docker Hub's tag lists for official images run to a few MiB without pagination.
const MAX_TAG_LIST_BYTES = 16 * 1024 * 1024;

/**
 * {@link Upstream} over undici: the registry API requests (manifests, blobs, tags, referrers) and the
 * checks on what comes back (digests against bytes, manifest size and media type), composed of
 * {@link Transport} (connection pools per origin, retries, bounded bodies; transport.ts),
 * {@link TokenAuth} (token and basic auth, realm checks, token cache; token-auth.ts),
 * {@link RedirectPolicy} (blob redirects; redirects.ts) and {@link UpstreamErrors} (upstream answers →
 * `RegistryError`; errors.ts).
 *
 * Credentials go to exactly two places: the configured registry origin and a token realm on the
 * upstream's own host or in `auth.realms`; any other realm is refused (and not remembered). A blob
 * redirect to another origin (Docker Hub → Cloudflare, S3 signed URLs) is followed without
 * `Authorization`: the signature is in the URL, and some CDNs reject or log the header. A redirect
 * never reaches a loopback, link-local or private address unless its host is in `redirects.allow`:
 * the connector checks the address each connection is actually made to (see address-guard.ts).
 */
export class UndiciUpstream implements Upstream {
  readonly host: string;
  readonly #config: UndiciUpstreamConfig;
  readonly #base: URL;
  readonly #basePath: string;
  readonly #log: UpstreamLogger;
  readonly #maxManifestBytes: number;
  readonly #errors: UpstreamErrors;
  readonly #transport: Transport;
  readonly #auth: TokenAuth;
  readonly #redirects: RedirectPolicy;

  constructor(options: UndiciUpstreamOptions) {
    const { host, config } = options;
    this.host = host;
    this.#config = config;
    this.#log = options.logger ?? silentLogger;
    this.#errors = new UpstreamErrors({
      host,
      config,
      log: this.#log,
      onRefused: options.onRefused,
    });
    this.#maxManifestBytes = options.maxManifestBytes ?? MAX_MANIFEST_BYTES;
    const base = new URL(config.url ?? `https://${host}`);
    if (base.protocol !== 'http:' && base.protocol !== 'https:') {
      throw new TypeError(`upstream ${host}: url must be http:// or https://`);
    }
    // Credentials belong in username/password; never let a URL carry them into logs or redirects.
    base.username = '';
    base.password = '';
    this.#base = base;
    this.#redirects = new RedirectPolicy({
      host,
      base,
      allow: config.redirects?.allow ?? [],
      allowHttp: config.redirects?.allowHttp === true,
      errors: this.#errors,
      log: this.#log,
    });
    this.#basePath = base.pathname.replace(/\/+$/, '');
    const ownHostname = unbracket(base.hostname);
    const ownPort = portOf(base);
    // The upstream's own URL may well be private (a registry in the cluster); what it sends us to
    // (redirect targets) is checked unless the operator allowed the host. Allowed realms are trusted
    // like the upstream: they were named in the config, and TokenAuth refuses every other one.
    this.#transport = new Transport({
      host,
      config,
      log: this.#log,
      errors: this.#errors,
      trustedHost: (hostname, port) =>
        (hostname === ownHostname && port === ownPort) ||
        this.#redirects.hostAllowed(hostname, port) ||
        this.#auth.realmAllowed(hostname, port),
      onRequest: options.onRequest,
      retryDelayMs: options.retryDelayMs ?? 100,
      userAgent: options.userAgent ?? 'pullwarden',
      lookup: options.lookup,
    });
    this.#auth = new TokenAuth({
      host,
      base,
      credentials: config,
      realms: config.auth?.realms ?? [],
      transport: this.#transport,
      errors: this.#errors,
      log: this.#log,
      now: options.now,
    });
  }

  async headManifest(
    repository: string,
    reference: string,
    options: RequestOptions = {},
  ): Promise<ManifestHead> {
    const ref = parseManifestReference(reference);
    const ex = this.#manifestExchange('HEAD', repository, ref, options);
    const res = await this.#auth.exchange(ex);
    if (res.statusCode !== 200) throw await this.#errors.failure(ex, res, 'MANIFEST_UNKNOWN');
    await discard(res.body);
    const headerDigest = this.#digestHeader(res);
    const mediaType = bareMediaType(res.headers['content-type']);
    const size = contentLength(res.headers['content-length']);
    if (ref.kind === 'digest' && headerDigest !== undefined && headerDigest !== ref.digest) {
      throw this.#errors.mismatch(ex, ref.digest);
    }
    if (size !== undefined && !isGenericContentType(mediaType)) {
      // For a digest reference the 200 itself confirms the digest; the bytes are still checked when
      // the manifest is fetched, and nothing is admitted on a HEAD alone.
      if (ref.kind === 'digest') return { digest: ref.digest, mediaType, size };
      if (headerDigest !== undefined) return { digest: headerDigest, mediaType, size };
    }
    // Some registries (older Artifactory, some S3-backed mirrors) answer HEAD without a digest; a tag
    // can then only be resolved by hashing the manifest itself.
    this.#log.debug({ upstream: this.host, repository, reference }, 'manifest HEAD lacks digest, using GET');
    const m = await this.getManifest(repository, reference, options);
    return { digest: m.digest, mediaType: m.mediaType, size: m.size };
  }

  async getManifest(
    repository: string,
    reference: string,
    options: RequestOptions = {},
  ): Promise<FetchedManifest> {
    const ref = parseManifestReference(reference);
    const ex = this.#manifestExchange('GET', repository, ref, options);
    // A buffered manifest is retried as a whole when the connection breaks mid-body: nothing has been
    // handed to anyone yet. (Blob bodies are not: the cache layer decides about those.)
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.#fetchManifestOnce(ex, ref);
      } catch (err) {
        if (!(err instanceof BodyReadError)) throw err;
        if (attempt < this.#config.retries && isRetryableConnectionError(err.cause) && !ex.signal?.aborted) {
          this.#log.debug(
            { upstream: this.host, what: ex.what, code: errorCode(err.cause) },
            'retrying manifest',
          );
          await this.#transport.backoff(attempt, ex.signal);
          continue;
        }
        throw this.#errors.transport(ex, err.cause);
      }
    }
  }

  async getBlob(repository: string, digest: Digest, options: RequestOptions = {}): Promise<UpstreamBlob> {
    const res = await this.#blobRequest('GET', repository, digest, options);
    const size = contentLength(res.headers['content-length']);
    return {
      body: this.#transport.guardBody(res.body, `blob ${repository}@${digest}`, options.signal),
      size,
    };
  }

  async headBlob(
    repository: string,
    digest: Digest,
    options: RequestOptions = {},
  ): Promise<{ size: number }> {
    const res = await this.#blobRequest('HEAD', repository, digest, options);
    await discard(res.body);
    const size = contentLength(res.headers['content-length']);
    if (size === undefined) {
      throw new RegistryError(
        'UNAVAILABLE',
        `upstream ${this.host} sent no size for blob ${repository}@${digest}`,
      );
    }
    return { size };
  }

  async listTags(
    repository: string,
    query: { n?: number; last?: string },
    options: RequestOptions = {},
  ): Promise<TagList> {
    parseRepositoryName(repository);
    const url = this.#url(`/v2/${repository}/tags/list`);
    if (query.n !== undefined) url.searchParams.set('n', String(query.n));
    if (query.last !== undefined) url.searchParams.set('last', query.last);
    const ex = this.#registryExchange('tags', 'GET', url, repository, `tags of ${repository}`, options);
    ex.headers.accept = 'application/json';
    const res = await this.#auth.exchange(ex);
    if (res.statusCode !== 200) throw await this.#errors.failure(ex, res, 'NAME_UNKNOWN');
    const body = await this.#transport.readBody(ex, res, MAX_TAG_LIST_BYTES);
    const link = headerValue(res.headers.link);
    return link === undefined ? { body } : { body, link };
  }

  async getReferrers(
    repository: string,
    digest: Digest,
    artifactType: string | undefined,
    options: RequestOptions = {},
  ): Promise<ReferrersAnswer | undefined> {
    parseRepositoryName(repository);
    parseDigest(digest);
    const url = this.#url(`/v2/${repository}/referrers/${digest}`);
    if (artifactType !== undefined) url.searchParams.set('artifactType', artifactType);
    const what = `referrers of ${repository}@${digest}`;
    const ex = this.#registryExchange('referrers', 'GET', url, repository, what, options);
    ex.headers.accept = MediaType.ociIndex;
    const res = await this.#auth.exchange(ex);
    // distribution-spec: a registry that supports the API answers 200 (an empty index for an unknown
    // digest); 404 means the route does not exist (distribution 2.8, Docker Hub before 2023), and the
    // caller falls back to the referrers tag schema.
    if (res.statusCode === 404) {
      await discard(res.body);
      return undefined;
    }
    if (res.statusCode !== 200) throw await this.#errors.failure(ex, res, 'MANIFEST_UNKNOWN');
    const served = bareMediaType(res.headers['content-type']);
    if (served !== MediaType.ociIndex && !isGenericContentType(served)) {
      // Some registries answer unknown routes with 200 and an HTML page; that is not the API.
      await discard(res.body);
      this.#log.debug(
        { upstream: this.host, repository, mediaType: served },
        'referrers answer is not an index',
      );
      return undefined;
    }
    const body = await this.#transport.readBody(ex, res, this.#maxManifestBytes);
    // A generic Content-Type (application/json from some registries) is judged by the body, exactly
    // as a manifest is: an index by its `mediaType` or shape is the API's answer, anything else is not.
    const mediaType = manifestMediaType(served, body);
    if (mediaType !== MediaType.ociIndex) {
      this.#log.debug({ upstream: this.host, repository, mediaType }, 'referrers answer is not an index');
      return undefined;
    }
    const filtersApplied = headerValue(res.headers['oci-filters-applied']);
    return filtersApplied === undefined ? { body, mediaType } : { body, mediaType, filtersApplied };
  }

  async close(): Promise<void> {
    await this.#transport.close();
  }

  // ---- requests ------------------------------------------------------------------------------------

  #url(path: string): URL {
    return new URL(this.#basePath + path, this.#base.origin);
  }

  #registryExchange(
    kind: UpstreamRequestKind,
    method: 'GET' | 'HEAD',
    url: URL,
    repository: string,
    what: string,
    options: RequestOptions,
  ): Exchange {
    return { kind, method, url, headers: {}, repository, what, authenticate: true, signal: options.signal };
  }

  #manifestExchange(
    method: 'GET' | 'HEAD',
    repository: string,
    ref: ManifestReference,
    options: RequestOptions,
  ): Exchange {
    parseRepositoryName(repository);
    const reference = ref.kind === 'tag' ? ref.tag : ref.digest;
    const url = this.#url(`/v2/${repository}/manifests/${reference}`);
    const sep = ref.kind === 'tag' ? ':' : '@';
    const ex = this.#registryExchange(
      'manifest',
      method,
      url,
      repository,
      `manifest ${repository}${sep}${reference}`,
      options,
    );
    const accept =
      options.accept !== undefined && options.accept.length > 0 ? options.accept : defaultManifestAccept;
    ex.headers.accept = accept.join(', ');
    return ex;
  }

  async #fetchManifestOnce(ex: Exchange, ref: ManifestReference): Promise<FetchedManifest> {
    const res = await this.#auth.exchange(ex);
    if (res.statusCode !== 200) throw await this.#errors.failure(ex, res, 'MANIFEST_UNKNOWN');
    const declared = contentLength(res.headers['content-length']);
    let bytes: Buffer | undefined;
    if (declared === undefined || declared <= this.#maxManifestBytes) {
      try {
        bytes = await readLimited(res.body, this.#maxManifestBytes, this.#config.bodyTimeout);
      } catch (err) {
        throw new BodyReadError(err);
      }
    } else {
      res.body.destroy();
    }
    if (bytes === undefined) {
      throw new RegistryError(
        'MANIFEST_INVALID',
        `upstream ${this.host} sent a ${ex.what} larger than ${this.#maxManifestBytes} bytes`,
      );
    }
    const headerDigest = this.#digestHeader(res);
    let digest: Digest;
    if (ref.kind === 'digest') {
      digest = ref.digest;
      if (digestOf(bytes, digestAlgorithm(digest)) !== digest) throw this.#errors.mismatch(ex, digest);
    } else {
      digest = digestOf(bytes, headerDigest === undefined ? 'sha256' : digestAlgorithm(headerDigest));
      // The upstream's own claim about the tag disagrees with its bytes: a broken or tampered answer.
      if (headerDigest !== undefined && headerDigest !== digest) {
        throw new RegistryError(
          'UNAVAILABLE',
          `upstream ${this.host} sent a ${ex.what} whose bytes do not match its Docker-Content-Digest ${headerDigest}`,
        );
      }
    }
    return {
      digest,
      mediaType: manifestMediaType(res.headers['content-type'], bytes),
      size: bytes.length,
      bytes,
    };
  }

  async #blobRequest(
    method: 'GET' | 'HEAD',
    repository: string,
    digest: Digest,
    options: RequestOptions,
  ): Promise<Dispatcher.ResponseData> {
    parseRepositoryName(repository);
    parseDigest(digest);
    let url = this.#url(`/v2/${repository}/blobs/${digest}`);
    const what = `blob ${repository}@${digest}`;
    for (let hop = 0; ; hop++) {
      const ex = this.#registryExchange('blob', method, url, repository, what, options);
      const res = await this.#auth.exchange(ex);
      if (res.statusCode === 200) return res;
      if (!isRedirect(res.statusCode)) throw await this.#errors.failure(ex, res, 'BLOB_UNKNOWN');
      await discard(res.body);
      url = this.#redirects.next(headerValue(res.headers.location), url, what, hop);
    }
  }

  #digestHeader(res: Dispatcher.ResponseData): Digest | undefined {
    const value = headerValue(res.headers['docker-content-digest'])?.trim();
    return value !== undefined && isDigest(value) ? value : undefined;
  }
}
