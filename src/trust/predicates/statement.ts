/**
 * The in-toto statement of a DSSE attestation, with its predicate, read from the bundle's signed
 * payload — never from anything beside it (annotations, descriptors), which nobody signed.
 */
import type { Bundle } from '@sigstore/bundle';
import { IN_TOTO_PAYLOAD_TYPE } from '../constants.ts';
import { statementObject } from '../convert.ts';
import type { AttestationStatement } from './types.ts';
import { arr, FormatError, need, obj, str } from './json.ts';

/** Statement `_type`s in the field: v0.1 (SLSA v0.2 era) and v1. */
export const STATEMENT_TYPES = new Set([
  'https://in-toto.io/Statement/v0.1',
  'https://in-toto.io/Statement/v1',
]);

export function parseStatement(bundle: Bundle): AttestationStatement {
  if (bundle.content.$case !== 'dsseEnvelope') throw new FormatError('not a DSSE attestation');
  const env = bundle.content.dsseEnvelope;
  if (env.payloadType !== IN_TOTO_PAYLOAD_TYPE) {
    throw new FormatError(`DSSE payloadType is ${env.payloadType}, not in-toto`);
  }
  let st: Record<string, unknown>;
  try {
    st = statementObject(env);
  } catch (err) {
    throw new FormatError(err instanceof Error ? err.message : String(err));
  }
  const statementType = need(str(st._type), 'in-toto statement has no _type');
  if (!STATEMENT_TYPES.has(statementType)) {
    throw new FormatError(`report format not understood: in-toto statement _type ${statementType}`);
  }
  const predicateType = need(str(st.predicateType), 'in-toto statement has no predicateType');
  const subjects = need(arr(st.subject), 'in-toto statement has no subject').map((s) => {
    const out: Record<string, string> = {};
    for (const [alg, hex] of Object.entries(obj(obj(s)?.digest) ?? {})) {
      if (typeof hex === 'string') out[alg] = hex.toLowerCase();
    }
    return out;
  });
  return { statementType, predicateType, subjects, predicate: st.predicate ?? null };
}
