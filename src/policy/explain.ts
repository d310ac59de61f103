/**
 * How decisions read: labels for attestors and signers, the one-line DENIED message, the JSON detail
 * of a DENIED body (and of `pullwarden check`). Text from certificates and manifests is cleaned here.
 */
import type { Attestor, DecisionResult, SignerIdentity } from '../shared/index.ts';
import type { GateResult } from './gates/types.ts';
import type { Decision } from './types.ts';

/** A short human label for an attestor, used in reasons and in the 403 detail. */
export function attestorLabel(a: Attestor): string {
  if ('key' in a) return `key(${a.key})`;
  const { root, issuer, subject, subjectRegExp } = a.keyless;
  const who = subject !== undefined ? `subject=${subject}` : `subjectRegExp=/${subjectRegExp ?? ''}/`;
  return `keyless(root=${root}, issuer=${issuer}, ${who})`;
}

// Reasons carry text from certificates and upstream manifests: keep them on one line.
export function clean(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u001f\u007f]+/g, ' ');
}

/** A signer as reasons name it. */
export function signerLabel(s: SignerIdentity): string {
  return clean(s.kind === 'key' ? `key ${s.key}` : `${s.subject} (issuer ${s.issuer})`);
}

const MESSAGE_LIMIT = 1000;

function withoutPrefix(reason: string, policy: string | undefined): string {
  const prefix = `policy "${policy ?? ''}": `;
  return reason.startsWith(prefix) ? reason.slice(prefix.length) : reason;
}

/**
 * One line for the OCI error message: the policy and the main reason, plus the first failure when the
 * main reason is a summary ("0 of 1 required signatures ...: 1 signature found, none verified; signature
 * sha256:... from cosign-sig: identity mismatch ...").
 */
export function formatDenyMessage(decision: Decision): string {
  const [main, next] = decision.reasons;
  let message: string;
  if (main === undefined) {
    message =
      decision.policy === undefined ? 'denied: no policy matches' : `denied by policy "${decision.policy}"`;
  } else if (main.startsWith(`policy "${decision.policy ?? ''}": `)) {
    message = `denied by ${main}`;
    if (next !== undefined && /none verified|not satisfied/.test(main)) {
      message += `; ${withoutPrefix(next, decision.policy)}`;
    }
  } else {
    message = main.startsWith('denied') ? main : `denied: ${main}`;
  }
  message = clean(message);
  return message.length > MESSAGE_LIMIT ? `${message.slice(0, MESSAGE_LIMIT - 1)}…` : message;
}

/** The `detail` of a DENIED error body (and of `pullwarden check`): JSON-safe, no undefined values. */
export interface DecisionDetail {
  policy: string | null;
  result: DecisionResult;
  reasons: string[];
  signers: SignerIdentity[];
  signatures: {
    kind: 'signature' | 'attestation';
    source: string;
    manifestDigest: string;
    predicateType?: string;
    ok: boolean;
    attestor?: string;
    signer?: SignerIdentity;
    failures?: { attestor: string; code: string; reason: string }[];
  }[];
  /** Each gate's outcome (verify policies with gates). */
  gates?: GateResult[];
}

export function decisionDetail(decision: Decision): DecisionDetail {
  return {
    policy: decision.policy ?? null,
    result: decision.result,
    reasons: [...decision.reasons],
    signers: decision.signers.map((s) => ({ ...s })),
    signatures: decision.checks.map((c) => ({
      kind: c.kind,
      source: c.source,
      manifestDigest: c.manifestDigest,
      ...(c.predicateType !== undefined ? { predicateType: c.predicateType } : {}),
      ok: c.ok,
      ...(c.attestor !== undefined ? { attestor: c.attestor } : {}),
      ...(c.signer !== undefined ? { signer: { ...c.signer } } : {}),
      ...(c.failures !== undefined ? { failures: c.failures.map((f) => ({ ...f })) } : {}),
    })),
    ...(decision.gates !== undefined ? { gates: structuredClone(decision.gates) } : {}),
  };
}
