/**
 * The project's test signer: what cosign, Fulcio, Rekor and a CT log would produce, made offline with
 * throwaway keys (no cosign binary, no network), and helpers that write it into a registry the way
 * cosign does.
 *
 * ```ts
 * const world = await createTestSigstore();
 * const leaf = await world.issueLeaf({ subject: 'https://github.com/acme/app/.github/workflows/release.yml@refs/tags/v1', issuer: GITHUB });
 * const sig = signClassic({ subject: digest, dockerReference: 'registry.test/acme/app', leaf });
 * await pushClassicSignature(registry.url, 'acme/app', digest, [sig]);
 * ```
 *
 * The keyless world follows what `@sigstore/verify` checks (see docs in `src/trust/verify.ts`): a
 * root CA → intermediate (CA, pathLen 0, EKU codeSigning) → leaf with SAN + Fulcio issuer extensions
 * and an embedded SCT from a fake CT log; a fake Rekor whose SET signs
 * `canonicalize({body, integratedTime, logIndex, logID})` and whose checkpoint signs a one-leaf tree;
 * and an RFC 3161 timestamp authority (root → leaf with EKU timeStamping) whose tokens are what
 * sigstore's TSA returns: a DER `TimeStampResp` (status granted + a CMS SignedData over a TSTInfo).
 */
