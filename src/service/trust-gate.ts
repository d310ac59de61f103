import type { Logger } from 'pino';
import { RegistryError, subjectTagKind } from '../oci/index.ts';
import type { Digest, ParsedManifest } from '../oci/index.ts';
import type { AdmittedBlob, AdmittedChild, GateKey, MetadataStore } from '../metadata/index.ts';
import {
  decisionDetail,
  formatDenyMessage,
  gateMaxBytes,
  needsImageFacts,
  readDecision,
} from '../policy/index.ts';
import type { Decision, PolicyEngine } from '../policy/index.ts';
import {
  discoverEvidence,
  DSSE_MEDIA_TYPE,
  SIGSTORE_BUNDLE_ARTIFACT_TYPE,
  SIMPLESIGNING_MEDIA_TYPE,
} from '../trust/index.ts';
import type {
  AttestationReader,
  Evidence,
  KnownExploitedCatalog,
  SignatureVerifier,
} from '../trust/index.ts';
import { readImageFacts } from './image-facts.ts';
import type { Upstream } from '../upstream/index.ts';
import type { DenyDetail } from './deny-detail.ts';
import type { Metrics } from './metrics.ts';
import { SingleFlight } from './single-flight.ts';
import type { Target } from './target.ts';

/** Everything a decision depends on; swapped as one piece when the policy or trust material reloads. */
export interface TrustContext {
  engine: PolicyEngine;
  verifier: SignatureVerifier;
  /** Attestation content for gates, parsed once per attestation digest. */
  reader?: AttestationReader;
  /** KEV catalog for knownExploited conditions; its version is part of the decision cache key. */
  kev?: KnownExploitedCatalog;
  ttl: {
    /** ms an allow (or warn) decision is reused. */
    allow: number;
    /** ms a deny decision is reused. */
    deny: number;
    /** ms discovered signatures are reused (signatures can be added after a push). */
    evidence: number;
    /** ms "no signature found" is reused: short, so a signature pushed late is seen soon. */
    missingEvidence: number;
  };
}

/** A manifest's bytes with the one parse of them made for this request. */
export interface ManifestContent {
  bytes: Buffer;
  parsed: ParsedManifest;
}

/** The manifest being decided, with a way to read its content only when the decision needs it. */
export interface GateManifest {
  digest: Digest;
  mediaType: string;
  /** Read (and parse) once: repeated calls return the same promise. */
  content: () => Promise<ManifestContent>;
  /** The tag that resolved to it: decides whether it can be trust material, and names it in reasons. */
  tag?: string;
}

// Media types of layers that only ever carry signatures, attestations or Sigstore bundles. A manifest
// whose layers are all of these cannot be unpacked into a filesystem, so serving it unverified (as
// trust material that `cosign verify` and admission controllers read through the proxy) runs nothing.
const TRUST_LAYER_TYPES = new Set([
  SIMPLESIGNING_MEDIA_TYPE,
  DSSE_MEDIA_TYPE,
  'application/vnd.in-toto+json',
  'application/vnd.dev.sigstore.bundle+json;version=0.1',
  'application/vnd.dev.sigstore.bundle+json;version=0.2',
  'application/vnd.dev.sigstore.bundle+json;version=0.3',
  SIGSTORE_BUNDLE_ARTIFACT_TYPE,
]);

/**
 * Whether a manifest is trust material, decided by what it is and where it was reached, never by what
 * it calls itself (anyone who can push can label layers `simplesigning`):
 *
 * - an index reached by its referrers tag schema tag (`sha256-<hex>`), every entry naming its
 *   artifactType: serving it admits none of its entries, each is decided on its own when requested;
 * - an image manifest whose layers are all signature, attestation or bundle media types, and which is
 *   a referrer of a subject digest (it has `subject`) or was reached by a cosign tag of a digest
 *   (`sha256-<hex>.sig` / `.att` / `.sbom`).
 *
 * Its config and layers then become fetchable in that repository, each capped by the bytes received.
 */
export function isTrustMaterial(m: ParsedManifest, tag: string | undefined): boolean {
  const reachedAs = tag === undefined ? undefined : subjectTagKind(tag);
  if (m.kind === 'index') {
    return (
      reachedAs === 'referrers' &&
      m.manifests.every((d) => d.artifactType !== undefined && d.artifactType !== '')
    );
  }
  const referrer = m.subject !== undefined || (reachedAs !== undefined && reachedAs !== 'referrers');
  return referrer && m.layers.length > 0 && m.layers.every((l) => TRUST_LAYER_TYPES.has(l.mediaType));
}

