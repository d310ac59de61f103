/**
 * An in-process fake OCI registry for integration tests: `node:http` on 127.0.0.1, port 0.
 *
 * It serves what tests put into it (manifests byte-exact, blobs, tags), counts every request so tests
 * can prove caching by counting, and injects faults per request. Optional behaviours mirror real
 * registries: distribution token auth (Docker Hub, GHCR), basic auth (Harbor robot accounts, Artifactory),
 * blob redirects to a CDN on another origin (Docker Hub → Cloudflare), HEAD without
 * `Docker-Content-Digest` (older Artifactory), and the referrers API (absent by default, as in
 * distribution 2.8, which answers 404).
 *
 * ```ts
 * const fake = await startFakeUpstream({ auth: 'bearer', redirectBlobs: true });
 * const image = await makeImage(fake, 'library/nginx', '1.27', { layers: 2, layerSize: 1024 });
 * fake.fault({ kind: 'blob', origin: 'cdn' }, 'reset-mid-body', { times: 1 });
 * // … pull through the proxy …
 * expect(fake.count({ kind: 'manifest', method: 'GET' })).toBe(1);
 * await fake.close();
 * ```
 */
import { createHash, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import type { IncomingMessage, OutgoingHttpHeaders, Server, ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

/** A `sha256:<hex>` digest string. */
export type FakeDigest = `sha256:${string}`;

/** What a request was for. `other` is anything the fake does not route (answered 404). */
export type FakeRequestKind = 'manifest' | 'blob' | 'tags' | 'referrers' | 'token' | 'ping' | 'other';

/** One request as the fake saw it. */
export interface RecordedRequest {
  /** `registry` for the main listener, `cdn` for the blob redirect target. */
  origin: 'registry' | 'cdn';
  method: string;
  kind: FakeRequestKind;
  /** Repository from the path (or from the token `scope`). */
  repo?: string;
  /** Tag or digest from the path. */
  ref?: string;
  /** Path and query as received. */
  url: string;
  /** The `Authorization` header as received (tests assert it was stripped on the CDN). */
  authorization?: string;
  accept?: string;
  /** The status the fake answered; undefined for a reset connection or while the answer is pending. */
  status?: number;
  /** Body bytes written to the socket (for `{ body }` faults; the kernel buffers some of them). */
  sentBytes?: number;
}

/** Selects requests: every given field must match. A function gets the full record. */
export type RequestMatcher =
  | {
      method?: string;
      kind?: FakeRequestKind;
      repo?: string;
      ref?: string;
      origin?: 'registry' | 'cdn';
    }
  | ((request: RecordedRequest) => boolean);

/**
 * A fault to inject into matching requests.
 *
 * - `'reset-before-headers'`: TCP RST as soon as the request arrives.
 * - `'reset-mid-body'`: headers and half the body, then RST.
 * - `'truncate'`: the full `Content-Length`, half the body, then a clean FIN.
 * - `'wrong-bytes'`: same length and headers, different bytes (a corrupt or lying upstream).
 * - `{ status }`: an OCI error answer; `retryAfter` sets `Retry-After` (seconds, or a date string).
 * - `{ delayHeadersMs }`: wait before answering normally.
 * - `{ delayBodyMs, chunkBytes }`: headers at once, then the body in chunks with a pause before each.
 * - `{ headers }`: answer normally, with these headers replacing the real ones (a lying upstream: a
 *   HEAD whose `Content-Length` is not the blob's size, a manifest with a wrong `Content-Type`).
 * - `{ body, chunked }`: answer 200 with these bytes instead of the stored ones (a lying upstream:
 *   more bytes than the digest has), with their Content-Length or, with `chunked`, none; written
 *   with backpressure, so `sentBytes` tells how much the client really took.
 * - `{ redirect }`: answer with a redirect to that `Location`, as a hostile
 *   upstream would to point the proxy at an internal address (`redirectStatus`, default 307).
 */
export type Fault =
  | 'reset-before-headers'
  | 'reset-mid-body'
  | 'truncate'
  | 'wrong-bytes'
  | {
      status: number;
      retryAfter?: number | string;
      code?: string;
      /** Trickle the error body too: `chunkBytes` (default 1) after each pause of this many ms. */
      delayBodyMs?: number;
      chunkBytes?: number;
    }
  | { delayHeadersMs: number }
  | { delayBodyMs: number; chunkBytes?: number }
  | { headers: OutgoingHttpHeaders }
  | { redirect: string; redirectStatus?: number }
  | { body: Buffer; chunked?: boolean };

export interface FakeUpstreamOptions {
  /**
   * `'bearer'`: distribution token auth with a `/token` endpoint on the same server; anonymous unless
   * `username` is set, then the token endpoint requires those basic credentials. `'basic'`: every
   * `/v2` request needs basic credentials (`username`/`password`, default `user`/`secret`).
   */
  auth?: 'bearer' | 'basic';
  username?: string;
  password?: string;
  /** `expires_in` of issued tokens in seconds (default 300); tokens really expire then. */
  tokenExpiresIn?: number;
  /** Name of the token field in the token answer (default `token`). */
  tokenField?: 'token' | 'access_token';
  /** Answer blob GET/HEAD with a 307 to a second listener (another origin), as Docker Hub does. */
  redirectBlobs?: boolean;
  /** Implement `GET /v2/<repo>/referrers/<digest>`; otherwise 404 like distribution 2.8. */
  referrersApi?: boolean;
  /** Leave `Docker-Content-Digest` off manifest answers (HEAD and GET). */
  omitDigestHeader?: boolean;
  /** Answer `tags/list` with every tag, ignoring `n` and `last` (as many registries do). */
  ignoreTagPagination?: boolean;
  /** Page `tags/list` by this many tags when the client sends no `n` (as GHCR and Quay do). */
  tagPageSize?: number;
  /** Serve the registry listener over HTTPS with this key and certificate (the CDN stays plain HTTP). */
  tls?: { key: Buffer | string; cert: Buffer | string };
}

export interface FaultOptions {
  /** How many matching requests get the fault (default: all of them, until `clearFaults`). */
  times?: number;
}

export interface FakeUpstream {
  /** `http://127.0.0.1:<port>`: use as the upstream `url`. */
  readonly url: string;
  /** `127.0.0.1:<port>`: the registry host as clients name it. */
  readonly host: string;
  /** Base URL of the CDN listener that redirected blobs are served from. */
  readonly cdnUrl: string;
  /** Every request so far, oldest first. */
  readonly requests: readonly RecordedRequest[];
  /** Number of recorded requests matching `matcher` (all requests without one). */
  count(matcher?: RequestMatcher): number;
  /** Forget recorded requests (faults stay). */
  resetCounts(): void;
  /** Inject `fault` into requests matching `matcher`; earlier faults win when several match. */
  fault(matcher: RequestMatcher, fault: Fault, options?: FaultOptions): void;
  clearFaults(): void;
  /** Store a blob; `repo` undefined makes it visible in every repository. Returns its digest. */
  putBlob(repo: string | undefined, bytes: Buffer | string): FakeDigest;
  /** Store a manifest byte-exact; a tag `reference` also points the tag at it. Returns its digest. */
  putManifest(
    repo: string,
    reference: string | undefined,
    bytes: Buffer | string,
    mediaType: string,
  ): FakeDigest;
  /** Point `tag` at an existing manifest digest (moving it if it exists: tag drift). */
  tag(repo: string, tag: string, digest: string): void;
  untag(repo: string, tag: string): void;
  /** Issued bearer tokens that are still valid (for asserting token reuse). */
  readonly issuedTokens: number;
  /**
   * Announce `realm` in bearer challenges instead of `<url>/token` (a hostile upstream pointing the
   * proxy's credentials elsewhere); undefined restores the own realm.
   */
  setRealm(realm: string | undefined): void;
  close(): Promise<void>;
}

interface StoredManifest {
  bytes: Buffer;
  mediaType: string;
}

interface Repo {
  manifests: Map<string, StoredManifest>;
  tags: Map<string, string>;
  blobs: Set<string>;
}

interface Answer {
  status: number;
  headers: OutgoingHttpHeaders;
  body?: Buffer;
}

interface FaultEntry {
  matcher: RequestMatcher;
  fault: Fault;
  remaining: number;
}

/** sha256 digest of `bytes`. */
export function sha256(bytes: Buffer | string): FakeDigest {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

function matches(matcher: RequestMatcher, r: RecordedRequest): boolean {
  if (typeof matcher === 'function') return matcher(r);
  return (
    (matcher.method === undefined || matcher.method === r.method) &&
    (matcher.kind === undefined || matcher.kind === r.kind) &&
    (matcher.repo === undefined || matcher.repo === r.repo) &&
    (matcher.ref === undefined || matcher.ref === r.ref) &&
    (matcher.origin === undefined || matcher.origin === r.origin)
  );
}

function ociError(status: number, code: string, message: string, headers: OutgoingHttpHeaders = {}): Answer {
  const body = Buffer.from(JSON.stringify({ errors: [{ code, message }] }));
  return { status, headers: { 'content-type': 'application/json', ...headers }, body };
}

async function listen(server: Server): Promise<number> {
  return await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port));
  });
}

