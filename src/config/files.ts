import { constants } from 'node:fs';
import { access, readFile, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import type { KeyPath } from './errors.ts';

/**
 * Every key of the config file that names a file or directory (or holds file content inline), and
 * what must be in it. `config validate` and `serve` check them all before anything starts, so that a
 * missing key file is reported with the schema problems instead of failing start-up later.
 *
 * A path segment `*` stands for any mapping key, `#` for any list index. A test keeps this table and
 * the schema in step: a new `...File`, `...Dir` or `file` key must be listed here.
 */
export const FILE_KEYS = [
  { path: ['storage', 'dir'], kind: 'directory' },
  { path: ['audit', 'dir'], kind: 'directory' },
  { path: ['audit', 'webhook', 'spoolDir'], kind: 'directory' },
  { path: ['metadata', 'url'], kind: 'sqlite' },
  { path: ['upstreams', '*', 'passwordFile'], kind: 'secret' },
  { path: ['upstreams', '*', 'caFile'], kind: 'ca-bundle' },
  { path: ['metadata', 'passwordFile'], kind: 'secret' },
  { path: ['auth', 'htpasswd'], kind: 'htpasswd' },
  { path: ['admin', 'htpasswd'], kind: 'htpasswd' },
  { path: ['auth', 'tokens', '#', 'tokenFile'], kind: 'secret' },
  { path: ['audit', 'checkpoint', 'keyFile'], kind: 'secret' },
  { path: ['server', 'tls', 'certFile'], kind: 'tls-cert' },
  { path: ['server', 'tls', 'keyFile'], kind: 'tls-key' },
  { path: ['server', 'tls', 'clientCAFile'], kind: 'ca-bundle' },
  { path: ['trust', 'roots', '*', 'file'], kind: 'trusted-root' },
  { path: ['trust', 'keys', '*', 'file'], kind: 'public-key' },
  { path: ['trust', 'keys', '*', 'pem'], kind: 'public-key', inline: true },
  { path: ['trust', 'kevCatalog'], kind: 'kev-catalog' },
] as const satisfies readonly { path: readonly string[]; kind: string; inline?: boolean }[];

export type FileKind = (typeof FILE_KEYS)[number]['kind'];

/** Keys that name an environment variable holding a secret: checked with the secret files. */
export const SECRET_ENV_KEYS = [
  ['upstreams', '*', 'passwordEnv'],
  ['metadata', 'passwordEnv'],
  ['auth', 'tokens', '#', 'tokenEnv'],
  ['audit', 'checkpoint', 'keyEnv'],
] as const;

/** Kinds whose content is parsed by the module that uses it (passed in: config imports no adapter). */
export type ParsedFileKind = Exclude<FileKind, 'directory' | 'sqlite' | 'secret'>;

/**
 * Parsers for file content, the same code `serve` runs on it. Each throws an Error saying what is
 * wrong (never quoting the content). `name` is the mapping key the file belongs to (a key's name).
 */
export type FileParsers = Record<ParsedFileKind, (content: Buffer, file: string, name: string) => unknown> & {
  /** Certificate and private key belong together (checked when both parsed). */
  tlsPair: (cert: Buffer, key: Buffer) => unknown;
};

/** What to check: files with `parsers`, secret files when `secrets` is set. */
export interface FileCheckOptions {
  parsers?: FileParsers | undefined;
  secrets: boolean;
  /** Base directory for relative paths from the file (its directory). */
  fileBase: string;
  /** Base directory for relative paths that came from the environment. */
  cwd: string;
  /** Dotted paths whose value came from an environment variable. */
  fromEnv: ReadonlyMap<string, string>;
  /** The environment the secret variables are read from. */
  env: NodeJS.ProcessEnv;
}

/** One problem found in a named file. */
export interface FileProblem {
  path: KeyPath;
  message: string;
}

/** The values at a FILE_KEYS path in the raw input, with their concrete key paths. */
export function valuesAt(
  input: unknown,
  pattern: readonly string[],
): { path: PropertyKey[]; value: unknown }[] {
  let nodes: { path: PropertyKey[]; value: unknown }[] = [{ path: [], value: input }];
  for (const segment of pattern) {
    const next: typeof nodes = [];
    for (const { path, value } of nodes) {
      if (segment === '#') {
        if (Array.isArray(value))
          value.forEach((v: unknown, i) => next.push({ path: [...path, i], value: v }));
      } else if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
        const record = value as Record<string, unknown>;
        const keys = segment === '*' ? Object.keys(record) : Object.hasOwn(record, segment) ? [segment] : [];
        for (const k of keys) next.push({ path: [...path, k], value: record[k] });
      }
    }
    nodes = next;
  }
  return nodes;
}