import 'reflect-metadata'; // @peculiar/x509 v2 resolves its services through tsyringe
import { createHash, generateKeyPairSync, KeyObject, sign, webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { json as sigstoreJSON, X509Certificate as SigstoreX509 } from '@sigstore/core';
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const EC = { name: 'ECDSA', namedCurve: 'P-256' };
const SIGALG = { name: 'ECDSA', hash: 'SHA-256' };
const DAY = 86_400_000;

export const SIMPLESIGNING_MEDIA_TYPE = 'application/vnd.dev.cosign.simplesigning.v1+json';
export const DSSE_MEDIA_TYPE = 'application/vnd.dsse.envelope.v1+json';
export const BUNDLE_MEDIA_TYPE = 'application/vnd.dev.sigstore.bundle.v0.3+json';
export const COSIGN_SIGN_PREDICATE_TYPE = 'https://sigstore.dev/cosign/sign/v1';
export const GITHUB_ISSUER = 'https://token.actions.githubusercontent.com';
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const OCI_EMPTY = 'application/vnd.oci.empty.v1+json';

const b64 = (b: Uint8Array | ArrayBuffer | string): string =>
  (typeof b === 'string' ? Buffer.from(b) : Buffer.from(b as Uint8Array)).toString('base64');
const sha256 = (b: Uint8Array | string): Buffer => createHash('sha256').update(b).digest();
const sha256Digest = (b: Uint8Array | string): string => `sha256:${sha256(b).toString('hex')}`;
const u16 = (n: number): Buffer => Buffer.from([(n >> 8) & 0xff, n & 0xff]);

function derLength(n: number): Buffer {
  if (n < 128) return Buffer.from([n]);
  if (n < 256) return Buffer.from([0x81, n]);
  return Buffer.from([0x82, n >> 8, n & 0xff]);
}
const derUtf8 = (s: string): Buffer => {
  const v = Buffer.from(s, 'utf8');
  return Buffer.concat([Buffer.from([0x0c]), derLength(v.length), v]);
};
const derOctet = (v: Buffer): Buffer => Buffer.concat([Buffer.from([0x04]), derLength(v.length), v]);

// ---------------------------------------------------------------------------------------------------
// Keys

export type KeyAlgorithm = 'p256' | 'p384' | 'rsa' | 'ed25519';

export interface TestKeyPair {
  /** SPKI PEM, what `cosign generate-key-pair` writes to cosign.pub. */
  publicKeyPem: string;
  publicKey: KeyObject;
  privateKey: KeyObject;
  algorithm: KeyAlgorithm;
}

export function createKeyPair(algorithm: KeyAlgorithm = 'p256'): TestKeyPair {
  const pair =
    algorithm === 'rsa'
      ? generateKeyPairSync('rsa', { modulusLength: 2048 })
      : algorithm === 'ed25519'
        ? generateKeyPairSync('ed25519')
        : generateKeyPairSync('ec', { namedCurve: algorithm === 'p256' ? 'P-256' : 'P-384' });
  return {
    publicKeyPem: pair.publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    publicKey: pair.publicKey,
    privateKey: pair.privateKey,
    algorithm,
  };
}

function signWith(key: KeyObject, data: Buffer): Buffer {
  return sign(key.asymmetricKeyType === 'ed25519' ? null : 'sha256', data, key);
}

// ---------------------------------------------------------------------------------------------------
// The keyless world

export interface LeafOptions {
  /** The identity: a URI SAN (an email SAN when it contains `@` and no `:`). */
  subject: string;
  /** OIDC issuer, written to both Fulcio issuer extensions (1.3.6.1.4.1.57264.1.1 and .1.8). */
  issuer: string;
  /** Default: one minute ago. */
  notBefore?: Date;
  /** Default: ten minutes from now (Fulcio issues 10-minute certificates). */
  notAfter?: Date;
  /** Extended key usage codeSigning (default true; cosign requires it). */
  codeSigning?: boolean;
  /** Embed an SCT from the world's CT log (default true). */
  sct?: boolean;
}

export interface TestLeaf {
  certPem: string;
  certDer: Buffer;
  privateKey: KeyObject;
  notBefore: Date;
  notAfter: Date;
  /** The intermediate + root, PEM (what cosign writes to the chain annotation). */
  chainPem: string;
  /** The world that issued it; its fake Rekor logs signatures made with this leaf. */
  world: TestSigstore;
}

/** A transparency log entry as the v0.3 bundle JSON carries it. */
export type TlogEntryJSON = Record<string, unknown>;

export interface TestSigstore {
  /** `application/vnd.dev.sigstore.trustedroot+json;version=0.1` with this world's CA, Rekor and CT log. */
  trustedRootJSON: Record<string, unknown>;
  issueLeaf(options: LeafOptions): Promise<TestLeaf>;
  /**
   * Log `body` (a canonicalizable Rekor entry) in the fake Rekor: the SET (cosign's bundle annotation
   * Payload + SignedEntryTimestamp) and the v0.3 tlog entry with inclusion proof and checkpoint.
   */
  logEntry(
    body: Record<string, unknown>,
    integratedTime?: number,
  ): {
    annotation: string;
    entry: TlogEntryJSON;
  };
  /**
   * An RFC 3161 timestamp over `data` (the signature bytes) by this world's TSA at `genTime`, as
   * base64 DER `TimeStampResp`: the value of a bundle's `rfc3161Timestamps[].signedTimestamp`.
   */
  timestamp(data: Buffer, genTime?: Date): Promise<string>;
}

/** A self-signed CA certificate (a Fulcio or TSA root) that may sign `pathLength` CAs below it. */
async function selfSignedCa(
  name: string,
  serialNumber: string,
  pathLength: number,
  keys: webcrypto.CryptoKeyPair,
  validity: { notBefore: Date; notAfter: Date },
): Promise<x509.X509Certificate> {
  return x509.X509CertificateGenerator.createSelfSigned({
    serialNumber,
    name,
    keys,
    signingAlgorithm: SIGALG,
    ...validity,
    extensions: [
      new x509.BasicConstraintsExtension(true, pathLength, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
}

/** A throwaway CA, Rekor and CT log. Every call makes new keys, so two worlds do not trust each other. */
export async function createTestSigstore(
  options: { now?: number; name?: string } = {},
): Promise<TestSigstore> {
  const now = options.now ?? Date.now();
  const name = options.name ?? 'test.local';
  const subtle = webcrypto.subtle;
  const genKeys = async (): Promise<webcrypto.CryptoKeyPair> =>
    subtle.generateKey(EC, true, ['sign', 'verify']);
  const spki = async (k: webcrypto.CryptoKey): Promise<Buffer> =>
    Buffer.from(await subtle.exportKey('spki', k));

  const validity = { notBefore: new Date(now - DAY), notAfter: new Date(now + 365 * DAY) };
  const rootKeys = await genKeys();
  const root = await selfSignedCa(`O=${name}, CN=test-fulcio-root`, '01', 1, rootKeys, validity);
  const intKeys = await genKeys();
  const inter = await x509.X509CertificateGenerator.create({
    serialNumber: '02',
    subject: `O=${name}, CN=test-fulcio-intermediate`,
    issuer: root.subject,
    publicKey: intKeys.publicKey,
    signingKey: rootKeys.privateKey,
    signingAlgorithm: SIGALG,
    ...validity,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.codeSigning]),
      await x509.SubjectKeyIdentifierExtension.create(intKeys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(rootKeys.publicKey),
    ],
  });
  const intSpki = await spki(intKeys.publicKey);

  const ctKeys = await genKeys();
  const ctSpki = await spki(ctKeys.publicKey);
  const ctLogId = sha256(ctSpki);
  const ctPriv = KeyObject.from(ctKeys.privateKey);

  const rekorKeys = await genKeys();
  const rekorSpki = await spki(rekorKeys.publicKey);
  const rekorLogId = sha256(rekorSpki);
  const rekorPriv = KeyObject.from(rekorKeys.privateKey);
  const rekorHost = `rekor.${name}`;
  let nextIndex = 0;

  const tsaRootKeys = await genKeys();
  const tsaRoot = await selfSignedCa(`O=${name}, CN=test-tsa-root`, '10', 0, tsaRootKeys, validity);
  const tsaKeys = await genKeys();
  const tsaLeaf = await x509.X509CertificateGenerator.create({
    serialNumber: '11',
    subject: `O=${name}, CN=test-tsa`,
    issuer: tsaRoot.subject,
    publicKey: tsaKeys.publicKey,
    signingKey: tsaRootKeys.privateKey,
    signingAlgorithm: SIGALG,
    ...validity,
    extensions: [
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.timeStamping], true),
      await x509.AuthorityKeyIdentifierExtension.create(tsaRootKeys.publicKey),
    ],
  });
  const tsaCert = pkijs.Certificate.fromBER(tsaLeaf.rawData);
  let nextSerial = 1;

  const start = new Date(now - DAY).toISOString();
  const trustedRootJSON = {
    mediaType: 'application/vnd.dev.sigstore.trustedroot+json;version=0.1',
    tlogs: [
      {
        baseUrl: `https://${rekorHost}`,
        hashAlgorithm: 'SHA2_256',
        publicKey: { rawBytes: b64(rekorSpki), keyDetails: 'PKIX_ECDSA_P256_SHA_256', validFor: { start } },
        logId: { keyId: b64(rekorLogId) },
      },
    ],
    certificateAuthorities: [
      {
        subject: { organization: name, commonName: 'test-fulcio' },
        uri: `https://fulcio.${name}`,
        certChain: { certificates: [{ rawBytes: b64(inter.rawData) }, { rawBytes: b64(root.rawData) }] },
        validFor: { start },
      },
    ],
    ctlogs: [
      {
        baseUrl: `https://ctfe.${name}`,
        hashAlgorithm: 'SHA2_256',
        publicKey: { rawBytes: b64(ctSpki), keyDetails: 'PKIX_ECDSA_P256_SHA_256', validFor: { start } },
        logId: { keyId: b64(ctLogId) },
      },
    ],
    timestampAuthorities: [
      {
        subject: { organization: name, commonName: 'test-tsa' },
        uri: `https://tsa.${name}`,
        certChain: { certificates: [{ rawBytes: b64(tsaLeaf.rawData) }, { rawBytes: b64(tsaRoot.rawData) }] },
        validFor: { start },
      },
    ],
  };

  const world: TestSigstore = {
    trustedRootJSON,
    async issueLeaf(opts) {
      const leafKeys = await genKeys();
      // X.509 times have second precision; keep the dates we report equal to the certificate's.
      const notBefore = new Date(Math.floor((opts.notBefore?.getTime() ?? now - 60_000) / 1000) * 1000);
      const notAfter = new Date(Math.floor((opts.notAfter?.getTime() ?? now + 600_000) / 1000) * 1000);
      const email = opts.subject.includes('@') && !opts.subject.includes(':');
      const params = async (extra: x509.Extension[]): Promise<x509.X509CertificateCreateParams> => ({
        serialNumber: randomSerial(),
        subject: '',
        issuer: inter.subject,
        publicKey: leafKeys.publicKey,
        signingKey: intKeys.privateKey,
        signingAlgorithm: SIGALG,
        notBefore,
        notAfter,
        extensions: [
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
          ...(opts.codeSigning === false
            ? []
            : [new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.codeSigning])]),
          await x509.SubjectKeyIdentifierExtension.create(leafKeys.publicKey),
          await x509.AuthorityKeyIdentifierExtension.create(intKeys.publicKey),
          new x509.SubjectAlternativeNameExtension(
            [{ type: email ? 'email' : 'url', value: opts.subject }],
            true,
          ),
          new x509.Extension('1.3.6.1.4.1.57264.1.1', false, Buffer.from(opts.issuer, 'ascii')),
          new x509.Extension('1.3.6.1.4.1.57264.1.8', false, derUtf8(opts.issuer)),
          ...extra,
        ],
      });
      const first = await params([]);
      let leaf = await x509.X509CertificateGenerator.create(first);
      if (opts.sct !== false) {
        // RFC 6962 §3.2: the SCT signs the precertificate TBS (the certificate without the SCT
        // extension); the final certificate is the same TBS plus the SCT list extension.
        const preTbs = SigstoreX509.parse(Buffer.from(leaf.rawData)).tbsCertificate.toDER();
        const ts = Buffer.alloc(8);
        ts.writeBigUInt64BE(BigInt(now));
        const len24 = Buffer.from([
          (preTbs.length >> 16) & 0xff,
          (preTbs.length >> 8) & 0xff,
          preTbs.length & 0xff,
        ]);
        const signed = Buffer.concat([
          Buffer.from([0, 0]),
          ts,
          u16(1),
          sha256(intSpki),
          len24,
          preTbs,
          u16(0),
        ]);
        const sctSig = sign('sha256', signed, ctPriv);
        const sct = Buffer.concat([
          Buffer.from([0]),
          ctLogId,
          ts,
          u16(0),
          Buffer.from([4, 3]),
          u16(sctSig.length),
          sctSig,
        ]);
        const list = Buffer.concat([u16(sct.length + 2), u16(sct.length), sct]);
        const ext = new x509.Extension('1.3.6.1.4.1.11129.2.4.2', false, derOctet(list));
        leaf = await x509.X509CertificateGenerator.create({
          ...(await params([ext])),
          serialNumber: first.serialNumber ?? '',
        });
      }
      return {
        certPem: leaf.toString('pem'),
        certDer: Buffer.from(leaf.rawData),
        privateKey: KeyObject.from(leafKeys.privateKey),
        notBefore,
        notAfter,
        chainPem: `${inter.toString('pem')}\n${root.toString('pem')}\n`,
        world,
      };
    },
    logEntry(body, integratedTime = Math.floor(now / 1000)) {
      const logIndex = nextIndex++;
      const canonical = Buffer.from(sigstoreJSON.canonicalize(body));
      const payload = { body: b64(canonical), integratedTime, logIndex, logID: rekorLogId.toString('hex') };
      const set = sign('sha256', Buffer.from(sigstoreJSON.canonicalize(payload)), rekorPriv);
      // A one-leaf tree whose only leaf is this entry: root = SHA-256(0x00 || body) (RFC 6962 §2.1).
      const rootHash = sha256(Buffer.concat([Buffer.from([0]), canonical]));
      const note = `${rekorHost} - 42\n1\n${b64(rootHash)}\n`;
      const noteSig = sign('sha256', Buffer.from(note), rekorPriv);
      const envelope = `${note}\n\u2014 ${rekorHost} ${b64(Buffer.concat([rekorLogId.subarray(0, 4), noteSig]))}\n`;
      const kind = String(body.kind);
      const version = String(body.apiVersion);
      return {
        annotation: JSON.stringify({ SignedEntryTimestamp: b64(set), Payload: payload }),
        entry: {
          logIndex: String(logIndex),
          logId: { keyId: b64(rekorLogId) },
          kindVersion: { kind, version },
          integratedTime: String(integratedTime),
          inclusionPromise: { signedEntryTimestamp: b64(set) },
          inclusionProof: {
            logIndex: '0',
            rootHash: b64(rootHash),
            treeSize: '1',
            hashes: [],
            checkpoint: { envelope },
          },
          canonicalizedBody: b64(canonical),
        },
      };
    },
    async timestamp(data, genTime = new Date(now)) {
      const SHA256 = '2.16.840.1.101.3.4.2.1';
      const tstInfo = new pkijs.TSTInfo({
        version: 1,
        policy: '1.3.6.1.4.1.57264.2', // sigstore's TSA policy OID
        messageImprint: new pkijs.MessageImprint({
          hashAlgorithm: new pkijs.AlgorithmIdentifier({ algorithmId: SHA256 }),
          hashedMessage: new asn1js.OctetString({ valueHex: sha256(data) }),
        }),
        serialNumber: new asn1js.Integer({ value: nextSerial++ }),
        genTime: new Date(Math.floor(genTime.getTime() / 1000) * 1000),
      });
      const tstDer = tstInfo.toSchema().toBER();
      const signed = new pkijs.SignedData({
        version: 3,
        encapContentInfo: new pkijs.EncapsulatedContentInfo({
          eContentType: '1.2.840.113549.1.9.16.1.4', // id-ct-TSTInfo
          eContent: new asn1js.OctetString({ valueHex: tstDer }),
        }),
        certificates: [tsaCert],
        signerInfos: [
          new pkijs.SignerInfo({
            version: 1,
            sid: new pkijs.IssuerAndSerialNumber({
              issuer: tsaCert.issuer,
              serialNumber: tsaCert.serialNumber,
            }),
            signedAttrs: new pkijs.SignedAndUnsignedAttributes({
              type: 0,
              attributes: [
                new pkijs.Attribute({
                  type: '1.2.840.113549.1.9.3', // contentType
                  values: [new asn1js.ObjectIdentifier({ value: '1.2.840.113549.1.9.16.1.4' })],
                }),
                new pkijs.Attribute({
                  type: '1.2.840.113549.1.9.4', // messageDigest
                  values: [new asn1js.OctetString({ valueHex: sha256(Buffer.from(tstDer)) })],
                }),
              ],
            }),
          }),
        ],
      });
      // pkijs turns eContent into a constructed (BER, chunked) OCTET STRING; TSAs write DER, a primitive
      // one, which is what @sigstore/core reads. The signature covers signedAttrs only, so set it back.
      signed.encapContentInfo.eContent = new asn1js.OctetString({ valueHex: tstDer });
      await signed.sign(tsaKeys.privateKey, 0, 'SHA-256');
      const resp = new pkijs.TimeStampResp({
        status: new pkijs.PKIStatusInfo({ status: pkijs.PKIStatus.granted }),
        timeStampToken: new pkijs.ContentInfo({
          contentType: pkijs.ContentInfo.SIGNED_DATA,
          content: signed.toSchema(true),
        }),
      });
      return b64(Buffer.from(resp.toSchema().toBER()));
    },
  };
  return world;
}

