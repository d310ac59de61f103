import { readFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { LineCounter, isMap, isScalar, isSeq, parseDocument } from 'yaml';
import type { Document } from 'yaml';
import { attestorSchema, policySchema } from '../policy/index.ts';
import type { Gate, Policy } from '../policy/index.ts';
import type { Attestor } from '../trust/index.ts';
import { crossCheck } from './cross-check.ts';
import type { ConfigSections } from './cross-check.ts';
import { ConfigError, formatProblem, problemAt, problemsFromIssues } from './errors.ts';
import type { ConfigProblem, KeyPath } from './errors.ts';
import { checkFiles, fsReason, readSecretFile } from './files.ts';
import type { FileParsers } from './files.ts';
import { configSchema, defaultConfigInput, upstreamSchema } from './schema.ts';
// The key check of the audit module (a leaf: node:crypto only), so a bad key fails validation.
import { signingKey } from '../audit/index.ts';
import type { Config, UpstreamConfig } from './schema.ts';

/** An upstream after loading: URL filled in, secret resolved. */
export type LoadedUpstream = Omit<UpstreamConfig, 'url' | 'password'> & {
  /** Base URL of the registry API, without a trailing slash. */
  url: string;
  /** Resolved from password, passwordFile or passwordEnv. Never log it: see redactConfig. */
  password?: string;
};

/** Metadata settings after loading: URL always set, Redis password resolved. */
export type LoadedMetadata = Omit<Config['metadata'], 'url'> & {
  /** `sqlite://<absolute path>` (or `sqlite://:memory:`), `redis://…` or `rediss://…`. */
  url: string;
  /** Resolved from passwordFile or passwordEnv (Redis only). */
  password?: string;
};

/**
 * The configuration the app runs on: the validated schema output (durations in milliseconds, sizes in
 * bytes), relative paths made absolute, secrets resolved.
 */
export type LoadedConfig = Omit<Config, 'upstreams' | 'metadata' | 'audit' | 'auth'> & {
  /** Pull authentication with token secrets resolved. Never log it. */
  auth: Omit<Config['auth'], 'tokens'> & {
    tokens: { name: string; token: string; repositories: string[] }[];
  };
  /**
   * The audit section with `dir` resolved (default `<storage.dir>/audit`; `…/<replica>` when shared)
   * and the checkpoint signing key read (PEM). Never log it.
   */
  audit: Config['audit'] & { dir: string; checkpointKey?: string };
  upstreams: Record<string, LoadedUpstream>;
  metadata: LoadedMetadata;
  /** Absolute path of the config file, or "embedded defaults". */
  source: string;
};

export const EMBEDDED_SOURCE = 'embedded defaults';

/** Environment variables that override a key of the file (or of the embedded defaults). */
export const ENV_OVERRIDES = [
  { name: 'PULLWARDEN_LISTEN', path: ['listen'] },
  { name: 'PULLWARDEN_STORAGE_DIR', path: ['storage', 'dir'] },
  { name: 'PULLWARDEN_METADATA_URL', path: ['metadata', 'url'] },
  { name: 'PULLWARDEN_LOG_LEVEL', path: ['log', 'level'] },
] as const satisfies readonly { name: string; path: readonly [string, ...string[]] }[];

export interface LoadOptions {
  /**
   * Read passwordFile / passwordEnv secrets (default true). `config validate --skip-secrets` turns it
   * off to check a file on a machine that does not hold the secrets.
   */
  resolveSecrets?: boolean;
  /** Base for a relative config path, for relative paths when there is no file, and for env values. */
  cwd?: string;
  /**
   * Check every file the config names (exists, parses: keys, trusted roots, htpasswd, TLS, KEV) with
   * these parsers, and every directory (can be created and written). `serve` and `config validate`
   * pass them; commands that use only part of the config do not.
   */
  files?: FileParsers;
}

/**
 * Load, validate and resolve the configuration.
 *
 * With no path the embedded defaults are used. Environment overrides (see {@link ENV_OVERRIDES}) are
 * applied before validation. Relative paths in the file (storage.dir, sqlite:// paths, passwordFile,
 * caFile) resolve against the file's directory; relative paths from the environment or in the
 * embedded defaults resolve against the working directory.
 *
 * @throws ConfigError listing every problem found.
 */
export async function loadConfig(
  path?: string,
  env: NodeJS.ProcessEnv = process.env,
  options: LoadOptions = {},
): Promise<LoadedConfig> {
  const cwd = options.cwd ?? process.cwd();
  const { source, fileBase, input, fromEnv, locate } = await readConfigInput(path, env, cwd);

  // Every problem in one round: schema, then references between sections (also when some sections
  // failed), then files. Duplicates (a secret file seen by both checks) are dropped.
  const ctx = locate === undefined ? { input, fromEnv } : { input, fromEnv, locate };
  const problems: ConfigProblem[] = [];
  const seen = new Set<string>();
  const push = (problem: ConfigProblem) => {
    const key = formatProblem('', problem);
    if (seen.has(key)) return;
    seen.add(key);
    problems.push(problem);
  };
  const addProblem = (at: KeyPath, message: string) => push(problemAt(at, message, ctx));

  const result = configSchema.safeParse(input);
  if (!result.success) {
    for (const p of problemsFromIssues(result.error.issues, ctx)) push(p);
    for (const p of crossCheck(parsedSections(input))) addProblem(p.path, p.message);
  }
  const readSecrets = options.resolveSecrets ?? true;
  const fileProblems = await checkFiles(input, {
    parsers: options.files,
    secrets: readSecrets,
    env,
    fileBase,
    cwd,
    fromEnv,
  });
  for (const p of fileProblems) addProblem(p.path, p.message);
  if (!result.success) throw new ConfigError(source, inFileOrder(problems));
  const config = result.data;

  // Values from the environment are relative to where the process runs, not to the file.
  const baseFor = (key: string) => (fromEnv.has(key) ? cwd : fileBase);
  const storageDir = resolve(baseFor('storage.dir'), config.storage.dir);
  const metadataUrl =
    config.metadata.url === undefined
      ? `sqlite://${join(storageDir, 'meta.sqlite')}`
      : resolveSqliteUrl(config.metadata.url, baseFor('metadata.url'));

  const secret = async (
    at: KeyPath,
    spec: {
      password?: string | undefined;
      passwordFile?: string | undefined;
      passwordEnv?: string | undefined;
    },
    // The keys as the file names them (auth tokens: tokenFile, tokenEnv).
    keys: { file: string; env: string } = { file: 'passwordFile', env: 'passwordEnv' },
  ): Promise<string | undefined> => {
    if (spec.password !== undefined) return spec.password;
    if (!readSecrets) return undefined;
    if (spec.passwordFile !== undefined) {
      const file = resolve(fileBase, spec.passwordFile);
      const read = await readSecretFile(file);
      if ('error' in read) addProblem([...at, keys.file], read.error);
      else return read.value;
      return undefined;
    }
    if (spec.passwordEnv !== undefined) {
      const value = env[spec.passwordEnv];
      if (value === undefined || value === '') {
        addProblem([...at, keys.env], `environment variable ${spec.passwordEnv} is not set or empty`);
      }
      return value;
    }
    return undefined;
  };

  const upstreams: Record<string, LoadedUpstream> = {};
  for (const [host, upstream] of Object.entries(config.upstreams)) {
    const { url, passwordFile, caFile, ...rest } = without(upstream, 'password');
    const loaded: LoadedUpstream = { ...rest, url: (url ?? defaultUpstreamUrl(host)).replace(/\/+$/, '') };
    if (passwordFile !== undefined) loaded.passwordFile = resolve(fileBase, passwordFile);
    if (caFile !== undefined) loaded.caFile = resolve(fileBase, caFile);
    const password = await secret(['upstreams', host], upstream);
    if (password !== undefined) loaded.password = password;
    upstreams[host] = loaded;
  }

  const { passwordFile: metaPasswordFile, ...metadataRest } = without(config.metadata, 'url');
  const metadata: LoadedMetadata = { ...metadataRest, url: metadataUrl };
  if (metaPasswordFile !== undefined) metadata.passwordFile = resolve(fileBase, metaPasswordFile);
  const metaPassword = await secret(['metadata'], config.metadata);
  if (metaPassword !== undefined) metadata.password = metaPassword;

  // Trust material files, like secrets, sit next to the config file.
  const trust = {
    ...config.trust,
    roots: Object.fromEntries(
      Object.entries(config.trust.roots).map(([name, root]) => [
        name,
        'file' in root ? { file: resolve(fileBase, root.file) } : root,
      ]),
    ),
    keys: Object.fromEntries(
      Object.entries(config.trust.keys).map(([name, key]) => [
        name,
        'file' in key ? { file: resolve(fileBase, key.file) } : key,
      ]),
    ),
  };

  // The audit trail lives next to the cache unless the file says otherwise. Replicas sharing a storage
  // directory each write their own hash chain, in a directory named after the replica.
  const replica = config.storage.replica ?? hostname();
  const auditBase =
    config.audit.dir === undefined
      ? join(storageDir, 'audit')
      : resolve(baseFor('audit.dir'), config.audit.dir);
  const auditDir = config.storage.shared ? join(auditBase, replica) : auditBase;
  let checkpointKey: string | undefined;
  const cp = config.audit.checkpoint;
  if (cp !== undefined) {
    if ((cp.keyFile === undefined) === (cp.keyEnv === undefined)) {
      addProblem(['audit', 'checkpoint'], 'expected exactly one of keyFile, keyEnv');
    } else if (readSecrets) {
      const at = ['audit', 'checkpoint', cp.keyFile === undefined ? 'keyEnv' : 'keyFile'];
      if (cp.keyFile !== undefined) {
        const read = await readSecretFile(resolve(fileBase, cp.keyFile));
        if ('error' in read) addProblem(at, read.error);
        else checkpointKey = read.value;
      } else if (cp.keyEnv !== undefined) {
        checkpointKey = env[cp.keyEnv];
        if (checkpointKey === undefined || checkpointKey === '') {
          addProblem(at, `environment variable ${cp.keyEnv} is not set or empty`);
          checkpointKey = undefined;
        }
      }
      if (checkpointKey !== undefined) {
        try {
          signingKey(checkpointKey);
        } catch (error) {
          addProblem(at, (error as Error).message);
        }
      }
    }
  }
  const audit = {
    ...config.audit,
    ...(checkpointKey === undefined ? {} : { checkpointKey }),
    ...(cp?.keyFile === undefined ? {} : { checkpoint: { ...cp, keyFile: resolve(fileBase, cp.keyFile) } }),
    dir: auditDir,
    ...(config.audit.webhook === undefined
      ? {}
      : {
          webhook: {
            ...config.audit.webhook,
            ...(config.audit.webhook.spoolDir === undefined
              ? {}
              : { spoolDir: resolve(fileBase, config.audit.webhook.spoolDir) }),
          },
        }),
  };

  // Auth: files next to the config, token secrets read now (like upstream passwords).
  const tokens: { name: string; token: string; repositories: string[] }[] = [];
  for (const [i, t] of config.auth.tokens.entries()) {
    if ((t.tokenFile === undefined) === (t.tokenEnv === undefined)) {
      addProblem(['auth', 'tokens', i], 'expected exactly one of tokenFile, tokenEnv');
      continue;
    }
    const token = readSecrets
      ? await secret(
          ['auth', 'tokens', i],
          {
            ...(t.tokenFile === undefined ? {} : { passwordFile: t.tokenFile }),
            ...(t.tokenEnv === undefined ? {} : { passwordEnv: t.tokenEnv }),
          },
          { file: 'tokenFile', env: 'tokenEnv' },
        )
      : '';
    if (token !== undefined) tokens.push({ name: t.name, token, repositories: t.repositories });
  }
  const auth = {
    ...config.auth,
    ...(config.auth.htpasswd === undefined ? {} : { htpasswd: resolve(fileBase, config.auth.htpasswd) }),
    tokens,
  };
  const server = {
    ...config.server,
    ...(config.server.tls === undefined
      ? {}
      : {
          tls: {
            ...config.server.tls,
            certFile: resolve(fileBase, config.server.tls.certFile),
            keyFile: resolve(fileBase, config.server.tls.keyFile),
            ...(config.server.tls.clientCAFile === undefined
              ? {}
              : { clientCAFile: resolve(fileBase, config.server.tls.clientCAFile) }),
          },
        }),
  };

  if (problems.length > 0) throw new ConfigError(source, inFileOrder(problems));

  const admin =
    config.admin.htpasswd === undefined
      ? config.admin
      : { ...config.admin, htpasswd: resolve(fileBase, config.admin.htpasswd) };

  return {
    ...config,
    admin,
    trust,
    audit,
    auth,
    server,
    storage: { ...config.storage, dir: storageDir },
    metadata,
    upstreams,
    source,
  };
}

/** The config as written (file or embedded defaults) with env overrides applied, before validation. */
export interface ConfigInputSource {
  /** Absolute path of the file, or "embedded defaults". */
  source: string;
  /** Where relative paths in the file resolve from. */
  fileBase: string;
  input: Record<string, unknown>;
  /** Dotted key paths set from environment variables, mapped to the variable. */
  fromEnv: Map<string, string>;
  /** Line and column of a key path in the file (absent for the embedded defaults). */
  locate?: (p: KeyPath) => { line: number; col: number } | undefined;
}

/**
 * Read the config input: the YAML file (or a copy of the embedded defaults) with the environment
 * overrides applied. Throws ConfigError for a file that cannot be read or is not YAML.
 */
export async function readConfigInput(
  path: string | undefined,
  env: NodeJS.ProcessEnv,
  cwd: string,
): Promise<ConfigInputSource> {
  const source = path === undefined ? EMBEDDED_SOURCE : resolve(cwd, path);
  const fileBase = path === undefined ? cwd : dirname(source);

  let raw: unknown;
  let locate: ((p: KeyPath) => { line: number; col: number } | undefined) | undefined;
  if (path === undefined) {
    raw = structuredClone(defaultConfigInput);
  } else {
    const parsed = await readYaml(source);
    raw = parsed.value;
    locate = parsed.locate;
  }

  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new ConfigError(source, [
      { path: '', message: 'expected a mapping at the top level (at least "upstreams:")' },
    ]);
  }
  const input = raw as Record<string, unknown>;
  normalizeEmptyUpstreams(input);
  const fromEnv = applyEnvOverrides(input, env);
  return locate === undefined
    ? { source, fileBase, input, fromEnv }
    : { source, fileBase, input, fromEnv, locate };
}

