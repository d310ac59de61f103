/**
 * Trust roots and keys: loading them from config (the public-good root embedded in `@sigstore/tuf`, a
 * `trusted_root.json` file, PEM keys), the TUF refresh of public-good roots, and the `version` every
 * decision cache key carries. One `@sigstore/verify` `Verifier` is built per root and per key and
 * reused: building one parses every certificate and key of the root, which costs more than a
 * verification. Verification itself is verify.ts.
 */
import { createHash, createPublicKey } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { json as sigstoreJSON } from '@sigstore/core';
import { TrustedRoot } from '@sigstore/protobuf-specs';
import { toTrustMaterial, Verifier } from '@sigstore/verify';
import type { TrustKeyConfig, TrustRootConfig } from '../shared/index.ts';
import { jsonObject } from './convert.ts';

export interface TrustMaterialConfig {
  roots?: Record<string, TrustRootConfig>;
  keys?: Record<string, TrustKeyConfig>;
  /**
   * The root whose transparency logs check key-based signatures of attestors with `tlog: true`.
   * Default: the root configured as `{ sigstore: 'public-good' }`, else the only root.
   */
  keyTlogRoot?: string;
}

/** Fetches a fresh trusted root (TUF); injected in tests, `@sigstore/tuf` in production. */
export type TrustedRootFetcher = () => Promise<TrustedRoot>;

export interface TrustRefreshOptions {
  /** TUF metadata cache directory (required by `@sigstore/tuf`). */
  cachePath: string;
  /** TUF mirror (default the public-good CDN). */
  mirrorURL?: string;
  /** Refresh period in ms (default 6 h: the public-good timestamp.json expires after about 7 days). */
  intervalMs?: number;
  /** Replaces the `@sigstore/tuf` fetch (tests). */
  fetch?: TrustedRootFetcher;
}

export interface TrustMaterialStoreOptions {
  /**
   * Refresh public-good roots over TUF on a timer. Off when absent: the root embedded in
   * `@sigstore/tuf` is used as it is (and tests never reach the internet).
   */
  refresh?: TrustRefreshOptions;
  /**
   * Told about refresh failures (the last good root stays in use): `reason` is the error and its
   * causes in one line, `using` where the root in use came from ({@link TrustRoots.publicGoodOrigin}).
   */
  onRefreshError?: (err: unknown, info: { reason: string; using: string; mirror: string }) => void;
  /** Told when a refresh changed a root (and so `version`). */
  onRefreshed?: (version: string) => void;
}

const SEED_MIRROR = 'https://tuf-repo-cdn.sigstore.dev';
const DEFAULT_REFRESH_MS = 6 * 60 * 60 * 1000;
const KEYED_NO_TLOG = { tlogThreshold: 0, ctlogThreshold: 0, timestampThreshold: 0 };
const KEYED_TLOG = { tlogThreshold: 1, ctlogThreshold: 0, timestampThreshold: 0 };
const EMPTY_ROOT = TrustedRoot.fromJSON({
  mediaType: 'application/vnd.dev.sigstore.trustedroot+json;version=0.1',
  tlogs: [],
  certificateAuthorities: [],
  ctlogs: [],
  timestampAuthorities: [],
});

/** Where the embedded public-good root comes from: the seeds of the installed `@sigstore/tuf`. */
export async function embeddedRootOrigin(): Promise<string> {
  const pkg = createRequire(import.meta.url).resolve('@sigstore/tuf/package.json');
  const { version } = jsonObject(await readFile(pkg), '@sigstore/tuf package.json');
  return `the root embedded in @sigstore/tuf ${String(version)} (seeds.json)`;
}

/** The public-good `trusted_root.json` embedded in `@sigstore/tuf`'s `seeds.json` (read at runtime). */
export async function publicGoodTrustedRoot(): Promise<TrustedRoot> {
  const path = createRequire(import.meta.url).resolve('@sigstore/tuf/seeds.json');
  const seeds = jsonObject(await readFile(path), '@sigstore/tuf seeds.json');
  const mirror = seeds[SEED_MIRROR] as { targets?: Record<string, unknown> } | undefined;
  const encoded = mirror?.targets?.['trusted_root.json'];
  if (typeof encoded !== 'string') throw new Error('@sigstore/tuf seeds.json has no trusted_root.json');
  return TrustedRoot.fromJSON(jsonObject(Buffer.from(encoded, 'base64'), 'embedded trusted_root.json'));
}

async function defaultFetcher(options: TrustRefreshOptions): Promise<TrustedRoot> {
  const { getTrustedRoot } = await import('@sigstore/tuf');
  return getTrustedRoot({
    cachePath: options.cachePath,
    ...(options.mirrorURL === undefined ? {} : { mirrorURL: options.mirrorURL }),
  });
}