/** Start a fake registry (and its CDN listener) on 127.0.0.1 with ephemeral ports. */
export async function startFakeUpstream(options: FakeUpstreamOptions = {}): Promise<FakeUpstream> {
  const repos = new Map<string, Repo>();
  const blobs = new Map<string, Buffer>();
  const globalBlobs = new Set<string>();
  const requests: RecordedRequest[] = [];
  let faults: FaultEntry[] = [];
  const tokens = new Map<string, { scopes: string[]; expiresAt: number }>();
  const closing = new AbortController();
  const username = options.username ?? (options.auth === 'basic' ? 'user' : undefined);
  const password = options.password ?? (options.auth === 'basic' ? 'secret' : undefined);
  const expiresIn = options.tokenExpiresIn ?? 300;
  let realmOverride: string | undefined;

  const repo = (name: string): Repo => {
    let r = repos.get(name);
    if (r === undefined) {
      r = { manifests: new Map(), tags: new Map(), blobs: new Set() };
      repos.set(name, r);
    }
    return r;
  };

  const onRegistry = (req: IncomingMessage, res: ServerResponse) => void handle(req, res, 'registry');
  const registry: Server =
    options.tls === undefined ? createServer(onRegistry) : createHttpsServer(options.tls, onRegistry);
  const cdn = createServer((req, res) => void handle(req, res, 'cdn'));
  const [port, cdnPort] = await Promise.all([listen(registry), listen(cdn)]);
  const url = `${options.tls === undefined ? 'http' : 'https'}://127.0.0.1:${port}`;
  const cdnUrl = `http://127.0.0.1:${cdnPort}`;

  function classify(req: IncomingMessage, origin: 'registry' | 'cdn'): RecordedRequest {
    const full = req.url ?? '/';
    const u = new URL(full, url);
    const record: RecordedRequest = { origin, method: req.method ?? 'GET', kind: 'other', url: full };
    if (req.headers.authorization !== undefined) record.authorization = req.headers.authorization;
    if (req.headers.accept !== undefined) record.accept = req.headers.accept;
    const path = u.pathname;
    let m: RegExpExecArray | null;
    if (origin === 'cdn') {
      if ((m = /^\/cdn\/([^/]+)\/(sha256:[a-f0-9]{64})$/.exec(path))) {
        record.kind = 'blob';
        record.repo = decodeURIComponent(m[1] ?? '');
        record.ref = m[2] ?? '';
      }
    } else if (path === '/v2/' || path === '/v2') {
      record.kind = 'ping';
    } else if (path === '/token') {
      record.kind = 'token';
      const scope = /^repository:([^:]+):/.exec(u.searchParams.get('scope') ?? '');
      if (scope?.[1] !== undefined) record.repo = scope[1];
    } else if ((m = /^\/v2\/(.+)\/manifests\/([^/]+)$/.exec(path))) {
      record.kind = 'manifest';
      record.repo = m[1] ?? '';
      record.ref = m[2] ?? '';
    } else if ((m = /^\/v2\/(.+)\/blobs\/([^/]+)$/.exec(path))) {
      record.kind = 'blob';
      record.repo = m[1] ?? '';
      record.ref = m[2] ?? '';
    } else if ((m = /^\/v2\/(.+)\/tags\/list$/.exec(path))) {
      record.kind = 'tags';
      record.repo = m[1] ?? '';
    } else if ((m = /^\/v2\/(.+)\/referrers\/([^/]+)$/.exec(path))) {
      record.kind = 'referrers';
      record.repo = m[1] ?? '';
      record.ref = m[2] ?? '';
    }
    return record;
  }

  function takeFault(record: RecordedRequest): Fault | undefined {
    for (const entry of faults) {
      if (entry.remaining > 0 && matches(entry.matcher, record)) {
        entry.remaining--;
        return entry.fault;
      }
    }
    return undefined;
  }

  function challenge(record: RecordedRequest): Answer | undefined {
    if (record.origin === 'cdn' || record.kind === 'token' || options.auth === undefined) return undefined;
    const header = record.authorization ?? '';
    if (options.auth === 'basic') {
      const expected = `Basic ${Buffer.from(`${username ?? ''}:${password ?? ''}`).toString('base64')}`;
      if (header === expected) return undefined;
      return ociError(401, 'UNAUTHORIZED', 'authentication required', {
        'www-authenticate': 'Basic realm="fake-registry"',
      });
    }
    const scope = record.repo === undefined ? undefined : `repository:${record.repo}:pull`;
    const token = header.startsWith('Bearer ') ? tokens.get(header.slice(7)) : undefined;
    if (token !== undefined && token.expiresAt > Date.now()) {
      if (record.kind === 'ping') return undefined;
      const granted = token.scopes.some((s) => {
        const [type, name, actions] = s.split(':');
        return type === 'repository' && name === record.repo && (actions ?? '').split(',').includes('pull');
      });
      if (granted) return undefined;
    }
    const params = [`realm="${realmOverride ?? `${url}/token`}"`, 'service="fake-registry"'];
    if (scope !== undefined) params.push(`scope="${scope}"`);
    return ociError(401, 'UNAUTHORIZED', 'authentication required', {
      'www-authenticate': `Bearer ${params.join(',')}`,
    });
  }

  function issueToken(req: IncomingMessage): Answer {
    const u = new URL(req.url ?? '/', url);
    if (username !== undefined) {
      const expected = `Basic ${Buffer.from(`${username}:${password ?? ''}`).toString('base64')}`;
      if (req.headers.authorization !== expected) return ociError(401, 'UNAUTHORIZED', 'bad credentials');
    }
    const token = randomBytes(24).toString('base64url');
    const scopes = (u.searchParams.getAll('scope').join(' ') || '').split(' ').filter((s) => s !== '');
    tokens.set(token, { scopes, expiresAt: Date.now() + expiresIn * 1000 });
    const body = Buffer.from(
      JSON.stringify({
        [options.tokenField ?? 'token']: token,
        expires_in: expiresIn,
        issued_at: new Date().toISOString(),
      }),
    );
    return { status: 200, headers: { 'content-type': 'application/json' }, body };
  }

  function manifestAnswer(record: RecordedRequest): Answer {
    const r = repos.get(record.repo ?? '');
    if (r === undefined) return ociError(404, 'NAME_UNKNOWN', 'repository name not known to registry');
    const ref = record.ref ?? '';
    const digest = ref.startsWith('sha256:') ? ref : r.tags.get(ref);
    const m = digest === undefined ? undefined : r.manifests.get(digest);
    if (digest === undefined || m === undefined) return ociError(404, 'MANIFEST_UNKNOWN', 'manifest unknown');
    const headers: OutgoingHttpHeaders = { 'content-type': m.mediaType, 'content-length': m.bytes.length };
    if (options.omitDigestHeader !== true) headers['docker-content-digest'] = digest;
    return { status: 200, headers, body: m.bytes };
  }

  function blobAnswer(record: RecordedRequest): Answer {
    const digest = record.ref ?? '';
    const bytes = blobs.get(digest);
    const visible =
      bytes !== undefined &&
      (record.origin === 'cdn' ||
        globalBlobs.has(digest) ||
        repos.get(record.repo ?? '')?.blobs.has(digest) === true);
    if (!visible) return ociError(404, 'BLOB_UNKNOWN', 'blob unknown to registry');
    if (options.redirectBlobs === true && record.origin === 'registry') {
      const location = `${cdnUrl}/cdn/${encodeURIComponent(record.repo ?? '')}/${digest}?sig=${randomBytes(8).toString('hex')}`;
      return { status: 307, headers: { location, 'content-length': 0 } };
    }
    return {
      status: 200,
      headers: {
        'content-type': 'application/octet-stream',
        'content-length': bytes.length,
        'docker-content-digest': digest,
      },
      body: bytes,
    };
  }

  function tagsAnswer(record: RecordedRequest, u: URL): Answer {
    const r = repos.get(record.repo ?? '');
    if (r === undefined) return ociError(404, 'NAME_UNKNOWN', 'repository name not known to registry');
    let all = [...r.tags.keys()].sort();
    if (options.ignoreTagPagination === true) {
      return {
        status: 200,
        headers: { 'content-type': 'application/json' },
        body: Buffer.from(JSON.stringify({ name: record.repo, tags: all })),
      };
    }
    const last = u.searchParams.get('last');
    if (last !== null) all = all.filter((t) => t > last);
    const nParam =
      u.searchParams.get('n') ?? (options.tagPageSize === undefined ? null : String(options.tagPageSize));
    const headers: OutgoingHttpHeaders = { 'content-type': 'application/json' };
    let page = all;
    if (nParam !== null) {
      const n = Number(nParam);
      page = all.slice(0, n);
      const lastTag = page.at(-1);
      if (all.length > page.length && lastTag !== undefined) {
        // distribution's format: `</v2/<name>/tags/list?last=<tag>&n=<n>>; rel="next"`.
        headers.link = `</v2/${record.repo ?? ''}/tags/list?last=${encodeURIComponent(lastTag)}&n=${n}>; rel="next"`;
      }
    }
    return { status: 200, headers, body: Buffer.from(JSON.stringify({ name: record.repo, tags: page })) };
  }

  function referrersAnswer(record: RecordedRequest, u: URL): Answer {
    if (options.referrersApi !== true) {
      // distribution 2.8 has no such route: its mux answers a plain-text 404.
      return {
        status: 404,
        headers: { 'content-type': 'text/plain' },
        body: Buffer.from('404 page not found\n'),
      };
    }
    const artifactType = u.searchParams.get('artifactType');
    const descriptors: Record<string, unknown>[] = [];
    for (const [digest, m] of repos.get(record.repo ?? '')?.manifests ?? []) {
      let json: Record<string, unknown>;
      try {
        json = JSON.parse(m.bytes.toString('utf8')) as Record<string, unknown>;
      } catch {
        continue;
      }
      const subject = json.subject as { digest?: string } | undefined;
      if (subject?.digest !== record.ref) continue;
      const config = json.config as { mediaType?: string } | undefined;
      const type = typeof json.artifactType === 'string' ? json.artifactType : config?.mediaType;
      if (artifactType !== null && type !== artifactType) continue;
      const d: Record<string, unknown> = { mediaType: m.mediaType, digest, size: m.bytes.length };
      if (type !== undefined) d.artifactType = type;
      if (json.annotations !== undefined) d.annotations = json.annotations;
      descriptors.push(d);
    }
    const headers: OutgoingHttpHeaders = { 'content-type': 'application/vnd.oci.image.index.v1+json' };
    if (artifactType !== null) headers['oci-filters-applied'] = 'artifactType';
    const body = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.index.v1+json',
        manifests: descriptors,
      }),
    );
    return { status: 200, headers, body };
  }

  function route(req: IncomingMessage, record: RecordedRequest): Answer {
    const u = new URL(req.url ?? '/', url);
    const readOnly = record.method === 'GET' || record.method === 'HEAD';
    if (!readOnly) return ociError(405, 'UNSUPPORTED', 'the fake registry is read-only');
    switch (record.kind) {
      case 'ping':
        return { status: 200, headers: { 'content-type': 'application/json' }, body: Buffer.from('{}') };
      case 'token':
        return issueToken(req);
      case 'manifest':
        return manifestAnswer(record);
      case 'blob':
        return blobAnswer(record);
      case 'tags':
        return tagsAnswer(record, u);
      case 'referrers':
        return referrersAnswer(record, u);
      case 'other':
        return {
          status: 404,
          headers: { 'content-type': 'text/plain' },
          body: Buffer.from('404 page not found\n'),
        };
    }
  }

  /** Wait `ms`, or less when the fake closes; false when it closed. */
  async function pause(ms: number): Promise<boolean> {
    try {
      await sleep(ms, undefined, { signal: closing.signal });
      return true;
    } catch {
      return false;
    }
  }

  async function handle(
    req: IncomingMessage,
    res: ServerResponse,
    origin: 'registry' | 'cdn',
  ): Promise<void> {
    const record = classify(req, origin);
    requests.push(record);
    try {
      // Authentication first: faults target requests that would otherwise have been served.
      let answer = challenge(record);
      const fault = answer === undefined ? takeFault(record) : undefined;
      if (fault === 'reset-before-headers') {
        req.socket.resetAndDestroy();
        return;
      }
      if (typeof fault === 'object' && 'status' in fault) {
        const headers: OutgoingHttpHeaders = {};
        if (fault.retryAfter !== undefined) headers['retry-after'] = String(fault.retryAfter);
        // An injected 401 on a bearer registry challenges again, as a registry that revoked a token does.
        if (fault.status === 401 && options.auth === 'bearer') {
          headers['www-authenticate'] =
            `Bearer realm="${realmOverride ?? `${url}/token`}",service="fake-registry"`;
        }
        answer = ociError(
          fault.status,
          fault.code ?? (fault.status === 429 ? 'TOOMANYREQUESTS' : 'UNKNOWN'),
          'injected fault',
          headers,
        );
      }
      if (typeof fault === 'object' && 'redirect' in fault) {
        answer = { status: fault.redirectStatus ?? 307, headers: { location: fault.redirect } };
      }
      if (typeof fault === 'object' && 'delayHeadersMs' in fault) {
        if (!(await pause(fault.delayHeadersMs)) || res.destroyed) return;
      }
      answer ??= route(req, record);
      if (typeof fault === 'object' && 'headers' in fault) {
        answer = { ...answer, headers: { ...answer.headers, ...fault.headers } };
      }
      record.status = answer.status;
      if (typeof fault === 'object' && 'body' in fault && answer.status === 200) {
        await sendLie(req, res, record, answer, fault);
        return;
      }
      await send(req, res, answer, fault);
    } catch (err) {
      if (!res.headersSent) {
        record.status = 500;
        res.writeHead(500, { 'content-type': 'text/plain' }).end(String(err));
      } else {
        res.destroy();
      }
    }
  }

  async function sendLie(
    req: IncomingMessage,
    res: ServerResponse,
    record: RecordedRequest,
    answer: Answer,
    fault: { body: Buffer; chunked?: boolean },
  ): Promise<void> {
    const headers: OutgoingHttpHeaders = { ...answer.headers, 'content-length': fault.body.length };
    if (fault.chunked) delete headers['content-length'];
    res.writeHead(200, headers);
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    record.sentBytes = 0;
    const chunk = 64 * 1024;
    for (let at = 0; at < fault.body.length; at += chunk) {
      if (res.destroyed) return;
      const part = fault.body.subarray(at, at + chunk);
      const more = res.write(part);
      record.sentBytes += part.length;
      if (!more) {
        const drained = await new Promise<boolean>((resolve) => {
          const done = (ok: boolean) => () => {
            res.off('drain', onDrain);
            res.off('close', onClose);
            resolve(ok);
          };
          const onDrain = done(true);
          const onClose = done(false);
          res.once('drain', onDrain);
          res.once('close', onClose);
        });
        if (!drained) return;
      }
    }
    res.end();
  }

  async function send(req: IncomingMessage, res: ServerResponse, answer: Answer, fault: Fault | undefined) {
    const body = answer.body ?? Buffer.alloc(0);
    const headers = { 'content-length': body.length, ...answer.headers };
    // Body faults apply to 200 answers with a body only (not to a redirect or an injected status).
    if (
      req.method === 'HEAD' ||
      (answer.status !== 200 && !(typeof fault === 'object' && 'status' in fault && fault.delayBodyMs)) ||
      fault === undefined ||
      (typeof fault === 'object' && !('delayBodyMs' in fault))
    ) {
      res.writeHead(answer.status, headers);
      res.end(req.method === 'HEAD' ? undefined : body);
      return;
    }
    if (fault === 'wrong-bytes') {
      const wrong = Buffer.from(body);
      for (let i = 0; i < wrong.length; i++) wrong[i] = (wrong[i] ?? 0) ^ 0xff;
      // Still plausible JSON length-wise; the point is that the digest no longer matches.
      res.writeHead(answer.status, headers);
      res.end(wrong);
      return;
    }
    if (fault === 'reset-mid-body' || fault === 'truncate') {
      res.writeHead(answer.status, headers);
      res.write(body.subarray(0, Math.floor(body.length / 2)));
      // Let the headers and the half body reach the client before the connection goes.
      await pause(50);
      if (fault === 'reset-mid-body') req.socket.resetAndDestroy();
      else req.socket.end();
      return;
    }
    if (typeof fault === 'object' && 'delayBodyMs' in fault) {
      res.writeHead(answer.status, headers);
      // Node holds headers back until the first body write; a slow body must not look like slow headers.
      res.flushHeaders();
      const chunk = Math.max(1, fault.chunkBytes ?? ('status' in fault ? 1 : 64 * 1024));
      for (let at = 0; at < body.length; at += chunk) {
        if (!(await pause(fault.delayBodyMs ?? 0)) || res.destroyed) return;
        res.write(body.subarray(at, at + chunk));
      }
      res.end();
      return;
    }
    res.writeHead(answer.status, headers);
    res.end(body);
  }

  const fake: FakeUpstream = {
    url,
    host: `127.0.0.1:${port}`,
    cdnUrl,
    requests,
    count: (matcher) =>
      matcher === undefined ? requests.length : requests.filter((r) => matches(matcher, r)).length,
    resetCounts: () => {
      requests.length = 0;
    },
    fault: (matcher, fault, faultOptions = {}) => {
      faults.push({ matcher, fault, remaining: faultOptions.times ?? Number.POSITIVE_INFINITY });
    },
    clearFaults: () => {
      faults = [];
    },
    putBlob: (name, bytes) => {
      const buf = typeof bytes === 'string' ? Buffer.from(bytes) : bytes;
      const digest = sha256(buf);
      blobs.set(digest, buf);
      if (name === undefined) globalBlobs.add(digest);
      else repo(name).blobs.add(digest);
      return digest;
    },
    putManifest: (name, reference, bytes, mediaType) => {
      const buf = typeof bytes === 'string' ? Buffer.from(bytes) : bytes;
      const digest = sha256(buf);
      const r = repo(name);
      r.manifests.set(digest, { bytes: buf, mediaType });
      if (reference !== undefined && !reference.includes(':')) r.tags.set(reference, digest);
      return digest;
    },
    tag: (name, tag, digest) => {
      const r = repo(name);
      if (!r.manifests.has(digest)) throw new Error(`fake upstream: no manifest ${digest} in ${name}`);
      r.tags.set(tag, digest);
    },
    untag: (name, tag) => {
      repos.get(name)?.tags.delete(tag);
    },
    setRealm: (realm) => {
      realmOverride = realm;
    },
    get issuedTokens() {
      return [...tokens.values()].filter((t) => t.expiresAt > Date.now()).length;
    },
    close: async () => {
      closing.abort();
      await Promise.all(
        [registry, cdn].map(
          (server) =>
            new Promise<void>((resolve) => {
              server.close(() => resolve());
              server.closeAllConnections();
            }),
        ),
      );
    },
  };
  return fake;
}

