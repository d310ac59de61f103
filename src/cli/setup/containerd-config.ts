/**
 * The part of containerd's `config.toml` that decides whether hosts.toml files are read at all:
 * the CRI registry `config_path`, by schema version.
 *
 * - version 1 (containerd 1.x, deprecated): `[plugins.cri.registry] config_path`
 * - version 2 (containerd 1.6/1.7): `[plugins."io.containerd.grpc.v1.cri".registry] config_path`
 * - version 3 (containerd 2.x): `[plugins."io.containerd.cri.v1.images".registry] config_path`
 *
 * `config_path` may list several directories (`/etc/containerd/certs.d:/etc/docker/certs.d`, the
 * EKS and containerd 2.2 default). The CRI's local pull searches them in order; the transfer service,
 * the CRI's default pull path from containerd 2.1 (`use_local_image_pull = false`), treats the whole
 * string as ONE directory, so no hosts.toml is found and pulls go straight to the real registries,
 * with no error logged (containerd#12415, #12636; open fixes #12829, #13086, #14168).
 */
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { Finding } from './doctor.ts';
import { isTable, parseToml } from './toml.ts';
import type { TomlTable, TomlValue } from './toml.ts';

/** Where a schema version keeps the CRI registry table, as a TOML header. */
const CRI_TABLE: Record<1 | 2 | 3, string[]> = {
  1: ['plugins', 'cri'],
  2: ['plugins', 'io.containerd.grpc.v1.cri'],
  3: ['plugins', 'io.containerd.cri.v1.images'],
};

function header(path: readonly string[]): string {
  return `[${path.map((p) => (/^[A-Za-z0-9_-]+$/.test(p) ? p : `"${p}"`)).join('.')}]`;
}

function at(doc: TomlTable, path: readonly string[]): TomlValue | undefined {
  let v: TomlValue | undefined = doc;
  for (const p of path) v = isTable(v) ? v[p] : undefined;
  return v;
}

/** What doctor learns from a containerd config file. */
export interface ContainerdRegistryConfig {
  version: 1 | 2 | 3;
  /** `config_path` split into directories (empty when unset). */
  roots: string[];
  /** The TOML table `config_path` belongs in, for fixes. */
  table: string;
  /** version 3: whether the CRI pulls with the local client instead of the transfer service. */
  localPull: boolean;
}

/** Read the registry-related settings of a containerd config.toml. Throws TomlError or Error. */
export function readContainerdConfig(text: string): ContainerdRegistryConfig {
  const doc = parseToml(text);
  const raw = doc['version'] ?? 1;
  if (raw !== 1 && raw !== 2 && raw !== 3) {
    throw new Error(
      `version = ${JSON.stringify(raw)}: not a containerd config schema doctor knows (1, 2 or 3)`,
    );
  }
  const version = raw;
  const registryPath = [...CRI_TABLE[version], 'registry'];
  const configPath = at(doc, [...registryPath, 'config_path']);
  if (configPath !== undefined && typeof configPath !== 'string') {
    throw new Error(`${header(registryPath)} config_path must be a string`);
  }
  const roots = (configPath ?? '').split(':').filter((r) => r !== '');
  return {
    version,
    roots,
    table: header(registryPath),
    localPull: version === 3 && at(doc, [...CRI_TABLE[3], 'use_local_image_pull']) === true,
  };
}

/**
 * Check that containerd (the CRI) reads hosts.toml files from `hostsDir`. `explicit`: the file was
 * named on the command line (then a missing file is a problem, not a warning).
 */
export async function checkContainerdConfig(
  file: string,
  hostsDir: string,
  explicit: boolean,
): Promise<Finding[]> {
  const subject = `containerd config ${file}`;
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    return [
      {
        level: explicit ? 'problem' : 'warning',
        code: 'NO_CONTAINERD_CONFIG',
        subject,
        message:
          'not found: whether containerd reads hosts.toml files from the checked directory was not checked',
        fix: "pass this node's containerd config as --containerd-config FILE",
      },
    ];
  }
  let config: ContainerdRegistryConfig;
  try {
    config = readContainerdConfig(text);
  } catch (error) {
    return [
      {
        level: 'problem',
        code: 'INVALID',
        subject,
        message: `${(error as Error).message} (containerd does not start with this file)`,
        fix: 'fix the file (containerd config dump shows what containerd reads)',
      },
    ];
  }
  const want = resolve(hostsDir);
  const setIt = `set config_path = "${want}" in ${config.table} and restart containerd`;
  if (config.roots.length === 0) {
    return [
      {
        level: 'problem',
        code: 'NO_CONFIG_PATH',
        subject,
        message: `version ${config.version} schema, no config_path in ${config.table}: the CRI reads no hosts.toml at all (and uses the real registries, or the deprecated registry.mirrors)`,
        fix: setIt,
      },
    ];
  }
  const findings: Finding[] = [];
  const listed = config.roots.join(':');
  if (config.roots.length > 1 && config.version === 3 && !config.localPull) {
    findings.push({
      level: 'problem',
      code: 'MULTI_CONFIG_PATH',
      subject,
      message:
        `config_path = "${listed}" lists ${config.roots.length} directories: containerd 2.1+ pulls through the transfer service, ` +
        'which takes the whole list as one directory, finds no hosts.toml and pulls from the real registries, silently (containerd#12415, #12636)',
      fix: `${setIt} (one directory), or set use_local_image_pull = true in ${header(CRI_TABLE[3])}`,
    });
  }
  const index = config.roots.findIndex((r) => resolve(r) === want);
  if (index === -1) {
    findings.push({
      level: 'problem',
      code: 'CONFIG_PATH_MISMATCH',
      subject,
      message: `config_path = "${listed}" does not include ${want}, the directory checked: containerd reads other hosts.toml files than these`,
      fix: `check the directory containerd reads (--hosts-dir ${config.roots[0] ?? ''}), or ${setIt}`,
    });
  } else if (index > 0) {
    findings.push({
      level: 'warning',
      code: 'CONFIG_PATH_ORDER',
      subject,
      message: `config_path = "${listed}": ${want} comes after ${config.roots.slice(0, index).join(', ')}; a host directory there is used instead of this one`,
      fix: setIt,
    });
  }
  if (findings.length === 0) {
    findings.push({
      level: 'ok',
      code: 'CONFIG_PATH',
      subject,
      message: `version ${config.version} schema: the CRI reads hosts.toml files from ${want}`,
    });
  }
  return findings;
}
