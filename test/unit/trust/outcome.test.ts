import { PolicyError, VerificationError } from '@sigstore/verify';
import { describe, expect, it } from 'vitest';
import { causeChain } from '../../../src/trust/roots.ts';
import { outcomeOf } from '../../../src/trust/verify.ts';

function failed(err: unknown): { code: string; reason: string } {
  const outcome = outcomeOf(err);
  if (outcome.ok) throw new Error('a library error became a success');
  return outcome;
}

describe('outcomeOf (library errors → verification outcomes)', () => {
  it('names the outcome code an operator acts on, with the causes as the reason', () => {
    const error = (code: ConstructorParameters<typeof VerificationError>[0]['code'], message: string) =>
      new VerificationError({ code, message });
    expect(outcomeOf(error('CERTIFICATE_ERROR', 'certificate expired'))).toMatchObject({
      ok: false,
      code: 'certificate-expired',
    });
    expect(failed(error('CERTIFICATE_ERROR', 'SCT verification failed')).code).toBe('untrusted-root');
    expect(failed(error('CERTIFICATE_ERROR', 'no chain')).reason).toBe(
      'certificate does not chain to the trust root: no chain',
    );
    expect(failed(error('SIGNATURE_ERROR', 'bad')).code).toBe('signature-invalid');
    expect(failed(error('PUBLIC_KEY_ERROR', 'none')).code).toBe('unknown-key');
    expect(failed(error('TIMESTAMP_ERROR', 'none')).code).toBe('tlog-missing');
    expect(failed(error('TLOG_ERROR', 'expected 1 tlog entry')).code).toBe('tlog-missing');
    expect(failed(error('TLOG_ERROR', 'entry mismatch')).code).toBe('tlog-invalid');
    expect(failed(error('TLOG_INCLUSION_PROOF_ERROR', 'bad proof')).code).toBe('tlog-invalid');
    expect(failed(new PolicyError({ code: 'UNTRUSTED_SIGNER_ERROR', message: 'no' })).code).toBe(
      'identity-mismatch',
    );
  });

  it('calls anything else malformed, and never succeeds', () => {
    const outcome = outcomeOf(new Error('outer', { cause: new Error('inner') }));
    expect(outcome).toEqual({ ok: false, code: 'malformed', reason: 'verification failed: outer: inner' });
    expect(outcomeOf('a string').ok).toBe(false);
  });

  it('reads at most five causes deep', () => {
    let err: Error = new Error('0');
    for (let i = 1; i < 8; i++) err = new Error(String(i), { cause: err });
    expect(causeChain(err)).toEqual(['7', '6', '5', '4', '3']);
  });
});
