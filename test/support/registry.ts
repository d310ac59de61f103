/**
 * A real distribution 2.8 registry (`docker-registry serve`) for e2e tests: the upstream the proxy
 * pulls from, or — with `proxy` — distribution's own pull-through mode as the benchmark's peer.
 *
 * Counting requests: distribution logs every request as a JSON "response completed" line on
 * stderr (log level info, formatter json); `requests()` parses them. What was observed:
 * - containerd with a hosts.toml mirror: HEAD manifest by tag, then GET by digest, all `?ns=<host>`;
 *   no `/v2/` ping. When the host entry equals the server (or the ref's own host), no `ns=`, and on
 *   a 404 it tries host then server: two HEADs of the same URL.
 * - containers/image (skopeo, podman): `GET /v2/` first, GET (never HEAD) of the manifest by tag.
 * - distribution's proxy mode fetches a missed blob twice upstream (one stream to the client, one
 *   background store), the second possibly after the client finished: count with `quietMs`.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './ports.ts';
import { clientEnv, startDaemon, waitFor } from './proc.ts';
import type { Daemon } from './proc.ts';

/** One request as distribution logged it ("response completed" lines of its JSON app log). */
export interface RegistryRequest {
  method: string;
  /** Path without the query string, e.g. `/v2/library/app/blobs/sha256:…`. */
  path: string;
  /** Path and query as sent, e.g. `/v2/app/manifests/v1?ns=docker.io`. */
  uri: string;
  status: number;
  /** Response body bytes written (0 for HEAD). */
  written: number;
  userAgent: string;
  /** `manifest`, `blob`, `upload`, `base` (GET /v2/), `tags`, `catalog` or `other`. */
  kind: 'manifest' | 'blob' | 'upload' | 'base' | 'tags' | 'catalog' | 'other';
  /** Repository name from the path, if any. */
  repository?: string;
  /** Tag or digest from a manifest or blob path. */
  reference?: string;
}

export interface RegistryOptions {
  /**
   * Run distribution as a pull-through cache of `remoteurl` (its own "proxy mode"); the benchmark
   * uses this as the peer to compare against. Without it the registry is a plain read-write store.
   */
  proxy?: { remoteurl: string; username?: string; password?: string };
}

export interface Registry {
  /** `http://127.0.0.1:PORT` */
  readonly url: string;
  /** `127.0.0.1:PORT`, the registry part of an image reference. */
  readonly host: string;
  /** Temp dir holding config.yml and the storage root (`data/`). */
  readonly dir: string;
  readonly daemon: Daemon;
  /**
   * Requests the registry has completed since start (or the last {@link clearRequests}), in log
   * order. Async because distribution writes its log line after the response; a sentinel request
   * is made and awaited first so every request a finished client made is included.
   *
   * `quietMs`: additionally wait until no new request has been logged for this long. Use it when
   * something keeps fetching after the client finished (a proxy's background cache fill:
   * distribution's proxy mode re-fetches every missed blob in a goroutine).
   */
  requests(opts?: { quietMs?: number }): Promise<RegistryRequest[]>;
  /** Forget requests logged so far (after waiting `quietMs`, as in {@link requests}). */
  clearRequests(opts?: { quietMs?: number }): Promise<void>;
  stop(): Promise<void>;
}

const SENTINEL = '/v2/?pullwarden-harness-sentinel=';

function yamlString(s: string): string {
  return JSON.stringify(s); // JSON strings are valid YAML double-quoted scalars.
}

