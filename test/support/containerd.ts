import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { clientEnv, run, startDaemon, waitFor } from './proc.ts';
import type { Daemon, RunResult } from './proc.ts';

/** Namespace every helper uses; containerd keeps images per namespace. */
export const CTR_NAMESPACE = 'pullwarden-test';

export interface HostsTomlOptions {
  /** Default `["pull", "resolve"]`. */
  capabilities?: string[];
  /** `skip_verify` for an https proxy with a self-signed certificate. */
  skipVerify?: boolean;
  /**
   * The `server` line. Default: the proxy URL itself. containerd falls back from the mirror hosts
   * to `server` on any error, so only `server = proxy` makes the proxy the sole path.
   */
  server?: string;
  /** `ca = "…"` for the host entry. */
  ca?: string;
}

/**
 * Writes `hostsDir/<upstreamHost>/hosts.toml` (containerd hosts.toml, "registry host namespace")
 * routing pulls of `upstreamHost/...` to `proxyUrl`:
 *
 *   server = "<server, default proxyUrl>"
 *   [host."<proxyUrl>"]
 *     capabilities = ["pull", "resolve"]
 *
 * When the host entry differs from the upstream host, containerd appends `?ns=<upstreamHost>` to
 * every request (URL-encoded, `ns=127.0.0.1%3A5000`). When the host entry IS the upstream (the
 * harness pulling a registry directly), containerd sends no `ns=`.
 * Returns the path of the file.
 */
export async function writeHostsToml(
  hostsDir: string,
  upstreamHost: string,
  proxyUrl: string,
  opts: HostsTomlOptions = {},
): Promise<string> {
  const q = (s: string): string => JSON.stringify(s);
  const caps = opts.capabilities ?? ['pull', 'resolve'];
  const lines = [
    `server = ${q(opts.server ?? proxyUrl)}`,
    '',
    `[host.${q(proxyUrl)}]`,
    `  capabilities = [${caps.map(q).join(', ')}]`,
  ];
  if (opts.skipVerify === true) lines.push('  skip_verify = true');
  if (opts.ca !== undefined) lines.push(`  ca = ${q(opts.ca)}`);
  const dir = join(hostsDir, upstreamHost);
  await mkdir(dir, { recursive: true });
  const file = join(dir, 'hosts.toml');
  await writeFile(file, lines.join('\n') + '\n');
  return file;
}

export interface CtrPullOptions {
  /** Directory of `<host>/hosts.toml` files (`ctr image pull --hosts-dir`). */
  hostsDir: string;
  /** e.g. `linux/arm64`. Default: the host platform. */
  platform?: string;
  /** Fetch every platform of an index (`--all-platforms`). */
  allPlatforms?: boolean;
  /** `--plain-http` for hosts without a hosts.toml entry (a hosts.toml URL carries its own scheme). */
  plainHttp?: boolean;
  /** `--user user:password`. */
  user?: string;
  timeoutMs?: number;
}

export interface CtrImage {
  ref: string;
  mediaType: string;
  /** Top-level digest as resolved: the index digest for an index. */
  digest: string;
  platforms: string[];
}

export interface Containerd {
  /** gRPC socket path (`ctr --address`). */
  readonly address: string;
  readonly dir: string;
  readonly daemon: Daemon;
  /** Runs `ctr --address … --namespace pullwarden-test ARGS`. */
  ctr(args: readonly string[], opts?: { allowFailure?: boolean; timeoutMs?: number }): Promise<RunResult>;
  /** `ctr image pull` (fetch + unpack), then the image record. Rejects with ctr's output on failure. */
  pull(ref: string, opts: CtrPullOptions): Promise<CtrImage>;
  /** `ctr image ls`, parsed. */
  images(): Promise<CtrImage[]>;
  /** Digests in the content store (`ctr content ls`). */
  content(): Promise<string[]>;
  /** `ctr image rm --sync` every image, so the GC also drops their content and snapshots. */
  removeImages(): Promise<void>;
  stop(): Promise<void>;
}

