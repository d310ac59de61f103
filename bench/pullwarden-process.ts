/**
 * pullwarden as a child process (`node --max-semi-space-size=1 bin/pullwarden.js serve --config FILE`:
 * the built entry and the node flags production runs, as in the Dockerfile and `npm start`;
 * `npm run bench` builds first), so that its memory can be read from /proc/<pid>/status and the
 * benchmark's own clients do not share its event loop.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { freePort } from '../test/support/ports.ts';
import { clientEnv, startDaemon, waitFor } from '../test/support/proc.ts';
import type { Daemon } from '../test/support/proc.ts';

/**
 * The checkout whose `bin/pullwarden.js` (and built `dist/`) is started: this one, or
 * PW_BENCH_PULLWARDEN_ROOT (a patched and built copy, to measure a proposed change against the same
 * references).
 */
const ROOT = process.env['PW_BENCH_PULLWARDEN_ROOT'] ?? fileURLToPath(new URL('..', import.meta.url));

/**
 * The node flags production runs pullwarden with (Dockerfile ENTRYPOINT, `npm start`): a 1 MiB
 * young-generation semi-space keeps peak RSS low while large blobs stream. Always passed; flags from
 * `nodeArgs` (PW_BENCH_NODE_ARGS) come after them, so they add to them and, for the same V8 flag,
 * override them (the last occurrence wins).
 */
export const PRODUCTION_NODE_ARGS: readonly string[] = ['--max-semi-space-size=1'];

export interface PullwardenProcess {
  /** `http://127.0.0.1:PORT` */
  readonly url: string;
  /** `127.0.0.1:PORT` */
  readonly host: string;
  readonly pid: number;
  /** Temp dir holding the config file and the storage dir. */
  readonly dir: string;
  readonly daemon: Daemon;
  /** SIGTERM (graceful shutdown) and remove the temp dir. */
  stop(): Promise<void>;
}

export interface PullwardenOptions {
  /** Trust roots/keys and policies (default: allow everything, i.e. the proxy without a policy). */
  trust?: Record<string, unknown>;
  policies?: unknown[];
  /** Node flags added after {@link PRODUCTION_NODE_ARGS}, e.g. `--cpu-prof` (from PW_BENCH_NODE_ARGS). */
  nodeArgs?: string[];
  /** `server.workers` (default 1); with more, start() waits until /readyz says every worker is up. */
  workers?: number | 'auto';
}

/**
 * Starts pullwarden on a free loopback port with a fresh storage dir (so every blob is cold) and
 * `name` → `upstreamUrl` as its only upstream, and waits until `GET /v2/` answers.
 */
export async function startPullwarden(
  name: string,
  upstreamUrl: string,
  opts: PullwardenOptions = {},
): Promise<PullwardenProcess> {
  const dir = await mkdtemp(join(tmpdir(), 'pw-bench-proxy-'));
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const host = `127.0.0.1:${port}`;
    const url = `http://${host}`;
    const config = join(dir, 'pullwarden.yaml');
    await writeFile(
      config,
      stringify({
        listen: host,
        storage: { dir: join(dir, 'data') },
        log: { level: 'warn' },
        ...(opts.workers === undefined
          ? {}
          : // PW_BENCH_BALANCE=reuseport measures that server.balance instead of the default.
            { server: { workers: opts.workers, balance: process.env['PW_BENCH_BALANCE'] ?? 'reuseport' } }),
        upstreams: { [name]: { url: upstreamUrl, tagTTL: '5m' } },
        defaultUpstream: name,
        // The benchmark never reaches the Sigstore CDN.
        trust: { refresh: '0s', ...(opts.trust ?? {}) },
        policies: opts.policies ?? [{ name: 'allow-all', match: ['**'], action: 'allow' }],
      }),
    );
    const daemon = startDaemon(
      process.execPath,
      [
        ...PRODUCTION_NODE_ARGS,
        ...(opts.nodeArgs ?? []),
        join(ROOT, 'bin/pullwarden.js'),
        'serve',
        '--config',
        config,
      ],
      { env: clientEnv(), cwd: dir },
    );
    try {
      await waitFor(
        `pullwarden on ${host}`,
        async () => {
          const probe = opts.workers === undefined ? '/v2/' : '/readyz';
          const res = await fetch(`${url}${probe}`, { signal: AbortSignal.timeout(1000) });
          await res.arrayBuffer();
          return opts.workers === undefined ? res.status < 500 : res.status === 200;
        },
        { daemon, timeoutMs: 30_000 },
      );
    } catch (e) {
      await daemon.stop();
      if (attempt < 3 && /EADDRINUSE|address already in use/.test(daemon.stderr() + daemon.stdout()))
        continue;
      await rm(dir, { recursive: true, force: true });
      throw e;
    }
    return {
      url,
      host,
      pid: daemon.pid,
      dir,
      daemon,
      async stop() {
        await daemon.stop(15_000);
        await rm(dir, { recursive: true, force: true });
      },
    };
  }
}
