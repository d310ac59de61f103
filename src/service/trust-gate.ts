import type { Logger } from 'pino';
import { RegistryError, subjectTagKind } from '../oci/index.ts';
import type { Digest, ParsedManifest } from '../oci/index.ts';
import type { MetadataStore } from '../metadata/index.ts';
import { decisionDetail, formatDenyMessage, gateMaxBytes, needsImageFacts } from '../policy/index.ts';
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

export interface GateTarget {
  upstream: string;
  repository: string;
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

/** What an admitted blob record says: `maxSize` for blobs admitted through trust material. */
interface BlobAdmission {
  maxSize?: number;
}

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

  #scope(): string {
    const kev = this.#ctx.kev === undefined ? '' : `:${this.#ctx.kev.version.slice(0, 16)}`;
    return `${this.#ctx.engine.hash.slice(0, 16)}:${this.#ctx.verifier.version.slice(0, 16)}${kev}`;
  }

  /**
   * Decide a manifest; throws DENIED (with the policy, reasons and every signature checked) when the
   * policy refuses it. Allowed and warned manifests have their closure admitted for blob gating.
   */
  async admitManifest(upstream: Upstream, target: GateTarget, manifest: GateManifest): Promise<Decision> {
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
  async evaluate(upstream: Upstream, target: GateTarget, manifest: GateManifest): Promise<Decision> {
    return this.#evaluate(upstream, target, manifest);
  }

  /** The decision for a manifest, from the caches or evaluated now (one evaluation per key at a time). */
  async decide(upstream: Upstream, target: GateTarget, manifest: GateManifest): Promise<Decision> {
    const key = `${this.#scope()}:${target.upstream}/${target.repository}@${manifest.digest}`;
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
      const stored = await this.#metadata.get<Decision>('decision', key);
      if (stored && (stored.result !== 'deny' || !(await this.#supersededDeny(target, manifest.digest)))) {
        this.#metrics?.cacheRequests.inc({ kind: 'decision', result: 'hit' });
        this.#remember(key, stored);
        return stored;
      }
      this.#metrics?.cacheRequests.inc({ kind: 'decision', result: 'miss' });
      const decision = await this.#evaluate(upstream, target, manifest);
      const ttl = decision.result === 'deny' ? this.#ctx.ttl.deny : this.#ctx.ttl.allow;
      await this.#metadata.set('decision', key, decision, ttl);
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
  async #supersededDeny(target: GateTarget, digest: Digest): Promise<boolean> {
    return (await this.#admittedParent(target, digest)) !== undefined;
  }

  /** The admitted index (in this repository, under the current scope) that lists `digest`, if any. */
  #admittedParent(
    target: GateTarget,
    digest: Digest,
  ): Promise<{ index: Digest; policy: string | undefined } | undefined> {
    return this.#metadata.get<{ index: Digest; policy: string | undefined }>(
      'admitted-child',
      `${this.#scope()}:${target.upstream}/${target.repository}@${digest}`,
    );
  }

  #remember(key: string, decision: Decision): void {
    if (this.#decisionMemo.size >= MEMO_LIMIT) this.#decisionMemo.clear();
    const ttl = decision.result === 'deny' ? this.#ctx.ttl.deny : this.#ctx.ttl.allow;
    this.#decisionMemo.set(key, { value: decision, expires: this.#now() + ttl });
  }

  async #evaluate(upstream: Upstream, target: GateTarget, manifest: GateManifest): Promise<Decision> {
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
    target: GateTarget,
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
  async #admitClosure(target: GateTarget, manifest: GateManifest, decision: Decision): Promise<void> {
    const scope = this.#scope();
    const key = `${scope}:${target.upstream}/${target.repository}@${manifest.digest}`;
    if ((this.#closureWritten.get(key) ?? 0) > this.#now()) return;
    const { parsed } = await manifest.content();
    const ttl = this.#ctx.ttl.allow * 2 + 3_600_000;
    const writes: Promise<void>[] = [];
    const trustMaterial = decision.policy === TRUST_MATERIAL_POLICY;
    for (const child of trustMaterial ? [] : parsed.manifests) {
      writes.push(
        this.#metadata.set(
          'admitted-child',
          `${scope}:${target.upstream}/${target.repository}@${child.digest}`,
          { index: manifest.digest, policy: decision.policy },
          ttl,
        ),
      );
    }
    const blobs = [...(parsed.config ? [parsed.config.digest] : []), ...parsed.layers.map((l) => l.digest)];
    for (const blob of blobs) {
      const blobKey = `${scope}:${target.upstream}/${target.repository}@${blob}`;
      if (trustMaterial) {
        // Never narrow what an image admitted: its layers stay uncapped.
        writes.push(
          (async () => {
            const existing = await this.#metadata.get<BlobAdmission | number>('admitted-blob', blobKey);
            if (existing !== undefined) return;
            await this.#metadata.set('admitted-blob', blobKey, { maxSize: this.#maxTrustMaterialBlob }, ttl);
          })(),
        );
      } else {
        writes.push(this.#metadata.set('admitted-blob', blobKey, {} satisfies BlobAdmission, ttl));
      }
    }
    await Promise.all(writes);
    if (this.#closureWritten.size >= MEMO_LIMIT) this.#closureWritten.clear();
    this.#closureWritten.set(key, this.#now() + this.#ctx.ttl.allow);
  }

  /** Blob gating: only blobs of an admitted manifest's closure (or of trust material) in the repository. */
  async assertBlobAdmitted(target: GateTarget, digest: Digest): Promise<{ maxSize?: number }> {
    const admitted = await this.#metadata.get<BlobAdmission | number>(
      'admitted-blob',
      `${this.#scope()}:${target.upstream}/${target.repository}@${digest}`,
    );
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
    return typeof admitted === 'object' ? admitted : {};
  }

  /** Refuse a blob admitted only through trust material when it is larger than such content can be. */
  assertBlobSize(
    target: GateTarget,
    digest: Digest,
    admission: { maxSize?: number },
    size: number | undefined,
  ): void {
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