function renderConfig(dir: string): string {
  const q = (s: string): string => JSON.stringify(s);
  return [
    'version = 2',
    `root = ${q(join(dir, 'root'))}`,
    `state = ${q(join(dir, 'state'))}`,
    `temp = ${q(join(dir, 'tmp'))}`,
    // Only the content/image/snapshot path is needed. cri would start a CNI/Kubernetes service;
    // opt would install into /opt/containerd; the others probe filesystems that are not here.
    'disabled_plugins = [',
    '  "io.containerd.grpc.v1.cri",',
    '  "io.containerd.internal.v1.opt",',
    '  "io.containerd.snapshotter.v1.btrfs",',
    '  "io.containerd.snapshotter.v1.zfs",',
    '  "io.containerd.snapshotter.v1.devmapper",',
    '  "io.containerd.snapshotter.v1.aufs",',
    '  "io.containerd.tracing.processor.v1.otlp",',
    '  "io.containerd.internal.v1.tracing",',
    ']',
    '',
    '[grpc]',
    `  address = ${q(join(dir, 'containerd.sock'))}`,
    '[ttrpc]',
    `  address = ${q(join(dir, 'containerd.sock.ttrpc'))}`,
    '[debug]',
    '  level = "info"',
    '',
  ].join('\n');
}

/** Parses `ctr image ls` (columns REF TYPE DIGEST SIZE PLATFORMS LABELS, SIZE has a space). */
export function parseCtrImageList(stdout: string): CtrImage[] {
  const out: CtrImage[] = [];
  for (const line of stdout.split('\n').slice(1)) {
    const cols = line.trim().split(/\s+/);
    if (cols.length < 6 || !cols[2]?.startsWith('sha256:')) continue;
    out.push({
      ref: cols[0]!,
      mediaType: cols[1]!,
      digest: cols[2],
      // cols[3] and cols[4] are "33.5 KiB".
      platforms: cols[5]!.split(','),
    });
  }
  return out;
}

/**
 * Starts a private containerd (root required) with its own root, state and socket under a temp dir
 * and the cri plugin disabled; resolves when the socket answers `ctr version`.
 * All pulls go to namespace {@link CTR_NAMESPACE}; snapshots use the default overlayfs.
 */
export async function startContainerd(): Promise<Containerd> {
  // Short base path: unix socket paths are limited to 108 bytes.
  const dir = await mkdtemp(join(tmpdir(), 'pw-ctd-'));
  await mkdir(join(dir, 'tmp'));
  const config = join(dir, 'config.toml');
  await writeFile(config, renderConfig(dir));
  const address = join(dir, 'containerd.sock');
  const env = clientEnv();
  const daemon = startDaemon('containerd', ['--config', config], { env });
  const ctr = async (args: readonly string[], opts: { allowFailure?: boolean; timeoutMs?: number } = {}) =>
    await run('ctr', ['--address', address, '--namespace', CTR_NAMESPACE, ...args], {
      env,
      timeoutMs: opts.timeoutMs ?? 60_000,
      allowFailure: opts.allowFailure ?? false,
    });
  try {
    await waitFor(
      'containerd socket',
      async () => {
        await stat(address);
        return (await ctr(['version'], { allowFailure: true, timeoutMs: 5_000 })).code === 0;
      },
      { daemon, timeoutMs: 20_000, intervalMs: 100 },
    );
  } catch (e) {
    await daemon.stop();
    await rm(dir, { recursive: true, force: true });
    throw e;
  }
  const images = async (): Promise<CtrImage[]> => parseCtrImageList((await ctr(['image', 'ls'])).stdout);
  return {
    address,
    dir,
    daemon,
    ctr,
    images,
    async pull(ref, opts) {
      const args = ['image', 'pull', '--hosts-dir', opts.hostsDir];
      if (opts.platform !== undefined) args.push('--platform', opts.platform);
      if (opts.allPlatforms === true) args.push('--all-platforms');
      if (opts.plainHttp === true) args.push('--plain-http');
      if (opts.user !== undefined) args.push('--user', opts.user);
      args.push(ref);
      await ctr(args, { timeoutMs: opts.timeoutMs ?? 180_000 });
      const image = (await images()).find((i) => i.ref === ref);
      if (image === undefined) throw new Error(`ctr pulled ${ref} but image ls does not list it`);
      return image;
    },
    async content() {
      const { stdout } = await ctr(['content', 'ls', '--quiet']);
      return stdout.split('\n').filter((l) => l.startsWith('sha256:'));
    },
    async removeImages() {
      const refs = (await images()).map((i) => i.ref);
      if (refs.length > 0) await ctr(['image', 'rm', '--sync', ...refs]);
    },
    async stop() {
      await daemon.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