/** Policy name recorded for trust material (signature, attestation and referrer manifests). */
export const TRUST_MATERIAL_POLICY = '(trust material)';

/**
 * Default largest blob served because trust material names it (`server.maxTrustMaterialBlobBytes`):
 * signature payloads, DSSE envelopes and bundles are small, so a "signature" manifest cannot be used
 * to make a large layer fetchable.
 */
export const DEFAULT_MAX_TRUST_MATERIAL_BLOB = 1024 * 1024;

interface Memo<T> {
  value: T;
  expires: number;
}

const MEMO_LIMIT = 50_000;
/**
 * Layer bytes the evidence memo holds at most: each entry keeps its signatures' and attestations'
 * bundles, payloads included, and gates read attestations of tens of MiB, so a count alone does not
 * bound memory. Least recently stored go first; one larger than this is not kept at all.
 */
export const EVIDENCE_MEMO_MAX_BYTES = 256 * 1024 * 1024;
/** discovery's own default blob cap (trust MAX_EVIDENCE_BLOB_BYTES): gates only ever raise it. */
const MAX_DEFAULT_EVIDENCE_BYTES = 1024 * 1024;

/**
 * The decision step on the pull path: a manifest is served only when the policy admits its digest,
 * and a blob only when it belongs to an admitted manifest's closure in that repository (or to trust
 * material). Decisions are cached in the metadata store (shared by replicas) under a key made of the
 * policy hash, the trust material version and upstream/repository@digest, so a policy or root change
 * invalidates them without any bookkeeping; an in-process memo keeps the hot path off the store.
 */
export class TrustGate {
  #ctx: TrustContext;
  readonly #metadata: MetadataStore;
  readonly #log: Logger;
  readonly #metrics: Metrics | undefined;
  readonly #now: () => number;
  readonly #decisionMemo = new Map<string, Memo<Decision>>();
  readonly #evidenceMemo = new Map<string, Memo<Evidence> & { bytes: number }>();
  #evidenceBytes = 0;
  readonly #evidenceMaxBytes: number;
  /**
   * Closures this process wrote, with when to write them again (ms). Not a plain "written once" set:
   * the store entries expire (allowTTL * 2 + 1h) or can be lost (a Redis restarted without persistence,
   * eviction), and a process that remembered "written" forever never rewrote them, so the blobs of an
   * image it still admits were refused (403 blob-not-admitted) until the process restarted. Expiring
   * this after allowTTL rewrites the closure at the first manifest request after that, well before
   * the stored entries expire, and bounds the effect of a lost closure to allowTTL.
   */
  readonly #closureWritten = new Map<string, number>();
  readonly #flights = new SingleFlight<Decision>();
  readonly #maxTrustMaterialBlob: number;

  constructor(options: {
    context: TrustContext;
    metadata: MetadataStore;
    logger: Logger;
    metrics?: Metrics;
    now?: () => number;
    /** Largest blob admitted through trust material (default {@link DEFAULT_MAX_TRUST_MATERIAL_BLOB}). */
    maxTrustMaterialBlobBytes?: number;
    /** Layer bytes the evidence memo keeps (default {@link EVIDENCE_MEMO_MAX_BYTES}). */
    evidenceMemoMaxBytes?: number;
  }) {
    this.#evidenceMaxBytes = options.evidenceMemoMaxBytes ?? EVIDENCE_MEMO_MAX_BYTES;
    this.#ctx = options.context;
    this.#maxTrustMaterialBlob = options.maxTrustMaterialBlobBytes ?? DEFAULT_MAX_TRUST_MATERIAL_BLOB;
    this.#metadata = options.metadata;
    this.#log = options.logger.child({ module: 'trust-gate' });
    this.#metrics = options.metrics;
    this.#now = options.now ?? Date.now;
  }

  get context(): TrustContext {
    return this.#ctx;
  }

  /** Swap policy and trust material at once (reload). Cached decisions of the old ones stop matching. */
  swap(context: TrustContext): void {
    this.#ctx = context;
    this.#decisionMemo.clear();
    this.#evidenceMemo.clear();
    this.#evidenceBytes = 0;
    this.#closureWritten.clear();
  }