function randomSerial(): string {
  // Positive, non-zero, 8 bytes: unique leaves in one world.
  const bytes = webcrypto.getRandomValues(new Uint8Array(8));
  bytes[0] = ((bytes[0] ?? 0) & 0x7f) | 0x01;
  return Buffer.from(bytes).toString('hex');
}

// ---------------------------------------------------------------------------------------------------
// Signing

/** Signed with a key (`cosign sign --key`) or a keyless leaf certificate. */
export type SigningMaterial = { key: TestKeyPair; leaf?: never } | { leaf: TestLeaf; key?: never };

export interface ClassicSignature {
  /** The simplesigning payload: the layer blob. */
  payload: Buffer;
  /** The layer annotations cosign writes. */
  annotations: Record<string, string>;
}

export type SignClassicOptions = SigningMaterial & {
  /** The digest the payload names (`critical.image.docker-manifest-digest`). */
  subject: string;
  dockerReference: string;
  /** Log in the transparency log: always for keyless; for a key, needs `world`. Default: keyless only. */
  tlog?: boolean;
  /** The world whose Rekor logs a key-based signature (keyless uses the leaf's world). */
  world?: TestSigstore;
  /** Rekor integratedTime (seconds); default: the world's "now". */
  integratedTime?: number;
  /** Extra `optional` claims. */
  optional?: Record<string, string>;
  /** Override `critical.type` (to test its check). */
  type?: string;
};