/** What {@link makeImage} stored. */
export interface FakeImage {
  manifestDigest: FakeDigest;
  manifestBytes: Buffer;
  mediaType: string;
  configDigest: FakeDigest;
  configBytes: Buffer;
  layerDigests: FakeDigest[];
  layers: Buffer[];
}

export interface MakeImageOptions {
  /** Number of layers (default 1). */
  layers?: number;
  /** Bytes per layer (default 1024); random content. */
  layerSize?: number;
  /** `oci` (default) or `docker` media types. */
  format?: 'oci' | 'docker';
  platform?: { os: string; architecture: string; variant?: string };
}

/**
 * Store a small image with random layers in `repo`, tagged `tag` (or untagged for `undefined`,
 * as index children are).
 */
export function makeImage(
  fake: FakeUpstream,
  repo: string,
  tag: string | undefined,
  options: MakeImageOptions = {},
): FakeImage {
  const docker = options.format === 'docker';
  const layerType = docker
    ? 'application/vnd.docker.image.rootfs.diff.tar.gzip'
    : 'application/vnd.oci.image.layer.v1.tar+gzip';
  const layers = Array.from({ length: options.layers ?? 1 }, () => randomBytes(options.layerSize ?? 1024));
  const layerDigests = layers.map((l) => fake.putBlob(repo, l));
  const platform = options.platform ?? { os: 'linux', architecture: 'amd64' };
  const configBytes = Buffer.from(
    JSON.stringify({ ...platform, rootfs: { type: 'layers', diff_ids: layerDigests }, config: {} }),
  );
  const configDigest = fake.putBlob(repo, configBytes);
  const mediaType = docker
    ? 'application/vnd.docker.distribution.manifest.v2+json'
    : 'application/vnd.oci.image.manifest.v1+json';
  const manifestBytes = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType,
      config: {
        mediaType: docker
          ? 'application/vnd.docker.container.image.v1+json'
          : 'application/vnd.oci.image.config.v1+json',
        digest: configDigest,
        size: configBytes.length,
      },
      layers: layers.map((l, i) => ({ mediaType: layerType, digest: layerDigests[i], size: l.length })),
    }),
  );
  const manifestDigest = fake.putManifest(repo, tag, manifestBytes, mediaType);
  return { manifestDigest, manifestBytes, mediaType, configDigest, configBytes, layerDigests, layers };
}

