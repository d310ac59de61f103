/**
 * Trust material (Sigstore trust roots and public keys) and signature verification against it.
 *
 * Built once from config by {@link TrustMaterialStore.load}; `verify` is synchronous and CPU only.
 * One `@sigstore/verify` `Verifier` is built per trust root and per key and reused: building one
 * parses every certificate and key of the root, which costs more than a verification.
 */
import { createHash, createPublicKey, X509Certificate as NodeX509Certificate } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import type { Bundle } from '@sigstore/bundle';
import { json as sigstoreJSON } from '@sigstore/core';
import { TrustedRoot } from '@sigstore/protobuf-specs';
import { PolicyError, toSignedEntity, toTrustMaterial, VerificationError, Verifier } from '@sigstore/verify';
import type { Signer } from '@sigstore/verify';
import { digestAlgorithm, digestHex } from '../oci/index.ts';
import type { Digest } from '../oci/index.ts';
import { OID_CODE_SIGNING, SIMPLESIGNING_TYPE } from './constants.ts';
import { inTotoStatement, jsonObject } from './convert.ts';
import { subjectMatcher } from './identity.ts';
import type { Attestor, FoundSignature, SignatureVerifier, VerifyOutcome } from './types.ts';

/** A trust root: the Sigstore public-good instance, or a `trusted_root.json` file (private Sigstore). */
export type TrustRootConfig = { sigstore: 'public-good' } | { file: string };
/** A PEM public key (ECDSA P-256/P-384/P-521 or RSA), from a file or inline. */
export type KeyConfig = { file: string } | { pem: string };