/** A copy of `value` without `key` (destructuring would leave an unused variable behind). */
function without<T extends object, K extends keyof T>(value: T, key: K): Omit<T, K> {
  return Object.fromEntries(Object.entries(value).filter(([k]) => k !== key)) as Omit<T, K>;
}

/** `https://<host>`, except Docker Hub, whose registry API is not served on docker.io itself. */
export function defaultUpstreamUrl(host: string): string {
  return host === 'docker.io' ? 'https://registry-1.docker.io' : `https://${host}`;
}

/** The file path of a `sqlite://` URL (`:memory:` for an in-memory database), else undefined. */
export function sqlitePath(url: string): string | undefined {
  return url.startsWith('sqlite://') ? url.slice('sqlite://'.length) : undefined;
}

function resolveSqliteUrl(url: string, base: string): string {
  const path = sqlitePath(url);
  if (path === undefined || path === ':memory:' || isAbsolute(path)) return url;
  return `sqlite://${resolve(base, path)}`;
}

interface ParsedYaml {
  value: unknown;
  locate: (path: KeyPath) => { line: number; col: number } | undefined;
}

async function readYaml(file: string): Promise<ParsedYaml> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new ConfigError(file, [{ path: '', message: `cannot read the config file: ${fsReason(error)}` }], {
      cause: error,
    });
  }
  const lineCounter = new LineCounter();
  // prettyErrors off: the pretty form quotes the offending line, which may hold an inline password.
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      file,
      doc.errors.map((e) => {
        const { line, col } = lineCounter.linePos(e.pos[0]);
        return { path: '', message: `invalid YAML: ${e.message}`, line, col };
      }),
    );
  }
  if (doc.contents === null) {
    throw new ConfigError(file, [{ path: '', message: 'the file is empty: expected at least "upstreams:"' }]);
  }
  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: 100 });
  } catch (error) {
    throw new ConfigError(file, [{ path: '', message: `invalid YAML: ${(error as Error).message}` }]);
  }
  return { value, locate: (path) => locateKey(doc, lineCounter, path) };
}