  /** Layer bytes the evidence memo holds now (tests). */
  get evidenceMemoBytes(): number {
    return this.#evidenceBytes;
  }

  /** The policy and trust material version every decision and closure record is written under. */
  #scope(): string {
    const kev = this.#ctx.kev === undefined ? '' : `.${this.#ctx.kev.version.slice(0, 16)}`;
    return `${this.#ctx.engine.hash.slice(0, 16)}.${this.#ctx.verifier.version.slice(0, 16)}${kev}`;
  }

  #scopeOf(target: Target): Omit<GateKey, 'digest'> {
    return { scope: this.#scope(), upstream: target.upstream, repository: target.repository };
  }

  #key(target: Target, digest: Digest): GateKey {
    return { ...this.#scopeOf(target), digest };
  }

  /** In-process memo key of a gate record (the store builds its own, escaped, from the same parts). */
  static #memoKey(key: GateKey): string {
    return `${key.scope}:${key.upstream}/${key.repository}@${key.digest}`;
  }

  /**
   * Decide a manifest; throws DENIED (with the policy, reasons and every signature checked) when the
   * policy refuses it. Allowed and warned manifests have their closure admitted for blob gating.
   */
  async admitManifest(upstream: Upstream, target: Target, manifest: GateManifest): Promise<Decision> {
    const decision = await this.decide(upstream, target, manifest);
    if (decision.result === 'deny') {
      throw new RegistryError('DENIED', formatDenyMessage(decision), {
        detail: {
          ...decisionDetail(decision),
          upstream: target.upstream,
          repository: target.repository,
          digest: manifest.digest,
          ...(manifest.tag === undefined ? {} : { tag: manifest.tag }),
        } satisfies DenyDetail,
      });
    }
    await this.#admitClosure(target, manifest, decision);
    return decision;
  }

  /**
   * Evaluate a decision now, with no cache read or written: what `pullwarden check` shows. Same
   * discovery, verification and policy code as the pull path.
   */
  async evaluate(upstream: Upstream, target: Target, manifest: GateManifest): Promise<Decision> {
    return this.#evaluate(upstream, target, manifest);
  }

  /** The decision for a manifest, from the caches or evaluated now (one evaluation per key at a time). */
  async decide(upstream: Upstream, target: Target, manifest: GateManifest): Promise<Decision> {
    const gateKey = this.#key(target, manifest.digest);
    const key = TrustGate.#memoKey(gateKey);
    const now = this.#now();
    const memo = this.#decisionMemo.get(key);
    if (
      memo &&
      memo.expires > now &&
      (memo.value.result !== 'deny' || !(await this.#supersededDeny(target, manifest.digest)))
    ) {
      this.#metrics?.cacheRequests.inc({ kind: 'decision', result: 'hit' });
      return memo.value;
    }
    return this.#flights.run(key, async () => {
      const stored = await this.#metadata.getDecision(gateKey, readDecision);
      if (stored && (stored.result !== 'deny' || !(await this.#supersededDeny(target, manifest.digest)))) {
        this.#metrics?.cacheRequests.inc({ kind: 'decision', result: 'hit' });
        this.#remember(key, stored);
        return stored;
      }
      this.#metrics?.cacheRequests.inc({ kind: 'decision', result: 'miss' });
      const decision = await this.#evaluate(upstream, target, manifest);
      const ttl = decision.result === 'deny' ? this.#ctx.ttl.deny : this.#ctx.ttl.allow;
      await this.#metadata.setDecision(gateKey, decision, ttl);
      this.#remember(key, decision);
      this.#metrics?.decisions.inc({ policy: decision.policy ?? '(none)', result: decision.result });
      for (const g of decision.gates ?? []) {
        this.#metrics?.gateResults.inc({
          policy: decision.policy ?? '(none)',
          gate: g.gate,
          result: g.result,
        });
      }
      const line = {
        upstream: target.upstream,
        repository: target.repository,
        tag: manifest.tag,
        digest: manifest.digest,
        policy: decision.policy,
        result: decision.result,
        reasons: decision.reasons,
        signers: decision.signers,
      };
      if (decision.result === 'allow') this.#log.info(line, 'manifest admitted');
      else
        this.#log.warn(line, decision.result === 'warn' ? 'manifest served in warn mode' : 'manifest denied');
      return decision;
    });
  }

  /**
   * A cached deny of a platform manifest no longer holds once an index listing it has been admitted in
   * the same repository since (a direct request by digest came first, then the index was pulled): the
   * child must be re-decided, or the index's pull fails for up to denyTTL. Called for deny hits only, so
   * the hot path (cached allow) is unchanged; the read goes to the shared store, so a replica whose
   * memo holds the old deny sees another replica's admission too.
   */
  async #supersededDeny(target: Target, digest: Digest): Promise<boolean> {
    return (await this.#admittedParent(target, digest)) !== undefined;
  }

  /** The admitted index (in this repository, under the current scope) that lists `digest`, if any. */
  #admittedParent(target: Target, digest: Digest): Promise<AdmittedChild | undefined> {
    return this.#metadata.getAdmittedChild(this.#key(target, digest));
  }

  #remember(key: string, decision: Decision): void {
    if (this.#decisionMemo.size >= MEMO_LIMIT) this.#decisionMemo.clear();
    const ttl = decision.result === 'deny' ? this.#ctx.ttl.deny : this.#ctx.ttl.allow;
    this.#decisionMemo.set(key, { value: decision, expires: this.#now() + ttl });
  }

  async #evaluate(upstream: Upstream, target: Target, manifest: GateManifest): Promise<Decision> {
    const { parsed } = await manifest.content();
    if (isTrustMaterial(parsed, manifest.tag)) {
      return {
        result: 'allow',
        policy: TRUST_MATERIAL_POLICY,
        reasons: ['signature or attestation manifest: served so that verifiers can read it'],
        signers: [],
        checks: [],
      };
    }
    // A platform manifest of an index that was admitted in this repository is admitted with it.
    const parent = await this.#admittedParent(target, manifest.digest);
    if (parent) {
      return {
        result: 'allow',
        policy: parent.policy,
        reasons: [`platform manifest of admitted index ${parent.index}`],
        signers: [],
        checks: [],
      };
    }
    const { engine, verifier } = this.#ctx;
    const policy = engine.match(target.upstream, target.repository);
    let evidence: Evidence | undefined;
    if (policy?.action === 'verify') {
      const started = performance.now();
      // Signatures may live in another repository of the same upstream (cosign COSIGN_REPOSITORY).
      const where =
        policy.signatureRepository === undefined
          ? target
          : { upstream: target.upstream, repository: policy.signatureRepository };
      evidence = await this.#evidence(upstream, where, manifest.digest, gateMaxBytes(policy));
      const images = needsImageFacts(policy)
        ? await readImageFacts(upstream, target.repository, manifest.digest, parsed)
        : undefined;
      const { reader, kev } = this.#ctx;
      const decision = engine.decide({
        upstream: target.upstream,
        repository: target.repository,
        digest: manifest.digest,
        evidence,
        verifier,
        ...(reader !== undefined ? { reader } : {}),
        ...(kev !== undefined ? { kev } : {}),
        ...(images !== undefined ? { images } : {}),
        now: this.#now(),
      });
      this.#metrics?.verifyDuration.observe((performance.now() - started) / 1000);
      return decision;
    }
    return engine.decide({
      upstream: target.upstream,
      repository: target.repository,
      digest: manifest.digest,
      evidence,
      verifier,
    });
  }

  async #evidence(
    upstream: Upstream,
    target: Target,
    digest: Digest,
    maxBlobBytes: number | undefined,
  ): Promise<Evidence> {
    const key = `${target.upstream}/${target.repository}@${digest}:${maxBlobBytes ?? ''}`;
    const now = this.#now();
    const memo = this.#evidenceMemo.get(key);
    if (memo && memo.expires > now) return memo.value;
    if (memo) this.#forgetEvidence(key, memo.bytes);
    const evidence = await discoverEvidence(
      upstream,
      target.repository,
      digest,
      // Gates read attestations up to their maxBytes (SBOMs are tens of MiB); others stay at the default.
      maxBlobBytes === undefined ? {} : { maxBlobBytes: Math.max(maxBlobBytes, MAX_DEFAULT_EVIDENCE_BYTES) },
    );
    const ttl = evidence.items.length > 0 ? this.#ctx.ttl.evidence : this.#ctx.ttl.missingEvidence;
    const bytes = evidence.items.reduce((sum, i) => sum + (i.size ?? 0), 0);
    if (bytes > this.#evidenceMaxBytes) return evidence;
    for (const [oldKey, old] of this.#evidenceMemo) {
      if (this.#evidenceMemo.size < MEMO_LIMIT && this.#evidenceBytes + bytes <= this.#evidenceMaxBytes)
        break;
      this.#forgetEvidence(oldKey, old.bytes);
    }
    const racing = this.#evidenceMemo.get(key); // a concurrent discovery of the same key
    if (racing) this.#forgetEvidence(key, racing.bytes);
    this.#evidenceMemo.set(key, { value: evidence, expires: now + ttl, bytes });
    this.#evidenceBytes += bytes;
    return evidence;
  }

  #forgetEvidence(key: string, bytes: number): void {
    this.#evidenceMemo.delete(key);
    this.#evidenceBytes -= bytes;
  }

  /**
   * Remember what an admitted manifest lets through in this repository: its config and layers (blob
   * gating) or, for an index, its platform manifests. Written at most once per allowTTL per process
   * per scope (see #closureWritten); the entries outlive the decision so that a cached decision always
   * has its closure.
   */
  async #admitClosure(target: Target, manifest: GateManifest, decision: Decision): Promise<void> {
    const scope = this.#scopeOf(target);
    const key = TrustGate.#memoKey({ ...scope, digest: manifest.digest });
    if ((this.#closureWritten.get(key) ?? 0) > this.#now()) return;
    const { parsed } = await manifest.content();
    const ttl = this.#ctx.ttl.allow * 2 + 3_600_000;
    const trustMaterial = decision.policy === TRUST_MATERIAL_POLICY;
    const writes: Promise<void>[] = [];
    if (!trustMaterial && parsed.manifests.length > 0) {
      const children = parsed.manifests.map((child) => child.digest);
      const parent: AdmittedChild = { index: manifest.digest, policy: decision.policy };
      writes.push(this.#metadata.setAdmittedChildren(scope, children, parent, ttl));
    }
    // Each blob with the size its descriptor declares: the download is bounded by it.
    const blobs = [...(parsed.config ? [parsed.config] : []), ...parsed.layers];
    if (trustMaterial) {
      // Never narrow what an image admitted: its layers stay uncapped.
      writes.push(
        (async () => {
          const fresh: { digest: Digest; admission: AdmittedBlob }[] = [];
          for (const blob of blobs) {
            if ((await this.#metadata.getAdmittedBlob({ ...scope, digest: blob.digest })) !== undefined)
              continue;
            fresh.push({
              digest: blob.digest,
              admission: { size: blob.size, maxSize: this.#maxTrustMaterialBlob },
            });
          }
          await this.#metadata.setAdmittedBlobs(scope, fresh, ttl);
        })(),
      );
    } else {
      const admitted = blobs.map((blob) => ({ digest: blob.digest, admission: { size: blob.size } }));
      writes.push(this.#metadata.setAdmittedBlobs(scope, admitted, ttl));
    }
    await Promise.all(writes);
    if (this.#closureWritten.size >= MEMO_LIMIT) this.#closureWritten.clear();
    this.#closureWritten.set(key, this.#now() + this.#ctx.ttl.allow);
  }

  /** Blob gating: only blobs of an admitted manifest's closure (or of trust material) in the repository. */
  async assertBlobAdmitted(target: Target, digest: Digest): Promise<AdmittedBlob> {
    const admitted = await this.#metadata.getAdmittedBlob(this.#key(target, digest));
    if (admitted === undefined) {
      throw new RegistryError(
        'DENIED',
        `blob ${digest} is not part of an admitted manifest in ${target.upstream}/${target.repository}`,
        {
          detail: {
            reason: 'blob-not-admitted',
            upstream: target.upstream,
            repository: target.repository,
            digest,
          } satisfies DenyDetail,
        },
      );
    }
    return admitted;
  }

  /** Refuse a blob admitted only through trust material when it is larger than such content can be. */
  assertBlobSize(target: Target, digest: Digest, admission: AdmittedBlob, size: number | undefined): void {
    if (admission.maxSize === undefined) return;
    if (size !== undefined && size <= admission.maxSize) return;
    throw new RegistryError(
      'DENIED',
      `blob ${digest} is only referenced by signature or attestation manifests in ${target.upstream}/${target.repository}, and is larger than such content can be`,
      {
        detail: {
          reason: 'trust-material-blob-too-large',
          digest,
          size,
          maxSize: admission.maxSize,
        } satisfies DenyDetail,
      },
    );
  }
}