/**
 * Check every file the (raw, possibly invalid) config input names. Values that are not strings are
 * left to the schema; everything else is checked, so that one run reports schema and file problems.
 */
export async function checkFiles(input: unknown, options: FileCheckOptions): Promise<FileProblem[]> {
  const problems: FileProblem[] = [];
  const tls: { cert?: Buffer; key?: Buffer } = {};
  for (const entry of FILE_KEYS) {
    if (entry.kind === 'secret' ? !options.secrets : options.parsers === undefined) continue;
    for (const { path, value } of valuesAt(input, entry.path)) {
      if (typeof value !== 'string' || value === '') continue;
      const base = options.fromEnv.has(path.join('.')) ? options.cwd : options.fileBase;
      const add = (message: string) => problems.push({ path, message });
      const name = String(path[path.length - 2] ?? '');
      if ('inline' in entry) {
        const error = await attempt(() => options.parsers?.[entry.kind](Buffer.from(value), '', name));
        if (error !== undefined) add(error);
        continue;
      }
      switch (entry.kind) {
        case 'directory': {
          const error = await usableDirectory(resolve(base, value));
          if (error !== undefined) add(error);
          break;
        }
        case 'sqlite': {
          const file = value.startsWith('sqlite://') ? value.slice('sqlite://'.length) : undefined;
          if (file === undefined || file === ':memory:') break;
          const error = await usableDirectory(dirname(resolve(base, file)));
          if (error !== undefined) add(error);
          break;
        }
        case 'secret': {
          const read = await readSecretFile(resolve(base, value));
          if ('error' in read) add(read.error);
          break;
        }
        default: {
          const file = resolve(base, value);
          let content: Buffer;
          try {
            content = await readFile(file);
          } catch (error) {
            add(`cannot read ${file}: ${fsReason(error)}`);
            break;
          }
          const kind = entry.kind;
          const error = await attempt(() => options.parsers?.[kind](content, file, name));
          if (error !== undefined) add(error.includes(file) ? error : `${file}: ${error}`);
          else if (kind === 'tls-cert') tls.cert = content;
          else if (kind === 'tls-key') tls.key = content;
        }
      }
    }
  }
  for (const pattern of options.secrets ? SECRET_ENV_KEYS : []) {
    for (const { path, value } of valuesAt(input, pattern)) {
      if (typeof value !== 'string' || value === '') continue;
      const set = options.env[value];
      if (set === undefined || set === '') {
        problems.push({ path, message: `environment variable ${value} is not set or empty` });
      }
    }
  }
  if (tls.cert !== undefined && tls.key !== undefined && options.parsers !== undefined) {
    const { cert, key } = tls;
    const error = await attempt(() => options.parsers?.tlsPair(cert, key));
    if (error !== undefined) problems.push({ path: ['server', 'tls', 'keyFile'], message: error });
  }
  return problems;
}

async function attempt(fn: () => unknown): Promise<string | undefined> {
  try {
    await fn();
    return undefined;
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  }
}

/** Why `dir` cannot be used (created if missing, then written), or undefined if it can. */
async function usableDirectory(dir: string): Promise<string | undefined> {
  let at = dir;
  for (;;) {
    try {
      const s = await stat(at);
      if (!s.isDirectory()) {
        return at === dir ? `${dir} is not a directory` : `cannot create ${dir}: ${at} is not a directory`;
      }
      break;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      // ENOTDIR: a parent is a file; walk up to it and say so.
      if (code !== 'ENOENT' && code !== 'ENOTDIR') return `cannot use ${dir}: ${fsReason(error)}`;
      const parent = dirname(at);
      if (parent === at) return `cannot use ${dir}: ${fsReason(error)}`;
      at = parent;
    }
  }
  try {
    await access(at, constants.W_OK | constants.X_OK);
  } catch {
    return at === dir ? `${dir} is not writable` : `cannot create ${dir}: ${at} is not writable`;
  }
  return undefined;
}

/** A secret file's content without the trailing newline `echo` and Kubernetes tooling leave. */
export async function readSecretFile(file: string): Promise<{ value: string } | { error: string }> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    return { error: `cannot read secret file ${file}: ${fsReason(error)}` };
  }
  const value = text.replace(/\r?\n$/, '');
  if (value === '') return { error: `secret file ${file} is empty` };
  return { value };
}

export function fsReason(error: unknown): string {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  switch (code) {
    case 'ENOENT':
      return 'no such file';
    case 'EACCES':
    case 'EPERM':
      return 'permission denied';
    case 'EISDIR':
      return 'is a directory';
    case 'ENOTDIR':
      return 'a parent is not a directory';
    default:
      return code ?? 'read failed';
  }
}