/**
 * Line and column of the deepest part of `path` that exists in the document: the key itself in a
 * mapping, the item in a list (so a problem in `policies.3.action` points at `action:` of the fourth
 * policy, not at `policies:`).
 */
function locateKey(doc: Document, lc: LineCounter, path: KeyPath): { line: number; col: number } | undefined {
  let node: unknown = doc.contents;
  let pos: number | undefined;
  for (const key of path) {
    if (isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === String(key));
      if (pair === undefined) break;
      pos = isScalar(pair.key) ? pair.key.range?.[0] : pos;
      node = pair.value;
    } else if (isSeq(node)) {
      const item: unknown = node.items[Number(key)];
      if (item === undefined || item === null || typeof item !== 'object' || !('range' in item)) break;
      pos = (item as { range?: [number, number, number] | null }).range?.[0] ?? pos;
      node = item;
    } else {
      break;
    }
  }
  return pos === undefined ? undefined : lc.linePos(pos);
}

/**
 * The sections of an input that failed validation which do parse on their own, for the reference
 * checks: upstreams one by one, policies one by one (a sparse list that keeps indices), and the names
 * of trust roots and keys even when one of them is invalid.
 */
function parsedSections(input: Record<string, unknown>): ConfigSections {
  const sections: Record<string, unknown> = {};
  for (const [key, schema] of Object.entries(configSchema.shape)) {
    const parsed = (schema as { safeParse(v: unknown): { success: boolean; data?: unknown } }).safeParse(
      input[key],
    );
    if (parsed.success) sections[key] = parsed.data;
  }
  const upstreams = input['upstreams'];
  if (sections['upstreams'] === undefined && isRecord(upstreams)) {
    const ok: Record<string, UpstreamConfig> = {};
    for (const [host, value] of Object.entries(upstreams)) {
      const parsed = upstreamSchema.safeParse(value ?? {});
      // A host that fails still counts as configured (for defaultUpstream), with its defaults.
      ok[host] = parsed.success ? parsed.data : upstreamSchema.parse({});
    }
    sections['upstreams'] = ok;
  }
  const policies = input['policies'];
  if (sections['policies'] === undefined && Array.isArray(policies)) {
    const sparse: Policy[] = [];
    policies.forEach((p: unknown, i) => {
      const parsed = policySchema.safeParse(p);
      sparse[i] = parsed.success ? parsed.data : attestorsOnly(p, i);
    });
    sections['policies'] = sparse;
  }
  const trust = input['trust'];
  if (sections['trust'] === undefined && isRecord(trust)) {
    const roots = trust['roots'] ?? { 'public-good': {} };
    const keys = trust['keys'] ?? {};
    if (isRecord(roots) && isRecord(keys)) sections['trust'] = { roots, keys };
  }
  return sections;
}

