import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { clientEnv, run } from './proc.ts';
import type { RunResult } from './proc.ts';

export interface PodmanOptions {
  /** registries.conf (see `writeRegistriesConf` in skopeo.ts), passed as CONTAINERS_REGISTRIES_CONF. */
  registriesConf?: string;
  /** Storage graph root (`--root`). */
  root: string;
  /** Storage run root (`--runroot`). */
  runroot: string;
  /** `--tls-verify` (default false: the test registries speak plain HTTP). */
  tlsVerify?: boolean;
  /** containers/image signature policy (`--signature-policy FILE`) instead of /etc/containers/policy.json. */
  signaturePolicy?: string;
  timeoutMs?: number;
}

export interface PodmanImage {
  /** Image ID (config digest hex). */
  id: string;
  /** `.Digest`: the digest podman pulled by — the index digest when the tag names an index. */
  digest: string;
  /** `repo@digest` for the index and the chosen instance manifest. */
  repoDigests: string[];
}

/**
 * Global podman flags for an isolated store, as root: vfs (no overlay mounts to clean up),
 * cgroupfs and file events (no systemd or journald needed), libpod tmp under the store.
 */
function globalArgs(opts: Pick<PodmanOptions, 'root' | 'runroot'>): string[] {
  return [
    '--root',
    opts.root,
    '--runroot',
    opts.runroot,
    '--storage-driver',
    'vfs',
    '--cgroup-manager',
    'cgroupfs',
    '--events-backend',
    'file',
    '--tmpdir',
    join(opts.runroot, 'libpod-tmp'),
  ];
}

function podmanEnv(opts: Pick<PodmanOptions, 'registriesConf' | 'runroot'>): NodeJS.ProcessEnv {
  const extra: Record<string, string> = {
    // containers/image stages big blobs in $TMPDIR (default /var/tmp).
    TMPDIR: join(opts.runroot, 'tmp'),
    // Keep the host's /etc/containers/storage.conf (driver, mount_program) out of the picture.
    CONTAINERS_STORAGE_CONF: join(opts.runroot, 'storage.conf'),
  };
  if (opts.registriesConf !== undefined) extra['CONTAINERS_REGISTRIES_CONF'] = opts.registriesConf;
  return clientEnv(extra);
}

/** Runs `podman <global flags> ARGS` against the store in `opts`. */
export async function podman(
  args: readonly string[],
  opts: Omit<PodmanOptions, 'tlsVerify'> & { allowFailure?: boolean },
): Promise<RunResult> {
  await mkdir(join(opts.runroot, 'tmp'), { recursive: true });
  const q = (x: string): string => JSON.stringify(x);
  await writeFile(
    join(opts.runroot, 'storage.conf'),
    `[storage]\ndriver = "vfs"\nrunroot = ${q(opts.runroot)}\ngraphroot = ${q(opts.root)}\n`,
  );
  return await run('podman', [...globalArgs(opts), ...args], {
    env: podmanEnv(opts),
    timeoutMs: opts.timeoutMs ?? 180_000,
    allowFailure: opts.allowFailure ?? false,
  });
}

/**
 * `podman pull REF` into an isolated store, then `podman image inspect` for its digests.
 * containers/image sends `GET /v2/`, then GET (not HEAD) of the manifest by tag, no `ns=`.
 */
export async function podmanPull(ref: string, opts: PodmanOptions): Promise<PodmanImage> {
  const tls = `--tls-verify=${String(opts.tlsVerify ?? false)}`;
  const policy = opts.signaturePolicy === undefined ? [] : ['--signature-policy', opts.signaturePolicy];
  await podman(['pull', '--quiet', tls, ...policy, ref], opts);
  // podman 4.3 ignores `--format '{{json .}}'` and prints the usual JSON array anyway.
  const { stdout } = await podman(['image', 'inspect', ref], opts);
  const [parsed] = JSON.parse(stdout) as [{ Id: string; Digest: string; RepoDigests: string[] | null }];
  return { id: parsed.Id, digest: parsed.Digest, repoDigests: parsed.RepoDigests ?? [] };
}

export interface PodmanStore extends Pick<PodmanOptions, 'root' | 'runroot'> {
  readonly dir: string;
  pull(
    ref: string,
    opts?: { registriesConf?: string; tlsVerify?: boolean; signaturePolicy?: string },
  ): Promise<PodmanImage>;
  /** `podman image rm --all --force`. */
  removeImages(): Promise<void>;
  /** Removes images and the store directory. */
  cleanup(): Promise<void>;
}

/** A fresh podman store in a temp dir; `registriesConf` is the default for its pulls. */
export async function createPodmanStore(defaults: { registriesConf?: string } = {}): Promise<PodmanStore> {
  const dir = await mkdtemp(join(tmpdir(), 'pw-podman-'));
  const root = join(dir, 'root');
  const runroot = join(dir, 'run');
  const base = { root, runroot };
  const removeImages = async (): Promise<void> => {
    await podman(['image', 'rm', '--all', '--force'], base);
  };
  return {
    dir,
    root,
    runroot,
    async pull(ref, opts = {}) {
      const registriesConf = opts.registriesConf ?? defaults.registriesConf;
      return await podmanPull(ref, {
        ...base,
        ...(registriesConf === undefined ? {} : { registriesConf }),
        ...(opts.tlsVerify === undefined ? {} : { tlsVerify: opts.tlsVerify }),
        ...(opts.signaturePolicy === undefined ? {} : { signaturePolicy: opts.signaturePolicy }),
      });
    },
    removeImages,
    async cleanup() {
      await removeImages().catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    },
  };
}