function signerKey(m: SigningMaterial): { privateKey: KeyObject; pem: string } {
  return m.leaf !== undefined
    ? { privateKey: m.leaf.privateKey, pem: m.leaf.certPem }
    : { privateKey: m.key.privateKey, pem: m.key.publicKeyPem };
}

function tlogWorld(
  opts: SigningMaterial & { tlog?: boolean; world?: TestSigstore },
): TestSigstore | undefined {
  const wanted = opts.tlog ?? opts.leaf !== undefined;
  if (!wanted) return undefined;
  const world = opts.leaf?.world ?? opts.world;
  if (world === undefined) throw new Error('tlog: true with a key needs `world`');
  return world;
}

/** What `cosign sign` (classic format) writes for one signature. */
export function signClassic(opts: SignClassicOptions): ClassicSignature {
  // Key order as Go's json.Marshal writes cosign's payload.SimpleContainerImage.
  const payload = Buffer.from(
    JSON.stringify({
      critical: {
        identity: { 'docker-reference': opts.dockerReference },
        image: { 'docker-manifest-digest': opts.subject },
        type: opts.type ?? 'cosign container image signature',
      },
      optional: opts.optional ?? null,
    }),
  );
  const { privateKey, pem } = signerKey(opts);
  const signature = signWith(privateKey, payload);
  const annotations: Record<string, string> = { 'dev.cosignproject.cosign/signature': b64(signature) };
  if (opts.leaf !== undefined) {
    annotations['dev.sigstore.cosign/certificate'] = opts.leaf.certPem;
    annotations['dev.sigstore.cosign/chain'] = opts.leaf.chainPem;
  }
  const world = tlogWorld(opts);
  if (world !== undefined) {
    const body = {
      apiVersion: '0.0.1',
      kind: 'hashedrekord',
      spec: {
        data: { hash: { algorithm: 'sha256', value: sha256(payload).toString('hex') } },
        signature: { content: b64(signature), publicKey: { content: b64(pem) } },
      },
    };
    annotations['dev.sigstore.cosign/bundle'] = world.logEntry(body, opts.integratedTime).annotation;
  }
  return { payload, annotations };
}

