/**
 * Signature verification against the loaded trust material (roots.ts): `@sigstore/verify` plus the
 * checks it leaves to the caller (transparency log key, codeSigning EKU, identity, subject binding).
 * Synchronous and CPU only.
 */
import { createPublicKey, X509Certificate as NodeX509Certificate } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import type { Bundle } from '@sigstore/bundle';
import { PolicyError, toSignedEntity, VerificationError } from '@sigstore/verify';
import type { Signer, Verifier } from '@sigstore/verify';
import { digestAlgorithm, digestHex } from '../oci/index.ts';
import type { Digest } from '../oci/index.ts';
import { OID_CODE_SIGNING, SIMPLESIGNING_TYPE } from './constants.ts';
import { inTotoStatement, jsonObject } from './convert.ts';
import { causeChain } from './roots.ts';
import type { Attestor, FoundSignature, VerifyOutcome } from './types.ts';

/** The verifiers a verification picks from (the {@link TrustRoots} of roots.ts). */
export interface VerificationMaterial {
  rootVerifier(name: string): Verifier | undefined;
  key(name: string): { noTlog: Verifier; tlog: Verifier | undefined } | undefined;
}

function fail(code: string, reason: string): VerifyOutcome {
  return { ok: false, code, reason };
}

/** A library error as an outcome code with a readable reason. */
export function outcomeOf(err: unknown): VerifyOutcome {
  const chain = causeChain(err);
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
 * Verify one found signature for `attestor` and the digest being decided, against `material`. What is
 * checked, in order: the signature, certificate chain (to the attestor's named root, valid at the
 * signing time the transparency log or a TSA vouches for), SCTs and transparency log entries
 * (`@sigstore/verify`); that the transparency log entry names the signer's key; EKU codeSigning on the
 * leaf; the identity (SAN matched anchored, issuer exact); and the binding of the signed payload to the
 * digest being decided. Throws what the library throws; {@link outcomeOf} turns that into an outcome.
 */
export function verifySignature(
  material: VerificationMaterial,
  found: FoundSignature,
  attestor: Attestor,
  subject: Digest,
  compiled: (keyless: { subject?: string; subjectRegExp?: string }) => RegExp | undefined,
): VerifyOutcome {
  if (found.parseError !== undefined) return fail('malformed', found.parseError);
  const leaf = leafCertificate(found.bundle);
  let verifier: Verifier;
  if ('key' in attestor) {
    const key = material.key(attestor.key);
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
    const rootVerifier = material.rootVerifier(attestor.keyless.root);
    if (rootVerifier === undefined)
      return fail('untrusted-root', `trust root ${attestor.keyless.root} is not configured`);
    if (leaf === undefined) return fail('identity-mismatch', 'signed with a key, not with a certificate');
    verifier = rootVerifier;
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
    matcher = compiled(attestor.keyless);
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