/** What {@link makeIndex} stored. */
export interface FakeIndex {
  indexDigest: FakeDigest;
  indexBytes: Buffer;
  mediaType: string;
  images: FakeImage[];
}

/** Store an OCI index with one image per platform (default linux/amd64 and linux/arm64), tagged `tag`. */
export function makeIndex(
  fake: FakeUpstream,
  repo: string,
  tag: string | undefined,
  options: Omit<MakeImageOptions, 'platform' | 'format'> & {
    platforms?: { os: string; architecture: string; variant?: string }[];
  } = {},
): FakeIndex {
  const platforms = options.platforms ?? [
    { os: 'linux', architecture: 'amd64' },
    { os: 'linux', architecture: 'arm64', variant: 'v8' },
  ];
  const images = platforms.map((platform) => makeImage(fake, repo, undefined, { ...options, platform }));
  const mediaType = 'application/vnd.oci.image.index.v1+json';
  const indexBytes = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType,
      manifests: images.map((img, i) => ({
        mediaType: img.mediaType,
        digest: img.manifestDigest,
        size: img.manifestBytes.length,
        platform: platforms[i],
      })),
    }),
  );
  const indexDigest = fake.putManifest(repo, tag, indexBytes, mediaType);
  return { indexDigest, indexBytes, mediaType, images };
}