/** An in-toto Statement v1 about `subject`. */
export function inTotoStatement(subject: string, predicateType: string, predicate: unknown): Buffer {
  const [alg, hex] = subject.split(':') as [string, string];
  return Buffer.from(
    JSON.stringify({
      _type: 'https://in-toto.io/Statement/v1',
      subject: [{ name: 'image', digest: { [alg]: hex } }],
      predicateType,
      predicate,
    }),
  );
}

function pae(payloadType: string, payload: Buffer): Buffer {
  // DSSE v1 pre-authentication encoding.
  const type = Buffer.from(payloadType);
  return Buffer.concat([
    Buffer.from(`DSSEv1 ${type.length} `),
    type,
    Buffer.from(` ${payload.length} `),
    payload,
  ]);
}

interface SignedEnvelope {
  statement: Buffer;
  signature: Buffer;
  envelopeJSON: { payloadType: string; payload: string; signatures: { keyid: string; sig: string }[] };
  tlogBody: Record<string, unknown>;
}

function signEnvelope(m: SigningMaterial, statement: Buffer): SignedEnvelope {
  const payloadType = 'application/vnd.in-toto+json';
  const { privateKey, pem } = signerKey(m);
  const signature = signWith(privateKey, pae(payloadType, statement));
  const envelopeJSON = {
    payloadType,
    payload: b64(statement),
    signatures: [{ keyid: '', sig: b64(signature) }],
  };
  // Rekor "dsse" 0.0.1 entry (what Rekor stores for `cosign attest` and new-bundle signatures).
  const tlogBody = {
    apiVersion: '0.0.1',
    kind: 'dsse',
    spec: {
      envelopeHash: {
        algorithm: 'sha256',
        value: sha256(
          JSON.stringify({ payload: b64(statement), payloadType, signatures: [{ sig: b64(signature) }] }),
        ).toString('hex'),
      },
      payloadHash: { algorithm: 'sha256', value: sha256(statement).toString('hex') },
      signatures: [{ signature: b64(signature), verifier: b64(pem) }],
    },
  };
  return { statement, signature, envelopeJSON, tlogBody };
}

