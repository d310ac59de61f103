/**
 * A RegistryService wired as src/app.ts wires it, without HTTP: the upstream port is a
 * {@link MemoryUpstream} that counts calls, the verifier is the real one behind a counter, the stores
 * are real (SQLite in memory, FsBlobStore in a temp dir), and time is a clock the test moves.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pino } from 'pino';
import { afterEach } from 'vitest';
import { FsBlobStore } from '../../../src/cache/index.ts';
import { openMetadataStore } from '../../../src/metadata/index.ts';
import type { MetadataStore } from '../../../src/metadata/index.ts';
import { parseManifest, parseManifestReference, RegistryError } from '../../../src/oci/index.ts';
import type { Digest, ManifestReference } from '../../../src/oci/index.ts';
import { PolicyEngine, policiesSchema, trustSchema } from '../../../src/policy/index.ts';
import type { PoliciesInput } from '../../../src/policy/index.ts';
import { RegistryService, TagGuard, TrustGate } from '../../../src/service/index.ts';
import type { GateManifest, ManifestContent, TagMove } from '../../../src/service/index.ts';
import { TrustMaterialStore } from '../../../src/trust/index.ts';
import { CountingVerifier, MemoryUpstream } from '../../support/fake-ports.ts';
import type { MemoryImage } from '../../support/fake-ports.ts';
import { createKeyPair, pushClassicSignature, signClassic } from '../../support/signer.ts';
import type { TestKeyPair } from '../../support/signer.ts';

export const HOST = 'upstream.test';
export const ACCEPT_ALL = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.oci.image.manifest.v1+json',
] as const;

/** Every manifest must carry a signature by the `release` key. */
export const SIGNED: PoliciesInput = [
  { name: 'signed', match: ['**'], action: 'verify', signatures: { attestors: [{ key: 'release' }] } },
];

export interface WorldOptions {
  /** Policies (as in the config file); without them no gate is configured (a plain cache). */
  policies?: PoliciesInput;
  tagTTL?: number;
  staleIfError?: number;
  decisions?: { allow?: number; deny?: number; evidence?: number; missingEvidence?: number };
  maxManifestBytes?: number;
  /** The gate's evidence memo bound (bytes of signature and attestation layers it keeps). */
  evidenceMemoMaxBytes?: number;
}

export interface World {
  upstream: MemoryUpstream;
  service: RegistryService;
  metadata: MetadataStore;
  blobs: FsBlobStore;
  /** Present with policies. */
  gate: TrustGate | undefined;
  tags: TagGuard;
  verifier: CountingVerifier;
  /** The key the policies know as `release`. */
  key: TestKeyPair;
  /** Tag moves reported to the audit hook. */
  moves: TagMove[];
  /** The clock every component reads (ms); move it with `clock.t += …`. */
  clock: { t: number };
  target(repository: string): { upstream: string; repository: string };
  /** A policy engine for these policies over the world's trust material (for swap and TagGuard). */
  engine(policies: PoliciesInput): PolicyEngine;
  /** A new image at `repository:tag` with a classic cosign signature by `key`. */
  signed(repository: string, tag: string): Promise<MemoryImage>;
  /** Sign a digest that is already on the upstream. */
  sign(repository: string, digest: string): Promise<void>;
  close(): Promise<void>;
}

const silent = pino({ level: 'silent' });

export async function startWorld(options: WorldOptions = {}): Promise<World> {
  const dir = await mkdtemp(join(tmpdir(), 'pw-service-'));
  const clock = { t: Date.parse('2026-01-01T00:00:00Z') };
  const now = (): number => clock.t;
  const upstream = new MemoryUpstream(HOST);
  const key = createKeyPair();
  const blobs = new FsBlobStore({ dir: join(dir, 'data'), maxBytes: 1 << 30 });
  await blobs.init();
  const metadata = await openMetadataStore({ url: 'sqlite://:memory:', namespace: 'test', logger: silent });
  const store = await TrustMaterialStore.load({ roots: {}, keys: { release: { pem: key.publicKeyPem } } });
  const verifier = new CountingVerifier(store);
  const trust = trustSchema.parse({ roots: {}, keys: { release: { pem: key.publicKeyPem } }, refresh: '0s' });
  const engine = (policies: PoliciesInput): PolicyEngine =>
    new PolicyEngine(policiesSchema.parse(policies), trust);
  const ttl = {
    allow: 3_600_000,
    deny: 60_000,
    evidence: 300_000,
    missingEvidence: 30_000,
    ...options.decisions,
  };
  const gate =
    options.policies === undefined
      ? undefined
      : new TrustGate({
          context: { engine: engine(options.policies), verifier, ttl },
          metadata,
          logger: silent,
          now,
          ...(options.evidenceMemoMaxBytes === undefined
            ? {}
            : { evidenceMemoMaxBytes: options.evidenceMemoMaxBytes }),
        });
  const moves: TagMove[] = [];
  const tags = new TagGuard({
    metadata,
    logger: silent,
    now,
    onMove: (move) => {
      moves.push(move);
      return Promise.resolve();
    },
  });
  const service = new RegistryService({
    upstreams: new Map([
      [HOST, { upstream, tagTTL: options.tagTTL ?? 60_000, staleIfError: options.staleIfError ?? 0 }],
    ]),
    blobs,
    metadata,
    logger: silent,
    maxManifestBytes: options.maxManifestBytes ?? 4 * 1024 * 1024,
    ...(gate === undefined ? {} : { gate }),
    tags,
    now,
  });
  const sign = async (repository: string, digest: string): Promise<void> => {
    await pushClassicSignature(upstream.writer, repository, digest, [
      signClassic({ subject: digest, dockerReference: `${HOST}/${repository}`, key }),
    ]);
  };
  return {
    upstream,
    service,
    metadata,
    blobs,
    gate,
    tags,
    verifier,
    key,
    moves,
    clock,
    target: (repository) => ({ upstream: HOST, repository }),
    engine,
    sign,
    async signed(repository, tag) {
      const image = upstream.image(repository, tag);
      await sign(repository, image.digest);
      return image;
    },
    async close() {
      store.close();
      await blobs.close();
      await metadata.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** `startWorld` for the tests of a file, each world closed after its test. */
export function worldPerTest(defaults: WorldOptions = {}): (options?: WorldOptions) => Promise<World> {
  let current: World | undefined;
  afterEach(async () => {
    await current?.close();
    current = undefined;
  });
  return async (options = {}) => (current = await startWorld({ ...defaults, ...options }));
}

/** A manifest on the upstream as the gate is handed it (content parsed once, on demand). */
export function gateManifest(
  m: { digest: Digest; bytes: Buffer; mediaType: string },
  tag?: string,
): GateManifest {
  let content: Promise<ManifestContent> | undefined;
  return {
    digest: m.digest,
    mediaType: m.mediaType,
    content: () =>
      (content ??= Promise.resolve({ bytes: m.bytes, parsed: parseManifest(m.bytes, m.mediaType) })),
    ...(tag === undefined ? {} : { tag }),
  };
}

/** `v1` or `sha256:…` as the reference part the routes parse. */
export function ref(reference: string): ManifestReference {
  return parseManifestReference(reference);
}

/** The error a call rejects with (fails the test when it resolves). */
export async function rejection(promise: Promise<unknown>): Promise<RegistryError> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof RegistryError) return err;
    throw err;
  }
  throw new Error('expected a RegistryError, the call succeeded');
}

/** Every byte of a stream. */
export async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}