export interface TrustMaterialConfig {
  roots?: Record<string, TrustRootConfig>;
  keys?: Record<string, KeyConfig>;
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
   * causes in one line, `using` where the root in use came from ({@link TrustMaterialStore.publicGoodOrigin}).
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

interface LoadedKey {
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

function fail(code: string, reason: string): VerifyOutcome {
  return { ok: false, code, reason };
}

function causes(err: unknown): string[] {
  const out: string[] = [];
  for (let e: unknown = err; e instanceof Error && out.length < 5; e = e.cause) out.push(e.message);
  return out;
}

/** A library error as an outcome code with a readable reason. */
function outcomeOf(err: unknown): VerifyOutcome {
  const chain = causes(err);
  const reason = chain.join(': ') || String(err);
  if (err instanceof PolicyError) return fail('identity-mismatch', reason);
  if (!(err instanceof VerificationError)) return fail('malformed', `verification failed: ${reason}`);
  switch (err.code) {
    case 'CERTIFICATE_ERROR':
      if (chain.some((m) => m.includes('expired'))) {
        return fail('certificate-expired', `certificate not valid at signing time: ${reason}`);
      }
      if (chain.some((m) => m.includes('SCT')))
        return fail('untrusted-root', `SCT not from a trusted CT log: ${reason}`);
      return fail('untrusted-root', `certificate does not chain to the trust root: ${reason}`);
    case 'SIGNATURE_ERROR':
      return fail('signature-invalid', reason);
    case 'PUBLIC_KEY_ERROR':
      return fail('unknown-key', reason);
    case 'TIMESTAMP_ERROR':
      return fail('tlog-missing', `no verified signing time (transparency log SET or RFC 3161): ${reason}`);
    case 'TLOG_ERROR':
      return fail(reason.includes('expected') ? 'tlog-missing' : 'tlog-invalid', reason);
    case 'TLOG_BODY_ERROR':
    case 'TLOG_INCLUSION_PROOF_ERROR':
    case 'TLOG_INCLUSION_PROMISE_ERROR':
    case 'TLOG_MISSING_INCLUSION_ERROR':
      return fail('tlog-invalid', reason);
    case 'NOT_IMPLEMENTED_ERROR':
      return fail('malformed', reason);
  }
}

/** The subject binding: the signed payload must name the digest being decided. */
function checkBinding(found: FoundSignature, subject: Digest): VerifyOutcome | undefined {
  if (found.bundle.content.$case === 'messageSignature') {
    if (found.artifact === undefined) return fail('malformed', 'message signature without its payload');
    let critical: Record<string, unknown>;
    try {
      const c = jsonObject(found.artifact, 'simplesigning payload').critical;
      if (typeof c !== 'object' || c === null)
        throw new Error('simplesigning payload has no critical section');
      critical = c as Record<string, unknown>;
    } catch (err) {
      return fail('malformed', err instanceof Error ? err.message : String(err));
    }
    if (critical.type !== SIMPLESIGNING_TYPE) {
      return fail(
        'malformed',
        `simplesigning type is ${JSON.stringify(critical.type)}, not "${SIMPLESIGNING_TYPE}"`,
      );
    }
    const image = critical.image as Record<string, unknown> | undefined;
    const signed = image?.['docker-manifest-digest'];
    if (signed !== subject) {
      return fail(
        'digest-mismatch',
        `signature is for ${typeof signed === 'string' ? signed : 'no digest'}, not ${subject}`,
      );
    }
    return undefined;
  }
  let statement;
  try {
    statement = inTotoStatement(found.bundle);
  } catch (err) {
    return fail('malformed', err instanceof Error ? err.message : String(err));
  }
  if (statement === undefined)
    return fail('malformed', 'bundle has neither a message signature nor a DSSE envelope');
  const alg = digestAlgorithm(subject);
  const hex = digestHex(subject);
  if (!statement.subjects.some((s) => s[alg] === hex)) {
    const named = statement.subjects
      .map((s) => (s.sha256 === undefined ? '?' : `sha256:${s.sha256}`))
      .join(', ');
    return fail('digest-mismatch', `in-toto statement subjects [${named}] do not include ${subject}`);
  }
  return undefined;
}

/** PEM blocks (certificate or public key) named by a Rekor entry body as the signer. */
function rekorSigners(bundle: Bundle): string[] {
  const out: string[] = [];
  for (const entry of bundle.verificationMaterial.tlogEntries) {
    let body: Record<string, unknown>;
    try {
      body = jsonObject(entry.canonicalizedBody, 'rekor entry body');
    } catch {
      continue; // the library rejects it with a precise reason
    }
    const spec = body.spec as Record<string, unknown> | undefined;
    const b64s: unknown[] = [];
    if (body.kind === 'hashedrekord') {
      b64s.push(
        (
          (spec?.signature as Record<string, unknown> | undefined)?.publicKey as
            Record<string, unknown> | undefined
        )?.content,
      );
    } else if (body.kind === 'dsse' && Array.isArray(spec?.signatures)) {
      for (const s of spec.signatures as Record<string, unknown>[]) b64s.push(s.verifier);
    } else if (body.kind === 'intoto') {
      const env = (spec?.content as Record<string, unknown> | undefined)?.envelope as
        Record<string, unknown> | undefined;
      if (Array.isArray(env?.signatures))
        for (const s of env.signatures as Record<string, unknown>[]) b64s.push(s.publicKey);
    }
    for (const v of b64s) if (typeof v === 'string') out.push(Buffer.from(v, 'base64').toString('utf8'));
  }
  return out;
}

/**
 * cosign's `comparePublicKey`: the key recorded in the transparency log must be the signer's.
 * `@sigstore/verify` compares the signature and digest of the entry, not its key.
 */
function checkRekorKey(bundle: Bundle, signer: KeyObject): VerifyOutcome | undefined {
  const want = signer.export({ type: 'spki', format: 'der' });
  for (const pem of rekorSigners(bundle)) {
    let spki: Buffer;
    try {
      spki = pem.includes('CERTIFICATE')
        ? new NodeX509Certificate(pem).publicKey.export({ type: 'spki', format: 'der' })
        : createPublicKey(pem).export({ type: 'spki', format: 'der' });
    } catch {
      return fail('tlog-invalid', 'transparency log entry names an unreadable signer key');
    }
    if (!spki.equals(want))
      return fail('tlog-invalid', 'transparency log entry names a different signer key');
  }
  return undefined;
}

/** The leaf certificate of a bundle, if it is signed with one. */
function leafCertificate(bundle: Bundle): Buffer | undefined {
  const c = bundle.verificationMaterial.content;
  if (c.$case === 'certificate') return c.certificate.rawBytes;
  if (c.$case === 'x509CertificateChain') return c.x509CertificateChain.certificates[0]?.rawBytes;
  return undefined;
}

/**
 * The configured trust roots and keys, and the {@link SignatureVerifier} over them.
 *
 * What a verification checks, in order: the signature, certificate chain (to the attestor's named
 * root, valid at the signing time the transparency log or a TSA vouches for), SCTs and transparency
 * log entries (`@sigstore/verify`); that the transparency log entry names the signer's key; EKU
 * codeSigning on the leaf; the identity (SAN matched anchored, issuer exact); and the binding of the
 * signed payload to the digest being decided. Any exception becomes `ok: false`.
 */
export class TrustMaterialStore implements SignatureVerifier {
  #roots: Map<string, LoadedRoot>;
  readonly #keys: Map<string, LoadedKey>;
  readonly #keyTlogRoot: string | undefined;
  readonly #options: TrustMaterialStoreOptions;
  readonly #matchers = new Map<string, RegExp | undefined>();
  /**
   * Outcomes per found signature object (its bytes never change) and attestor, subject and trust
   * version: a re-decision within the evidence memo's lifetime does not hash a 30 MiB payload again.
   */
  readonly #outcomes = new WeakMap<FoundSignature, Map<string, VerifyOutcome>>();
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
  ): Promise<TrustMaterialStore> {
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
    const store = new TrustMaterialStore(roots, keys, keyTlogRoot, options);
    store.#rebuildKeyTlogVerifiers();
    if (options.refresh !== undefined && [...roots.values()].some((r) => 'sigstore' in r.source)) {
      store.#startRefresh(options.refresh);
    }
    return store;
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

  verify(found: FoundSignature, attestor: Attestor, subject: Digest): VerifyOutcome {
    const key = `${this.#version}\0${subject}\0${JSON.stringify(attestor)}`;
    let outcomes = this.#outcomes.get(found);
    const hit = outcomes?.get(key);
    if (hit !== undefined) return hit;
    let outcome: VerifyOutcome;
    try {
      outcome = this.#verify(found, attestor, subject);
    } catch (err) {
      outcome = outcomeOf(err);
    }
    if (outcomes === undefined) this.#outcomes.set(found, (outcomes = new Map<string, VerifyOutcome>()));
    outcomes.set(key, outcome);
    return outcome;
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
          reason: causes(err).join(': ') || String(err),
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

  #matcher(attestor: { subject?: string; subjectRegExp?: string }): RegExp | undefined {
    const cacheKey = JSON.stringify([attestor.subject, attestor.subjectRegExp]);
    if (!this.#matchers.has(cacheKey)) this.#matchers.set(cacheKey, subjectMatcher(attestor));
    return this.#matchers.get(cacheKey);
  }

  #verify(found: FoundSignature, attestor: Attestor, subject: Digest): VerifyOutcome {
    if (found.parseError !== undefined) return fail('malformed', found.parseError);
    const leaf = leafCertificate(found.bundle);
    let verifier: Verifier;
    if ('key' in attestor) {
      const key = this.#keys.get(attestor.key);
      if (key === undefined) return fail('unknown-key', `key ${attestor.key} is not configured`);
      if (leaf !== undefined)
        return fail('unknown-key', `signed with a certificate, not with key ${attestor.key}`);
      if (attestor.tlog === true) {
        if (key.tlog === undefined)
          return fail('tlog-missing', 'no trust root is configured for transparency logs');
        verifier = key.tlog;
      } else {
        verifier = key.noTlog;
      }
    } else {
      const root = this.#roots.get(attestor.keyless.root);
      if (root === undefined)
        return fail('untrusted-root', `trust root ${attestor.keyless.root} is not configured`);
      if (leaf === undefined) return fail('identity-mismatch', 'signed with a key, not with a certificate');
      verifier = root.verifier;
    }

    const signer: Signer = verifier.verify(toSignedEntity(found.bundle, found.artifact));
    const rekor = checkRekorKey(found.bundle, signer.key);
    if (rekor !== undefined) return rekor;

    if ('key' in attestor) {
      const binding = checkBinding(found, subject);
      return binding ?? { ok: true, signer: { kind: 'key', key: attestor.key } };
    }

    // cosign's TrustedCert requires the codeSigning EKU; @sigstore/verify does not check it.
    const eku = leaf === undefined ? undefined : new NodeX509Certificate(leaf).keyUsage;
    if (eku?.includes(OID_CODE_SIGNING) !== true) {
      return fail('no-codesigning-eku', 'signing certificate lacks the codeSigning extended key usage');
    }
    const { issuer, subject: wantSubject, subjectRegExp } = attestor.keyless;
    const identity = signer.identity?.subjectAlternativeName ?? '';
    const gotIssuer = signer.identity?.extensions?.issuer ?? '';
    let matcher: RegExp | undefined;
    try {
      matcher = this.#matcher(attestor.keyless);
    } catch (err) {
      return fail(
        'invalid-attestor',
        `subjectRegExp is not a valid expression: ${err instanceof Error ? err.message : String(err)}`,
      );
    }
    if (matcher === undefined)
      return fail('invalid-attestor', 'keyless attestor names neither subject nor subjectRegExp');
    if (gotIssuer !== issuer)
      return fail('issuer-mismatch', `certificate issuer is "${gotIssuer}", expected "${issuer}"`);
    if (!matcher.test(identity)) {
      const wanted = wantSubject ?? `/${subjectRegExp ?? ''}/`;
      return fail(
        'identity-mismatch',
        `certificate identity is "${identity}", expected ${JSON.stringify(wanted)}`,
      );
    }
    const binding = checkBinding(found, subject);
    return binding ?? { ok: true, signer: { kind: 'keyless', issuer: gotIssuer, subject: identity } };
  }
}

function keyVerifier(root: TrustedRoot, key: KeyObject, options: typeof KEYED_TLOG): Verifier {
  // cosign classic signatures carry no key hint: the finder ignores it, one verifier per configured key.
  const material = toTrustMaterial(root, () => ({ publicKey: key, validFor: () => true }));
  return new Verifier(material, options);
}