export type SignAttestationOptions = SigningMaterial & {
  subject: string;
  predicateType: string;
  predicate?: unknown;
  tlog?: boolean;
  world?: TestSigstore;
  integratedTime?: number;
};

/** What `cosign attest` (classic format) writes: a DSSE envelope layer for the `.att` tag. */
export function signClassicAttestation(opts: SignAttestationOptions): ClassicSignature {
  const signed = signEnvelope(opts, inTotoStatement(opts.subject, opts.predicateType, opts.predicate ?? {}));
  // cosign leaves the signature annotation empty for attestations: the signature is in the envelope.
  const annotations: Record<string, string> = { 'dev.cosignproject.cosign/signature': '' };
  if (opts.leaf !== undefined) {
    annotations['dev.sigstore.cosign/certificate'] = opts.leaf.certPem;
    annotations['dev.sigstore.cosign/chain'] = opts.leaf.chainPem;
  }
  const world = tlogWorld(opts);
  if (world !== undefined) {
    annotations['dev.sigstore.cosign/bundle'] = world.logEntry(
      signed.tlogBody,
      opts.integratedTime,
    ).annotation;
  }
  return { payload: Buffer.from(JSON.stringify(signed.envelopeJSON)), annotations };
}

/**
 * A Sigstore v0.3 bundle with a DSSE in-toto envelope, as `cosign sign`/`cosign attest` write with
 * the new bundle format (`predicateType` {@link COSIGN_SIGN_PREDICATE_TYPE} for a signature). Keyless
 * bundles carry a dsse tlog entry with SET, inclusion proof and checkpoint.
 */
export function signBundle(opts: SignAttestationOptions): Record<string, unknown> {
  const signed = signEnvelope(opts, inTotoStatement(opts.subject, opts.predicateType, opts.predicate ?? {}));
  const world = tlogWorld(opts);
  const tlogEntries = world === undefined ? [] : [world.logEntry(signed.tlogBody, opts.integratedTime).entry];
  const material: Record<string, unknown> =
    opts.leaf !== undefined
      ? { certificate: { rawBytes: b64(opts.leaf.certDer) } }
      : { publicKey: { hint: b64(sha256(opts.key.publicKey.export({ type: 'spki', format: 'der' }))) } };
  return {
    mediaType: BUNDLE_MEDIA_TYPE,
    verificationMaterial: { ...material, tlogEntries, timestampVerificationData: { rfc3161Timestamps: [] } },
    dsseEnvelope: signed.envelopeJSON,
  };
}

/**
 * `bundle` as cosign v3 writes it against Rekor v2 and a timestamp authority: tlog entries carry an
 * inclusion proof but no SET (`inclusionPromise`), and the signing time comes from RFC 3161 tokens of
 * `world`'s TSA over the envelope's signature, one per `genTimes` entry. `keepSet` keeps the SETs
 * (bundles with both kinds of timestamp).
 */
