/**
 * Turning what cosign writes into Sigstore bundles that `@sigstore/verify` checks.
 *
 * cosign "classic" signatures (a `.sig` tag whose layers are simplesigning payloads, the signature and
 * its Rekor entry in layer annotations) are converted into a v0.1 bundle, as sigstore-go does
 * (`examples/oci-image-verification`, `bundleFromSigningLayer`): v0.1 is the version whose tlog entries
 * may carry only an inclusion promise (SET), which is all a classic Rekor annotation holds.
 */
import { createHash } from 'node:crypto';
import { bundleFromJSON } from '@sigstore/bundle';
import type { Bundle } from '@sigstore/bundle';
import { Annotation, IN_TOTO_PAYLOAD_TYPE } from './constants.ts';

const BUNDLE_V01 = 'application/vnd.dev.sigstore.bundle+json;version=0.1';

/** A JSON object, or a thrown Error naming `what`. */
export function jsonObject(bytes: Buffer | string, what: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(typeof bytes === 'string' ? bytes : bytes.toString('utf8'));
  } catch {
    throw new Error(`${what} is not valid JSON`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new Error(`${what} is not a JSON object`);
  }
  return value as Record<string, unknown>;
}

function pemCertificates(pem: string): Buffer[] {
  return [...pem.matchAll(/-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/g)].map((m) =>
    Buffer.from((m[1] ?? '').replace(/\s+/g, ''), 'base64'),
  );
}

/** The `tlogEntries` of a bundle from cosign's Rekor bundle annotation (SET only, no inclusion proof). */
function tlogEntriesFrom(annotation: string | undefined): unknown[] {
  if (annotation === undefined || annotation === '') return [];
  const rekor = jsonObject(annotation, 'rekor bundle annotation');
  const payload = rekor.Payload as Record<string, unknown> | undefined;
  const set = rekor.SignedEntryTimestamp;
  if (typeof payload !== 'object' || payload === null || typeof set !== 'string') {
    throw new Error('rekor bundle annotation lacks Payload or SignedEntryTimestamp');
  }
  const { body, integratedTime, logIndex, logID } = payload;
  if (
    typeof body !== 'string' ||
    typeof integratedTime !== 'number' ||
    typeof logIndex !== 'number' ||
    typeof logID !== 'string' ||
    !/^[0-9a-f]+$/i.test(logID)
  ) {
    throw new Error('rekor bundle annotation payload is malformed');
  }
  const entry = jsonObject(Buffer.from(body, 'base64'), 'rekor entry body');
  if (typeof entry.kind !== 'string' || typeof entry.apiVersion !== 'string') {
    throw new Error('rekor entry body lacks kind or apiVersion');
  }
  return [
    {
      logIndex: String(logIndex),
      logId: { keyId: Buffer.from(logID, 'hex').toString('base64') },
      kindVersion: { kind: entry.kind, version: entry.apiVersion },
      integratedTime: String(integratedTime),
      inclusionPromise: { signedEntryTimestamp: set },
      canonicalizedBody: body,
    },
  ];
}

function verificationMaterial(annotations: Record<string, string>): Record<string, unknown> {
  const rfc3161Timestamps: unknown[] = [];
  const tsa = annotations[Annotation.rfc3161Timestamp];
  if (tsa !== undefined && tsa !== '') {
    const ts = jsonObject(tsa, 'rfc3161 timestamp annotation');
    if (typeof ts.SignedRFC3161Timestamp !== 'string')
      throw new Error('rfc3161 timestamp annotation is malformed');
    rfc3161Timestamps.push({ signedTimestamp: ts.SignedRFC3161Timestamp });
  }
  const material: Record<string, unknown> = {
    tlogEntries: tlogEntriesFrom(annotations[Annotation.bundle]),
    timestampVerificationData: { rfc3161Timestamps },
  };
  const certificate = annotations[Annotation.certificate];
  if (certificate !== undefined && certificate !== '') {
    const [leaf] = pemCertificates(certificate);
    if (leaf === undefined) throw new Error('certificate annotation holds no PEM certificate');
    // The chain annotation is ignored on purpose: intermediates must come from the trusted root, never
    // from the signature being judged.
    material.x509CertificateChain = { certificates: [{ rawBytes: leaf.toString('base64') }] };
  } else {
    // Key-based: no hint in cosign's format; the verifier's key finder ignores it.
    material.publicKey = { hint: '' };
  }
  return material;
}