function renderConfig(dir: string, host: string, opts: RegistryOptions): string {
  const lines = [
    'version: 0.1',
    'log:',
    // info + json: every request is logged as a "response completed" JSON line on stderr,
    // which requests() parses. The combined-format access log on stdout is left on as well.
    '  level: info',
    '  formatter: json',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${yamlString(join(dir, 'data'))}`,
    '  delete:',
    '    enabled: true',
    '  maintenance:',
    '    uploadpurging:',
    '      enabled: false',
    'http:',
    `  addr: ${host}`,
    // A fixed secret silences the startup warning; uploads never cross instances here.
    '  secret: pullwarden-test-harness',
    'health:',
    '  storagedriver:',
    '    enabled: false',
  ];
  if (opts.proxy !== undefined) {
    lines.push('proxy:', `  remoteurl: ${yamlString(opts.proxy.remoteurl)}`);
    if (opts.proxy.username !== undefined) lines.push(`  username: ${yamlString(opts.proxy.username)}`);
    if (opts.proxy.password !== undefined) lines.push(`  password: ${yamlString(opts.proxy.password)}`);
  }
  return lines.join('\n') + '\n';
}

function classify(path: string): Pick<RegistryRequest, 'kind' | 'repository' | 'reference'> {
  if (path === '/v2/' || path === '/v2') return { kind: 'base' };
  if (path === '/v2/_catalog') return { kind: 'catalog' };
  const m = /^\/v2\/(.+?)\/(manifests|blobs|tags)\/(.+)$/.exec(path);
  if (m === null) return { kind: 'other' };
  const [, repository, what, rest] = m as unknown as [string, string, string, string];
  if (what === 'tags') return { kind: 'tags', repository };
  if (what === 'manifests') return { kind: 'manifest', repository, reference: rest };
  if (rest.startsWith('uploads')) return { kind: 'upload', repository };
  return { kind: 'blob', repository, reference: rest };
}

/** Parses distribution's JSON log (stderr) into requests. Exported for unit use. */
export function parseRegistryLog(log: string): RegistryRequest[] {
  const out: RegistryRequest[] = [];
  for (const line of log.split('\n')) {
    if (!line.startsWith('{')) continue;
    let entry: Record<string, unknown>;
    try {
      entry = JSON.parse(line) as Record<string, unknown>;
    } catch {
      continue;
    }
    const msg = entry['msg'];
    if (typeof msg !== 'string' || !msg.startsWith('response completed')) continue;
    const str = (key: string): string => {
      const v = entry[key];
      return typeof v === 'string' ? v : '';
    };
    const uri = str('http.request.uri');
    const q = uri.indexOf('?');
    const path = q === -1 ? uri : uri.slice(0, q);
    out.push({
      method: str('http.request.method'),
      path,
      uri,
      status: Number(entry['http.response.status'] ?? 0),
      written: Number(entry['http.response.written'] ?? 0),
      userAgent: str('http.request.useragent'),
      ...classify(path),
    });
  }
  return out;
}

/**
 * Starts distribution (`docker-registry serve`) on a free loopback port with filesystem storage in
 * a temp dir, and waits until `GET /v2/` answers 200.
 */
export async function startRegistry(opts: RegistryOptions = {}): Promise<Registry> {
  const dir = await mkdtemp(join(tmpdir(), 'pw-registry-'));
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const host = `127.0.0.1:${port}`;
    const url = `http://${host}`;
    const config = join(dir, 'config.yml');
    await writeFile(config, renderConfig(dir, host, opts));
    const daemon = startDaemon('docker-registry', ['serve', config], { env: clientEnv() });
    try {
      await waitFor(
        `registry on ${host}`,
        // The probe uses the sentinel path so requests() leaves it out.
        async () =>
          (await fetch(`${url}${SENTINEL}ready`, { signal: AbortSignal.timeout(1000) })).status === 200,
        { daemon, timeoutMs: 15_000 },
      );
    } catch (e) {
      await daemon.stop();
      // Another process took the port between freePort() and bind: try a new one.
      if (attempt < 3 && daemon.stderr().includes('address already in use')) continue;
      await rm(dir, { recursive: true, force: true });
      throw e;
    }
    let skip = 0;
    let sentinels = 0;
    const quiet = async (quietMs: number): Promise<void> => {
      let length = daemon.stderr().length;
      let since = Date.now();
      await waitFor(
        `registry log quiet for ${quietMs} ms`,
        () => {
          const now = daemon.stderr().length;
          if (now !== length) {
            length = now;
            since = Date.now();
          }
          return Date.now() - since >= quietMs;
        },
        { daemon, timeoutMs: quietMs + 60_000, intervalMs: 25 },
      );
    };
    const all = async (quietMs = 0): Promise<RegistryRequest[]> => {
      if (quietMs > 0) await quiet(quietMs);
      const token = `${process.pid}-${++sentinels}`;
      await (await fetch(`${url}${SENTINEL}${token}`)).arrayBuffer();
      const parsed = await waitFor(
        'registry log to include the sentinel request',
        () => {
          const entries = parseRegistryLog(daemon.stderr());
          return entries.some((r) => r.uri.endsWith(`=${token}`)) ? entries : undefined;
        },
        { daemon, timeoutMs: 5_000, intervalMs: 10 },
      );
      return parsed;
    };
    return {
      url,
      host,
      dir,
      daemon,
      async requests(opts = {}) {
        const entries = await all(opts.quietMs);
        return entries.slice(skip).filter((r) => !r.uri.startsWith(SENTINEL));
      },
      async clearRequests(opts = {}) {
        skip = (await all(opts.quietMs)).length;
      },
      async stop() {
        await daemon.stop();
        await rm(dir, { recursive: true, force: true });
      },
    };
  }
}

/** Blob downloads in `requests`: GETs of `/v2/<repo>/blobs/<digest>` that returned content. */
export function blobGets(requests: readonly RegistryRequest[]): RegistryRequest[] {
  return requests.filter((r) => r.kind === 'blob' && r.method === 'GET');
}