export async function withRfc3161Timestamps(
  bundle: Record<string, unknown>,
  world: TestSigstore,
  genTimes: Date[],
  options: { keepSet?: boolean } = {},
): Promise<Record<string, unknown>> {
  const envelope = bundle.dsseEnvelope as { signatures: { sig: string }[] };
  const signature = Buffer.from(envelope.signatures[0]?.sig ?? '', 'base64');
  const material = bundle.verificationMaterial as { tlogEntries: Record<string, unknown>[] };
  const tlogEntries = material.tlogEntries.map((entry) => {
    if (options.keepSet === true) return entry;
    const rest = { ...entry };
    delete rest.inclusionPromise;
    return rest;
  });
  const rfc3161Timestamps = await Promise.all(
    genTimes.map(async (t) => ({ signedTimestamp: await world.timestamp(signature, t) })),
  );
  return {
    ...bundle,
    verificationMaterial: { ...material, tlogEntries, timestampVerificationData: { rfc3161Timestamps } },
  };
}

// ---------------------------------------------------------------------------------------------------
// Publishing

/** Where helpers write: a registry over the distribution push API, or an in-process fake. */
export interface RegistryWriter {
  putBlob(repo: string, bytes: Buffer): Promise<string>;
  putManifest(repo: string, reference: string, bytes: Buffer, mediaType: string): Promise<string>;
  /** A manifest by tag or digest, undefined on 404. */
  getManifest(repo: string, reference: string): Promise<Buffer | undefined>;
}

/** The distribution push API over plain HTTP (monolithic upload: POST, then PUT with the digest). */
export function httpRegistryWriter(registryUrl: string): RegistryWriter {
  return {
    async putBlob(repo, bytes) {
      const digest = sha256Digest(bytes);
      const start = await fetch(`${registryUrl}/v2/${repo}/blobs/uploads/`, { method: 'POST' });
      await start.arrayBuffer();
      if (start.status !== 202) throw new Error(`POST blob upload: ${start.status}`);
      const location = new URL(start.headers.get('location') ?? '', registryUrl);
      location.searchParams.set('digest', digest);
      const put = await fetch(location, {
        method: 'PUT',
        headers: { 'content-type': 'application/octet-stream' },
        body: bytes,
      });
      await put.arrayBuffer();
      if (put.status !== 201) throw new Error(`PUT blob ${digest}: ${put.status}`);
      return digest;
    },
    async putManifest(repo, reference, bytes, mediaType) {
      const res = await fetch(`${registryUrl}/v2/${repo}/manifests/${reference}`, {
        method: 'PUT',
        headers: { 'content-type': mediaType },
        body: bytes,
      });
      const text = await res.text();
      if (res.status !== 201) throw new Error(`PUT manifest ${repo}:${reference}: ${res.status} ${text}`);
      return sha256Digest(bytes);
    },
    async getManifest(repo, reference) {
      const res = await fetch(`${registryUrl}/v2/${repo}/manifests/${reference}`, {
        headers: { accept: `${OCI_INDEX}, ${OCI_MANIFEST}` },
      });
      const body = Buffer.from(await res.arrayBuffer());
      if (res.status === 404) return undefined;
      if (res.status !== 200) throw new Error(`GET manifest ${repo}:${reference}: ${res.status}`);
      return body;
    },
  };
}

/** The part of test/support/fake-upstream.ts's FakeUpstream the writer needs. */
export interface FakeStore {
  readonly url: string;
  putBlob(repo: string | undefined, bytes: Buffer | string): string;
  putManifest(repo: string, reference: string | undefined, bytes: Buffer | string, mediaType: string): string;
}

/** Writes into the in-process fake upstream through its API (it is read-only over HTTP). */
export function fakeRegistryWriter(fake: FakeStore): RegistryWriter {
  const http = httpRegistryWriter(fake.url);
  return {
    putBlob: (repo, bytes) => Promise.resolve(fake.putBlob(repo, bytes)),
    putManifest: (repo, reference, bytes, mediaType) =>
      Promise.resolve(
        fake.putManifest(repo, reference.startsWith('sha256:') ? undefined : reference, bytes, mediaType),
      ),
    getManifest: (repo, reference) => http.getManifest(repo, reference),
  };
}

function writerOf(target: string | RegistryWriter): RegistryWriter {
  return typeof target === 'string' ? httpRegistryWriter(target) : target;
}

function tagOf(subject: string, suffix = ''): string {
  return `${subject.replace(':', '-')}${suffix}`;
}