/**
 * Store an OCI artifact manifest whose `subject` is `subject` (a signature, an SBOM), as the referrers
 * API and the referrers tag schema see them. `tag` defaults to none.
 */
export function makeReferrer(
  fake: FakeUpstream,
  repo: string,
  subject: { digest: string; size: number; mediaType: string },
  artifactType: string,
  options: { payload?: Buffer | string; annotations?: Record<string, string>; tag?: string } = {},
): { digest: FakeDigest; bytes: Buffer } {
  const empty = Buffer.from('{}');
  const emptyDigest = fake.putBlob(repo, empty);
  const payload =
    typeof options.payload === 'string' ? Buffer.from(options.payload) : (options.payload ?? randomBytes(64));
  const payloadDigest = fake.putBlob(repo, payload);
  const mediaType = 'application/vnd.oci.image.manifest.v1+json';
  const manifest: Record<string, unknown> = {
    schemaVersion: 2,
    mediaType,
    artifactType,
    config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: emptyDigest, size: empty.length },
    layers: [{ mediaType: 'application/octet-stream', digest: payloadDigest, size: payload.length }],
    subject,
  };
  if (options.annotations !== undefined) manifest.annotations = options.annotations;
  const bytes = Buffer.from(JSON.stringify(manifest));
  return { digest: fake.putManifest(repo, options.tag, bytes, mediaType), bytes };
}
