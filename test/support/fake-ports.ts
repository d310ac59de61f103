/**
 * Fakes of the ports the service layer takes, for unit tests of RegistryService, TrustGate and
 * TagGuard without HTTP. Each counts its calls, so a test proves caching and single-flight by the
 * number of upstream requests (never by timing):
 *
 * - {@link MemoryUpstream}: the `Upstream` port over in-memory repositories, with faults and a way to
 *   hold calls open (concurrent callers); its `writer` lets test/support/signer.ts push real cosign
 *   signatures to it.
 * - {@link CountingVerifier}: a `SignatureVerifier` that forwards to the real one (TrustMaterialStore:
 *   verification is never stubbed) and counts the verifications asked for.
 *
 * The stores stay real (SQLite in memory, FsBlobStore in a temp dir): they are cheap, and a fake store
 * would test the fake.
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { RegistryError } from '../../src/oci/index.ts';
import type { Digest } from '../../src/oci/index.ts';
import type { Attestor, FoundSignature, SignatureVerifier, VerifyOutcome } from '../../src/trust/index.ts';
import type {
  FetchedManifest,
  ManifestHead,
  ReferrersAnswer,
  TagList,
  Upstream,
  UpstreamBlob,
} from '../../src/upstream/index.ts';
import type { RegistryWriter } from './signer.ts';

export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json';
const OCI_LAYER = 'application/vnd.oci.image.layer.v1.tar+gzip';

export type UpstreamMethod =
  'headManifest' | 'getManifest' | 'getBlob' | 'headBlob' | 'listTags' | 'getReferrers';

/** One call the service made to the upstream port. */
export interface UpstreamCall {
  method: UpstreamMethod;
  repository: string;
  /** Tag or digest (manifests, blobs); undefined for tag lists. */
  reference?: string;
}