async function pushLayers(
  w: RegistryWriter,
  repo: string,
  tag: string,
  mediaType: string,
  items: ClassicSignature[],
): Promise<string> {
  const layers = [];
  for (const item of items) {
    const digest = await w.putBlob(repo, item.payload);
    layers.push({ mediaType, size: item.payload.length, digest, annotations: item.annotations });
  }
  const config = Buffer.from(
    JSON.stringify({
      architecture: '',
      created: '0001-01-01T00:00:00Z',
      os: '',
      rootfs: { type: 'layers', diff_ids: layers.map((l) => l.digest) },
      config: {},
    }),
  );
  const configDigest = await w.putBlob(repo, config);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: {
        mediaType: 'application/vnd.oci.image.config.v1+json',
        size: config.length,
        digest: configDigest,
      },
      layers,
    }),
  );
  return w.putManifest(repo, tag, manifest, OCI_MANIFEST);
}

/** Write cosign's classic signature manifest at tag `sha256-<hex>.sig`. Returns its digest. */
export async function pushClassicSignature(
  target: string | RegistryWriter,
  repo: string,
  subject: string,
  signatures: ClassicSignature[],
): Promise<string> {
  return pushLayers(writerOf(target), repo, tagOf(subject, '.sig'), SIMPLESIGNING_MEDIA_TYPE, signatures);
}

/** Write cosign's classic attestation manifest at tag `sha256-<hex>.att`. Returns its digest. */
export async function pushClassicAttestation(
  target: string | RegistryWriter,
  repo: string,
  subject: string,
  attestations: ClassicSignature[],
): Promise<string> {
  return pushLayers(writerOf(target), repo, tagOf(subject, '.att'), DSSE_MEDIA_TYPE, attestations);
}

export interface SubjectDescriptor {
  mediaType: string;
  digest: string;
  size: number;
}

/**
 * Write a Sigstore bundle as an OCI 1.1 referrer of `subject` (what cosign's `WriteReferrer` does),
 * and add it to the referrers tag schema index at tag `sha256-<hex>` (for registries without the
 * referrers API, such as distribution 2.8). Returns the referrer manifest digest.
 */
export async function pushBundleReferrer(
  target: string | RegistryWriter,
  repo: string,
  subject: SubjectDescriptor,
  bundle: Record<string, unknown>,
  predicateType: string,
  options: { tagSchema?: boolean } = {},
): Promise<string> {
  const w = writerOf(target);
  const empty = Buffer.from('{}');
  const emptyDigest = await w.putBlob(repo, empty);
  const bundleBytes = Buffer.from(JSON.stringify(bundle));
  const layerDigest = await w.putBlob(repo, bundleBytes);
  const annotations = {
    'dev.sigstore.bundle.content': 'dsse-envelope',
    'dev.sigstore.bundle.predicateType': predicateType,
    'org.opencontainers.image.created': new Date().toISOString(),
  };
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      artifactType: BUNDLE_MEDIA_TYPE,
      config: { mediaType: OCI_EMPTY, digest: emptyDigest, size: empty.length },
      layers: [{ mediaType: BUNDLE_MEDIA_TYPE, digest: layerDigest, size: bundleBytes.length }],
      subject,
      annotations,
    }),
  );
  const digest = await w.putManifest(repo, sha256Digest(manifest), manifest, OCI_MANIFEST);
  if (options.tagSchema !== false) {
    // distribution-spec "Referrers Tag Schema": read the index, add the descriptor, write it back.
    const tag = tagOf(subject.digest);
    const existing = await w.getManifest(repo, tag);
    const index = (
      existing === undefined
        ? { schemaVersion: 2, mediaType: OCI_INDEX, manifests: [] }
        : JSON.parse(existing.toString('utf8'))
    ) as { manifests: Record<string, unknown>[] };
    index.manifests = index.manifests.filter((m) => m.digest !== digest);
    index.manifests.push({
      mediaType: OCI_MANIFEST,
      digest,
      size: manifest.length,
      artifactType: BUNDLE_MEDIA_TYPE,
      annotations,
    });
    await w.putManifest(repo, tag, Buffer.from(JSON.stringify(index)), OCI_INDEX);
  }
  return digest;
}

/** Push a small OCI image (config + one layer) to `repo:tag`; returns its descriptor. */
export async function pushTestImage(
  target: string | RegistryWriter,
  repo: string,
  tag: string,
  content = 'hello',
): Promise<SubjectDescriptor> {
  const w = writerOf(target);
  const layer = Buffer.from(content);
  const layerDigest = await w.putBlob(repo, layer);
  const config = Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      rootfs: { type: 'layers', diff_ids: [layerDigest] },
    }),
  );
  const configDigest = await w.putBlob(repo, config);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: {
        mediaType: 'application/vnd.oci.image.config.v1+json',
        digest: configDigest,
        size: config.length,
      },
      layers: [
        { mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: layerDigest, size: layer.length },
      ],
    }),
  );
  const digest = await w.putManifest(repo, tag, manifest, OCI_MANIFEST);
  return { mediaType: OCI_MANIFEST, digest, size: manifest.length };
}