/** A cosign classic signature layer (simplesigning payload + annotations) as a v0.1 bundle. */
export function classicSignatureToBundle(payload: Buffer, annotations: Record<string, string>): Bundle {
  const signature = annotations[Annotation.signature];
  if (signature === undefined || signature === '') throw new Error('layer has no signature annotation');
  return bundleFromJSON({
    mediaType: BUNDLE_V01,
    verificationMaterial: verificationMaterial(annotations),
    messageSignature: {
      messageDigest: { algorithm: 'SHA2_256', digest: createHash('sha256').update(payload).digest('base64') },
      signature,
    },
  });
}

/** A cosign classic attestation layer (a DSSE envelope blob + annotations) as a v0.1 bundle. */
export function classicAttestationToBundle(envelope: Buffer, annotations: Record<string, string>): Bundle {
  const env = jsonObject(envelope, 'DSSE envelope');
  if (
    typeof env.payload !== 'string' ||
    typeof env.payloadType !== 'string' ||
    !Array.isArray(env.signatures)
  ) {
    throw new Error('DSSE envelope lacks payload, payloadType or signatures');
  }
  return bundleFromJSON({
    mediaType: BUNDLE_V01,
    verificationMaterial: verificationMaterial(annotations),
    dsseEnvelope: {
      payload: env.payload,
      payloadType: env.payloadType,
      signatures: (env.signatures as unknown[]).map((s) => {
        const sig = (s ?? {}) as Record<string, unknown>;
        return {
          sig: typeof sig.sig === 'string' ? sig.sig : '',
          keyid: typeof sig.keyid === 'string' ? sig.keyid : '',
        };
      }),
    },
  });
}

/** A serialized Sigstore bundle (a referrer's layer). */
export function parseBundle(bytes: Buffer): Bundle {
  return bundleFromJSON(jsonObject(bytes, 'sigstore bundle'));
}

/** The in-toto statement a DSSE bundle signs, or undefined for a message signature bundle. */
export interface InTotoStatement {
  predicateType: string;
  /** Subject digests, as `{ sha256: hex }` maps. */
  subjects: Record<string, string>[];
}

const statementObjects = new WeakMap<object, Record<string, unknown>>();

/**
 * The in-toto statement of a DSSE envelope as a JSON object, parsed once per envelope: discovery,
 * the subject binding and the predicate reader all read it, and a 30 MiB SBOM should cost one
 * `JSON.parse`, not three. Callers read it and never change it. Throws like {@link jsonObject}.
 */
export function statementObject(env: { payload: Buffer }): Record<string, unknown> {
  const hit = statementObjects.get(env);
  if (hit !== undefined) return hit;
  const st = jsonObject(env.payload, 'in-toto statement');
  statementObjects.set(env, st);
  return st;
}

/** Parse the in-toto statement of a DSSE bundle; throws when it is not one. */
export function inTotoStatement(bundle: Bundle): InTotoStatement | undefined {
  if (bundle.content.$case !== 'dsseEnvelope') return undefined;
  const env = bundle.content.dsseEnvelope;
  if (env.payloadType !== IN_TOTO_PAYLOAD_TYPE)
    throw new Error(`DSSE payloadType is ${env.payloadType}, not in-toto`);
  const st = statementObject(env);
  if (typeof st.predicateType !== 'string') throw new Error('in-toto statement has no predicateType');
  if (!Array.isArray(st.subject)) throw new Error('in-toto statement has no subject');
  const subjects = (st.subject as unknown[]).map((s) => {
    const digest = (s as { digest?: unknown } | null)?.digest;
    const out: Record<string, string> = {};
    if (typeof digest === 'object' && digest !== null) {
      for (const [alg, hex] of Object.entries(digest))
        if (typeof hex === 'string') out[alg] = hex.toLowerCase();
    }
    return out;
  });
  return { predicateType: st.predicateType, subjects };
}

/** A bundle standing in for one that could not be parsed; verification refuses it via `parseError`. */
export function placeholderBundle(): Bundle {
  return {
    mediaType: BUNDLE_V01,
    verificationMaterial: {
      content: { $case: 'publicKey', publicKey: { hint: '' } },
      tlogEntries: [],
      timestampVerificationData: { rfc3161Timestamps: [] },
    },
    content: {
      $case: 'messageSignature',
      messageSignature: {
        messageDigest: { algorithm: 0, digest: Buffer.alloc(0) },
        signature: Buffer.alloc(0),
      },
    },
  } as unknown as Bundle;
}