export function sha256(bytes: Buffer): Digest {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}` as Digest;
}

interface StoredManifest {
  bytes: Buffer;
  mediaType: string;
  digest: Digest;
}

interface Fault {
  method: UpstreamMethod;
  reference: string | undefined;
  error: () => Error;
  /** Calls left to fail; Infinity until cleared. */
  times: number;
}

/** An image written to a {@link MemoryUpstream}: its digests and bytes, for assertions. */
export interface MemoryImage {
  digest: Digest;
  bytes: Buffer;
  mediaType: string;
  config: Digest;
  configBytes: Buffer;
  layer: Digest;
  layerBytes: Buffer;
}

export interface MemoryIndex {
  digest: Digest;
  bytes: Buffer;
  mediaType: string;
  children: MemoryImage[];
}

/** The `Upstream` port over in-memory repositories; every call is recorded in {@link calls}. */
export class MemoryUpstream implements Upstream {
  readonly host: string;
  readonly calls: UpstreamCall[] = [];
  readonly #manifests = new Map<string, Map<string, StoredManifest>>();
  readonly #blobs = new Map<string, Map<string, Buffer>>();
  readonly #faults: Fault[] = [];
  readonly #corrupt = new Set<string>();
  readonly #oversize = new Map<string, { extra: number; withLength: boolean }>();
  #held: { method: UpstreamMethod; released: Promise<void> } | undefined;
  #seq = 0;

  constructor(host = 'upstream.test') {
    this.host = host;
  }

  // ---- what the upstream holds ----

  /** A push API over this upstream, for test/support/signer.ts (signatures, attestations). */
  get writer(): RegistryWriter {
    return {
      putBlob: (repository, bytes) => Promise.resolve(this.blob(repository, bytes)),
      putManifest: (repository, reference, bytes, mediaType) =>
        Promise.resolve(this.manifest(repository, reference, bytes, mediaType)),
      getManifest: (repository, reference) =>
        Promise.resolve(this.#manifests.get(repository)?.get(reference)?.bytes),
    };
  }

  /** Store a blob in `repository`; returns its digest. */
  blob(repository: string, bytes: Buffer): Digest {
    const digest = sha256(bytes);
    let repo = this.#blobs.get(repository);
    if (!repo) this.#blobs.set(repository, (repo = new Map<string, Buffer>()));
    repo.set(digest, bytes);
    return digest;
  }

  /** Store a manifest by digest and, when `reference` is a tag, point the tag at it. */
  manifest(repository: string, reference: string | undefined, bytes: Buffer, mediaType: string): Digest {
    const digest = sha256(bytes);
    let repo = this.#manifests.get(repository);
    if (!repo) this.#manifests.set(repository, (repo = new Map<string, StoredManifest>()));
    const stored = { bytes, mediaType, digest };
    repo.set(digest, stored);
    if (reference !== undefined && !reference.includes(':')) repo.set(reference, stored);
    return digest;
  }

  /** A new single-platform OCI image (unique bytes) at `repository:tag` (or by digest only). */
  image(repository: string, tag: string | undefined): MemoryImage {
    const n = ++this.#seq;
    const layerBytes = Buffer.from(`layer ${n} of ${repository} ${Math.random()}`);
    const layer = this.blob(repository, layerBytes);
    const configBytes = Buffer.from(
      JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [layer] } }),
    );
    const config = this.blob(repository, configBytes);
    const bytes = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI_MANIFEST,
        config: { mediaType: OCI_CONFIG, digest: config, size: configBytes.length },
        layers: [{ mediaType: OCI_LAYER, digest: layer, size: layerBytes.length }],
      }),
    );
    const digest = this.manifest(repository, tag, bytes, OCI_MANIFEST);
    return { digest, bytes, mediaType: OCI_MANIFEST, config, configBytes, layer, layerBytes };
  }

  /** A new two-platform OCI index at `repository:tag`; its children are stored by digest only. */
  index(repository: string, tag: string): MemoryIndex {
    const children = [this.image(repository, undefined), this.image(repository, undefined)];
    const platforms = ['amd64', 'arm64'];
    const bytes = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI_INDEX,
        manifests: children.map((c, i) => ({
          mediaType: c.mediaType,
          digest: c.digest,
          size: c.bytes.length,
          platform: { architecture: platforms[i], os: 'linux' },
        })),
      }),
    );
    const digest = this.manifest(repository, tag, bytes, OCI_INDEX);
    return { digest, bytes, mediaType: OCI_INDEX, children };
  }

  // ---- faults and holds ----

  /** Fail calls of `method` (for `reference`, or any) with `error`, `times` times or until {@link clearFaults}. */
  fault(
    method: UpstreamMethod,
    error: () => Error,
    options: { reference?: string; times?: number } = {},
  ): void {
    this.#faults.push({ method, reference: options.reference, error, times: options.times ?? Infinity });
  }

  clearFaults(): void {
    this.#faults.length = 0;
    this.#corrupt.clear();
    this.#oversize.clear();
  }

  /**
   * Serve `extra` bytes more of this blob than it has (GET and HEAD), announced in the size
   * (Content-Length) or, without `withLength`, streamed with no length.
   */
  oversize(digest: string, extra: number, options: { withLength?: boolean } = {}): void {
    this.#oversize.set(digest, { extra, withLength: options.withLength ?? true });
  }

  /** Serve bytes that do not match the digest for this manifest or blob (a hostile or broken upstream). */
  corrupt(digest: string): void {
    this.#corrupt.add(digest);
  }

  /** Hold every call of `method` open until the returned function is called. */
  hold(method: UpstreamMethod): () => void {
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    this.#held = { method, released };
    return () => {
      this.#held = undefined;
      release();
    };
  }

  /** Calls of `method` (optionally for one reference) made so far. */
  count(method: UpstreamMethod, reference?: string): number {
    return this.calls.filter(
      (c) => c.method === method && (reference === undefined || c.reference === reference),
    ).length;
  }

  /** Every call made so far, all methods. */
  get total(): number {
    return this.calls.length;
  }

  async #enter(method: UpstreamMethod, repository: string, reference?: string): Promise<void> {
    this.calls.push({ method, repository, ...(reference === undefined ? {} : { reference }) });
    if (this.#held?.method === method) await this.#held.released;
    const fault = this.#faults.find((f) => f.method === method && (f.reference ?? reference) === reference);
    if (fault && fault.times > 0) {
      fault.times--;
      throw fault.error();
    }
  }

  #find(repository: string, reference: string): StoredManifest {
    const m = this.#manifests.get(repository)?.get(reference);
    if (!m) throw new RegistryError('MANIFEST_UNKNOWN', `manifest unknown: ${repository}:${reference}`);
    return m;
  }

  // ---- the Upstream port ----

  async headManifest(repository: string, reference: string): Promise<ManifestHead> {
    await this.#enter('headManifest', repository, reference);
    const m = this.#find(repository, reference);
    return { digest: m.digest, mediaType: m.mediaType, size: m.bytes.length };
  }

  async getManifest(repository: string, reference: string): Promise<FetchedManifest> {
    await this.#enter('getManifest', repository, reference);
    const m = this.#find(repository, reference);
    if (this.#corrupt.has(m.digest)) {
      // What a real client reports for bytes that do not hash to the digest: an upstream failure.
      throw new RegistryError(
        'UNAVAILABLE',
        `upstream ${this.host} sent a manifest that does not match ${m.digest}`,
      );
    }
    return { digest: m.digest, mediaType: m.mediaType, size: m.bytes.length, bytes: m.bytes };
  }

  async getBlob(repository: string, digest: Digest): Promise<UpstreamBlob> {
    await this.#enter('getBlob', repository, digest);
    const bytes = this.#blobs.get(repository)?.get(digest);
    if (!bytes) throw new RegistryError('BLOB_UNKNOWN', `blob unknown: ${repository}@${digest}`);
    const over = this.#oversize.get(digest);
    if (over) {
      const sent = Buffer.concat([bytes, Buffer.alloc(over.extra, 0x20)]);
      return { body: Readable.from([sent]), size: over.withLength ? sent.length : undefined };
    }
    const sent = this.#corrupt.has(digest) ? Buffer.from(bytes.map((b) => b ^ 0xff)) : bytes;
    return { body: Readable.from([sent]), size: sent.length };
  }

  async headBlob(repository: string, digest: Digest): Promise<{ size: number }> {
    await this.#enter('headBlob', repository, digest);
    const bytes = this.#blobs.get(repository)?.get(digest);
    if (!bytes) throw new RegistryError('BLOB_UNKNOWN', `blob unknown: ${repository}@${digest}`);
    return { size: bytes.length + (this.#oversize.get(digest)?.extra ?? 0) };
  }

  async listTags(repository: string): Promise<TagList> {
    await this.#enter('listTags', repository);
    const tags = [...(this.#manifests.get(repository)?.keys() ?? [])].filter((k) => !k.includes(':'));
    return { body: Buffer.from(JSON.stringify({ name: repository, tags })) };
  }

  /** No referrers API (as distribution 2.8): discovery falls back to the tag schema and cosign tags. */
  async getReferrers(repository: string, digest: Digest): Promise<ReferrersAnswer | undefined> {
    await this.#enter('getReferrers', repository, digest);
    return undefined;
  }

  async close(): Promise<void> {
    return Promise.resolve();
  }
}

/** The real verifier, counting how many signature verifications were asked of it. */
export class CountingVerifier implements SignatureVerifier {
  calls = 0;
  readonly #inner: SignatureVerifier;

  constructor(inner: SignatureVerifier) {
    this.#inner = inner;
  }

  get version(): string {
    return this.#inner.version;
  }

  verify(found: FoundSignature, attestor: Attestor, subject: Digest): VerifyOutcome {
    this.calls++;
    return this.#inner.verify(found, attestor, subject);
  }
}
