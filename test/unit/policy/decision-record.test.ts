import { describe, expect, it } from 'vitest';
import { readDecision } from '../../../src/policy/index.ts';
import type { Decision } from '../../../src/policy/index.ts';
import { sha256Digest } from '../../../src/oci/index.ts';

const digest = sha256Digest(new TextEncoder().encode('sig'));

const full: Decision = {
  result: 'deny',
  policy: 'signed',
  reasons: ['no signature'],
  signers: [
    { kind: 'key', key: 'ci' },
    { kind: 'keyless', issuer: 'https://token.actions.githubusercontent.com', subject: 'repo' },
  ],
  checks: [
    {
      source: 'cosign-sig',
      kind: 'signature',
      manifestDigest: digest,
      ok: false,
      failures: [{ attestor: 'ci', code: 'signature-invalid', reason: 'bad' }],
    },
  ],
  gates: [
    {
      gate: 'cves',
      kind: 'vulnerabilities',
      mode: 'enforce',
      result: 'deny',
      reasons: ['1 critical'],
      facts: {},
    },
  ],
};

describe('readDecision', () => {
  it('reads back what the gate stored, through JSON', () => {
    expect(readDecision(JSON.parse(JSON.stringify(full)))).toEqual(full);
  });

  it('restores an absent policy (JSON drops undefined)', () => {
    const none = { ...full, policy: undefined, gates: undefined };
    const back = readDecision(JSON.parse(JSON.stringify(none)));
    expect(back).toEqual({
      result: 'deny',
      policy: undefined,
      reasons: full.reasons,
      signers: full.signers,
      checks: full.checks,
    });
  });

  it.each([
    ['an empty object', {}],
    ['a string', 'allow'],
    ['an array', [full]],
    ['an unknown result', { ...full, result: 'maybe' }],
    ['no result', { ...full, result: undefined }],
    ['reasons that are not strings', { ...full, reasons: [1] }],
    ['a malformed signer', { ...full, signers: [{ kind: 'key' }] }],
    ['a check with a bad digest', { ...full, checks: [{ ...full.checks[0], manifestDigest: 'sha256:x' }] }],
    ['a gate without facts', { ...full, gates: [{ ...full.gates?.[0], facts: undefined }] }],
    ['a numeric policy', { ...full, policy: 7 }],
  ])('is not a decision: %s', (_, value) => {
    expect(readDecision(JSON.parse(JSON.stringify(value ?? null)) as unknown)).toBeUndefined();
  });
});