/**
 * A policy that failed validation, reduced to its name and the attestors that parse (indices kept),
 * so that its references to keys and roots are checked in the same round.
 */
function attestorsOnly(raw: unknown, index: number): Policy {
  const policy = isRecord(raw) ? raw : {};
  const list = (value: unknown) => {
    const out: Attestor[] = [];
    if (Array.isArray(value)) {
      value.forEach((a: unknown, j) => {
        const parsed = attestorSchema.safeParse(a);
        if (parsed.success) out[j] = parsed.data;
      });
    }
    return out;
  };
  const signatures = policy['signatures'];
  const items = (value: unknown) => (Array.isArray(value) ? (value as unknown[]) : []);
  const name = policy['name'];
  return {
    // A name that is not a string cannot collide with another policy's.
    name: typeof name === 'string' ? name : `\u0000${index}`,
    match: [],
    action: 'verify',
    mode: 'enforce',
    signatures: { threshold: 1, attestors: list(isRecord(signatures) ? signatures['attestors'] : undefined) },
    attestations: items(policy['attestations']).map((a) => ({
      predicateType: '',
      attestors: list(isRecord(a) ? a['attestors'] : undefined),
    })),
    gates: items(policy['gates']).map(
      (g) => ({ attestors: list(isRecord(g) ? g['attestors'] : undefined) }) as unknown as Gate,
    ),
  };
}