/** Parse a trusted_root.json (Sigstore TrustedRoot, JSON) as `trust.roots.<name>.file` is loaded. */
export function parseTrustedRoot(bytes: Buffer, what: string): TrustedRoot {
  const json = jsonObject(bytes, what);
  if (
    typeof json.mediaType !== 'string' ||
    !json.mediaType.startsWith('application/vnd.dev.sigstore.trustedroot')
  ) {
    throw new Error(`${what} is not a Sigstore trusted root (mediaType ${String(json.mediaType)})`);
  }
  return TrustedRoot.fromJSON(json);
}

/** Load a PEM public key; only key types `@sigstore/verify` checks message signatures with. */
export function loadPublicKey(pem: string, name: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPublicKey(pem);
  } catch (cause) {
    throw new Error(`key ${name}: not a PEM public key`, { cause });
  }
  const type = key.asymmetricKeyType;
  if (type === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    if (curve !== 'prime256v1' && curve !== 'secp384r1' && curve !== 'secp521r1') {
      throw new Error(`key ${name}: unsupported EC curve ${String(curve)} (use P-256, P-384 or P-521)`);
    }
  } else if (type === 'rsa') {
    if ((key.asymmetricKeyDetails?.modulusLength ?? 0) < 2048)
      throw new Error(`key ${name}: RSA keys need 2048 bits or more`);
  } else {
    // @sigstore/verify always passes a hash name for message signatures, which node:crypto refuses for
    // Ed25519: cosign classic signatures made with an Ed25519 key could never verify.
    throw new Error(
      `key ${name}: ${String(type)} keys are not supported (use ECDSA P-256/P-384/P-521 or RSA)`,
    );
  }
  return key;
}

interface LoadedRoot {
  root: TrustedRoot;
  /** sha256 of the canonical JSON, for `version`. */
  hash: string;
  verifier: Verifier;
  /** The same root for key-based signatures with a transparency log entry. */
  source: TrustRootConfig;
  /** Where these bytes came from, for operators ("embedded in @sigstore/tuf 5.0.1", "TUF … at …"). */
  origin: string;
}

export interface LoadedKey {
  key: KeyObject;
  spki: Buffer;
  noTlog: Verifier;
  tlog: Verifier | undefined;
}

function rootHash(root: TrustedRoot): string {
  return createHash('sha256')
    .update(sigstoreJSON.canonicalize(TrustedRoot.toJSON(root)))
    .digest('hex');
}

/** The messages of an error and its causes, outermost first (at most five). */
export function causeChain(err: unknown): string[] {
  const out: string[] = [];
  for (let e: unknown = err; e instanceof Error && out.length < 5; e = e.cause) out.push(e.message);
  return out;
}

/**
 * The configured trust roots and keys with their verifiers; public-good roots refreshed over TUF
 * when asked to (the last good root stays in use when a refresh fails).
 */
export class TrustRoots {
  #roots: Map<string, LoadedRoot>;
  readonly #keys: Map<string, LoadedKey>;
  readonly #keyTlogRoot: string | undefined;
  readonly #options: TrustMaterialStoreOptions;
  #version: string;
  #timer: NodeJS.Timeout | undefined;
  #refreshing: Promise<boolean> | undefined;

  private constructor(
    roots: Map<string, LoadedRoot>,
    keys: Map<string, LoadedKey>,
    keyTlogRoot: string | undefined,
    options: TrustMaterialStoreOptions,
  ) {
    this.#roots = roots;
    this.#keys = keys;
    this.#keyTlogRoot = keyTlogRoot;
    this.#options = options;
    this.#version = this.#computeVersion();
  }

  /** Read roots and keys, build the verifiers; with `options.refresh`, start the TUF refresh timer. */
  static async load(
    config: TrustMaterialConfig,
    options: TrustMaterialStoreOptions = {},
  ): Promise<TrustRoots> {
    const roots = new Map<string, LoadedRoot>();
    for (const [name, source] of Object.entries(config.roots ?? {})) {
      let root: TrustedRoot;
      let origin: string;
      try {
        if ('sigstore' in source) {
          root = await publicGoodTrustedRoot();
          origin = await embeddedRootOrigin();
        } else {
          root = parseTrustedRoot(await readFile(source.file), `trust root ${name} (${source.file})`);
          origin = source.file;
        }
      } catch (cause) {
        throw new Error(`trust root ${name}: ${cause instanceof Error ? cause.message : String(cause)}`, {
          cause,
        });
      }
      roots.set(name, {
        root,
        hash: rootHash(root),
        verifier: new Verifier(toTrustMaterial(root)),
        source,
        origin,
      });
    }
    const names = [...roots.keys()];
    const keyTlogRoot =
      config.keyTlogRoot ??
      names.find((n) => 'sigstore' in (roots.get(n)?.source ?? {})) ??
      (names.length === 1 ? names[0] : undefined);
    if (keyTlogRoot !== undefined && !roots.has(keyTlogRoot)) {
      throw new Error(`keyTlogRoot ${keyTlogRoot} is not a configured trust root`);
    }
    const keys = new Map<string, LoadedKey>();
    for (const [name, source] of Object.entries(config.keys ?? {})) {
      const pem = 'pem' in source ? source.pem : await readFile(source.file, 'utf8');
      const key = loadPublicKey(pem, name);
      keys.set(name, {
        key,
        spki: key.export({ type: 'spki', format: 'der' }),
        noTlog: keyVerifier(EMPTY_ROOT, key, KEYED_NO_TLOG),
        tlog: undefined,
      });
    }
    const loaded = new TrustRoots(roots, keys, keyTlogRoot, options);
    loaded.#rebuildKeyTlogVerifiers();
    if (options.refresh !== undefined && [...roots.values()].some((r) => 'sigstore' in r.source)) {
      loaded.#startRefresh(options.refresh);
    }
    return loaded;
  }

