import { createHash } from 'node:crypto';
import { renameSync, writeFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { clientEnv, run } from './proc.ts';
import type { RunResult } from './proc.ts';
import type { WrittenLayout } from './oci-layout.ts';

let policyPath: string | undefined;

/**
 * Path of a signature policy that accepts anything. containers/image refuses to copy without a
 * policy and the system /etc/containers/policy.json may be stricter or absent on CI.
 * One fixed file under the temp dir (same content every time), so nothing accumulates.
 */
export function acceptAnythingPolicy(): string {
  if (policyPath === undefined) {
    policyPath = join(tmpdir(), 'pullwarden-test-policy.json');
    const tmp = `${policyPath}.${process.pid}`;
    writeFileSync(tmp, JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }));
    renameSync(tmp, policyPath); // atomic: a concurrent reader never sees a half-written file
  }
  return policyPath;
}

export interface SkopeoCopyOptions {
  /** Copy every image of an index (`--all`). Without it skopeo picks the host platform. */
  all?: boolean;
  /** Fail instead of converting manifests (`--preserve-digests`). Default true. */
  preserveDigests?: boolean;
  /** `--format oci|v2s2`: convert the manifest. Changes digests; do not combine with preserveDigests. */
  format?: 'oci' | 'v2s2';
  /** registries.conf for the copy (mirror / prefix rewriting of docker:// references). */
  registriesConf?: string;
  /** Extra arguments placed before SRC DST. */
  args?: string[];
  env?: Record<string, string>;
  timeoutMs?: number;
}

/**
 * `skopeo copy SRC DST` with TLS verification off on both sides (plain-HTTP loopback registries),
 * `--retry-times 0` (a failure surfaces immediately), and the accept-anything policy. SRC and DST
 * are containers/image transport references: `docker://host/repo:tag`, `oci:DIR:tag`, `dir:DIR`.
 */
export async function skopeoCopy(src: string, dst: string, opts: SkopeoCopyOptions = {}): Promise<RunResult> {
  const args = ['--policy', acceptAnythingPolicy()];
  if (opts.registriesConf !== undefined) args.push('--registries-conf', opts.registriesConf);
  args.push('copy', '--retry-times', '0', '--src-tls-verify=false', '--dest-tls-verify=false');
  if (opts.all === true) args.push('--all');
  if (opts.preserveDigests ?? opts.format === undefined) args.push('--preserve-digests');
  if (opts.format !== undefined) args.push('--format', opts.format);
  args.push(...(opts.args ?? []), src, dst);
  return await run('skopeo', args, {
    env: clientEnv({ ...opts.env }),
    timeoutMs: opts.timeoutMs ?? 180_000,
  });
}

/**
 * Pushes a layout written by `writeOciLayout` to `registryHost` (`127.0.0.1:PORT`) as
 * `repoTag` (`repo:tag`), keeping every digest (`--all --preserve-digests`).
 * Returns the pushed reference `registryHost/repoTag`.
 */
export async function pushLayout(
  layout: Pick<WrittenLayout, 'source'>,
  registryHost: string,
  repoTag: string,
): Promise<string> {
  const ref = `${registryHost}/${repoTag}`;
  await skopeoCopy(layout.source, `docker://${ref}`, { all: true, preserveDigests: true });
  return ref;
}

export interface InspectResult {
  /** sha256 of the raw manifest bytes as served: the top-level digest (index digest for an index). */
  digest: string;
  mediaType: string;
  /** Raw manifest (or index) bytes as served. */
  raw: string;
}

/**
 * `skopeo inspect --raw docker://REF` and the digest computed from the raw bytes. (Plain `inspect`
 * picks the host platform's image for an index and reports other fields; `--raw` is exact.)
 */
export async function skopeoInspect(
  ref: string,
  opts: { registriesConf?: string } = {},
): Promise<InspectResult> {
  const args = ['--policy', acceptAnythingPolicy()];
  if (opts.registriesConf !== undefined) args.push('--registries-conf', opts.registriesConf);
  args.push('inspect', '--raw', '--retry-times', '0', '--tls-verify=false', `docker://${ref}`);
  const { stdout } = await run('skopeo', args, { env: clientEnv(), timeoutMs: 60_000 });
  const parsed = JSON.parse(stdout) as { mediaType?: string };
  return {
    digest: `sha256:${createHash('sha256').update(stdout).digest('hex')}`,
    mediaType: parsed.mediaType ?? '',
    raw: stdout,
  };
}

/** One `[[registry]]` entry of containers-registries.conf(5). */
export interface RegistryMapping {
  /** What the user pulls, e.g. `docker.io` or `127.0.0.1:5000` (or `host/namespace`). */
  prefix: string;
  /**
   * Where containers/image really goes, e.g. `127.0.0.1:8080/docker.io` for the proxy's path-prefix
   * routing (`/v2/<host>/<repo>/…`). With a location and no mirrors there is no fallback.
   */
  location: string;
  /** Allow plain HTTP / skip TLS verification for `location` (default true). */
  insecure?: boolean;
  /** Optional `[[registry.mirror]]` entries; containers/image falls back from mirrors to location. */
  mirrors?: { location: string; insecure?: boolean }[];
}

/**
 * Writes a registries.conf (v2 format) that maps each prefix to its location. Pass the path to
 * podman/skopeo as `CONTAINERS_REGISTRIES_CONF` or `--registries-conf`. Short names are disabled
 * (`unqualified-search-registries = []`) so nothing silently resolves to docker.io.
 */
export async function writeRegistriesConf(
  path: string,
  mappings: readonly RegistryMapping[],
): Promise<string> {
  const q = (s: string): string => JSON.stringify(s); // TOML basic strings accept JSON escapes.
  const lines = ['unqualified-search-registries = []', 'short-name-mode = "disabled"', ''];
  for (const m of mappings) {
    lines.push('[[registry]]', `prefix = ${q(m.prefix)}`, `location = ${q(m.location)}`);
    lines.push(`insecure = ${String(m.insecure ?? true)}`, '');
    for (const mirror of m.mirrors ?? []) {
      lines.push('[[registry.mirror]]', `location = ${q(mirror.location)}`);
      lines.push(`insecure = ${String(mirror.insecure ?? true)}`, '');
    }
  }
  await writeFile(path, lines.join('\n'));
  return path;
}