/** Problems in the order of the file (those without a line, from the environment, first). */
function inFileOrder(problems: readonly ConfigProblem[]): ConfigProblem[] {
  return [...problems].sort((a, b) => (a.line ?? 0) - (b.line ?? 0) || (a.col ?? 0) - (b.col ?? 0));
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** `quay.io:` with nothing after it means "this upstream, all defaults". */
function normalizeEmptyUpstreams(input: Record<string, unknown>): void {
  const upstreams = input['upstreams'];
  if (upstreams === null || typeof upstreams !== 'object' || Array.isArray(upstreams)) return;
  for (const [host, value] of Object.entries(upstreams)) {
    if (value === null) (upstreams as Record<string, unknown>)[host] = {};
  }
}

function applyEnvOverrides(input: Record<string, unknown>, env: NodeJS.ProcessEnv): Map<string, string> {
  const applied = new Map<string, string>();
  for (const { name, path } of ENV_OVERRIDES) {
    const value = env[name];
    if (value === undefined || value === '') continue;
    let node: Record<string, unknown> = input;
    let ok = true;
    for (const key of path.slice(0, -1)) {
      const next = node[key] ?? {};
      if (next === null || typeof next !== 'object' || Array.isArray(next)) {
        ok = false; // the file has a bad value here; validation reports it
        break;
      }
      node[key] = next;
      node = next as Record<string, unknown>;
    }
    if (!ok) continue;
    node[path[path.length - 1] as string] = value;
    applied.set(path.join('.'), name);
  }
  return applied;
}