  /** A hash of every loaded root and key (with their names): part of every decision cache key. */
  get version(): string {
    return this.#version;
  }

  /**
   * Where the public-good root in use came from: the one embedded in `@sigstore/tuf` until a TUF
   * refresh succeeds, then the mirror and time of that refresh. Undefined without a public-good root.
   */
  get publicGoodOrigin(): string | undefined {
    for (const r of this.#roots.values()) if ('sigstore' in r.source) return r.origin;
    return undefined;
  }

  /** Names of the configured roots and keys (for config checks and `pullwarden verify`). */
  get names(): { roots: string[]; keys: string[] } {
    return { roots: [...this.#roots.keys()], keys: [...this.#keys.keys()] };
  }

  /** The verifier of the root named `name` (keyless signatures), if configured. */
  rootVerifier(name: string): Verifier | undefined {
    return this.#roots.get(name)?.verifier;
  }

  /** The key named `name` and its verifiers (key-based signatures), if configured. */
  key(name: string): LoadedKey | undefined {
    return this.#keys.get(name);
  }

  /**
   * Fetch public-good roots over TUF now; on success swap them in (changing `version` if they
   * changed), on failure keep the last good ones. Resolves true when a root changed.
   */
  async refresh(): Promise<boolean> {
    const options = this.#options.refresh;
    if (options === undefined) return false;
    this.#refreshing ??= (async () => {
      try {
        const fresh = await (options.fetch ?? (() => defaultFetcher(options)))();
        const hash = rootHash(fresh);
        const origin = `TUF ${options.mirrorURL ?? SEED_MIRROR}, refreshed ${new Date().toISOString()}`;
        let changed = false;
        const next = new Map(this.#roots);
        for (const [name, loaded] of this.#roots) {
          if (!('sigstore' in loaded.source)) continue;
          if (loaded.hash === hash) {
            next.set(name, { ...loaded, origin });
            continue;
          }
          next.set(name, {
            root: fresh,
            hash,
            verifier: new Verifier(toTrustMaterial(fresh)),
            source: loaded.source,
            origin,
          });
          changed = true;
        }
        this.#roots = next;
        if (changed) {
          this.#rebuildKeyTlogVerifiers();
          this.#version = this.#computeVersion();
          this.#options.onRefreshed?.(this.#version);
        }
        return changed;
      } catch (err) {
        this.#options.onRefreshError?.(err, {
          reason: causeChain(err).join(': ') || String(err),
          using: this.publicGoodOrigin ?? 'no public-good root',
          mirror: options.mirrorURL ?? SEED_MIRROR,
        });
        return false;
      } finally {
        this.#refreshing = undefined;
      }
    })();
    return this.#refreshing;
  }

  /** Stop the refresh timer. */
  close(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #startRefresh(options: TrustRefreshOptions): void {
    this.#timer = setInterval(() => void this.refresh(), options.intervalMs ?? DEFAULT_REFRESH_MS);
    this.#timer.unref();
    void this.refresh();
  }

  #rebuildKeyTlogVerifiers(): void {
    const root = this.#keyTlogRoot === undefined ? undefined : this.#roots.get(this.#keyTlogRoot)?.root;
    for (const k of this.#keys.values())
      k.tlog = root === undefined ? undefined : keyVerifier(root, k.key, KEYED_TLOG);
  }

  #computeVersion(): string {
    const h = createHash('sha256');
    for (const [name, r] of [...this.#roots].sort(([a], [b]) => a.localeCompare(b)))
      h.update(`root\0${name}\0${r.hash}\n`);
    for (const [name, k] of [...this.#keys].sort(([a], [b]) => a.localeCompare(b))) {
      h.update(`key\0${name}\0${createHash('sha256').update(k.spki).digest('hex')}\n`);
    }
    h.update(`keyTlogRoot\0${this.#keyTlogRoot ?? ''}\n`);
    return h.digest('hex');
  }
}

function keyVerifier(root: TrustedRoot, key: KeyObject, options: typeof KEYED_TLOG): Verifier {
  // cosign classic signatures carry no key hint: the finder ignores it, one verifier per configured key.
  const material = toTrustMaterial(root, () => ({ publicKey: key, validFor: () => true }));
  return new Verifier(material, options);
}
