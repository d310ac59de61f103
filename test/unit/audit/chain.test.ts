import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { encodeRecord } from '../../../src/audit/index.ts';
import type { AuditEvent } from '../../../src/audit/index.ts';

const prev = 'ab'.repeat(32);

describe('encodeRecord', () => {
  it('gives the same line whether the event starts with time or not', () => {
    const timeFirst: AuditEvent = {
      time: '2026-12-03T16:00:00.000Z',
      type: 'manifest',
      requestId: 'req-1',
      client: '127.0.0.1',
      identity: undefined,
      method: 'HEAD',
      upstream: 'docker.io',
      repository: 'library/nginx',
      reference: '1.27',
      tag: '1.27',
      status: 200,
      bytes: 0,
      durationMs: 1.5,
      gates: [{ gate: 'sbom', kind: 'sbom', mode: 'enforce', result: 'pass', counts: { critical: 0 } }],
    };
    const { time, ...rest } = timeFirst;
    const { type, ...others } = rest;
    const typeFirst: AuditEvent = { type, time, ...others };
    const a = encodeRecord(timeFirst, 7, prev);
    const b = encodeRecord(typeFirst, 7, prev);
    expect(a).toEqual(b);
    expect(
      a.line.startsWith(`{"seq":7,"prev":"${prev}","time":"2026-12-03T16:00:00.000Z","type":"manifest",`),
    ).toBe(true);
    expect(a.line).not.toContain('identity');
    const hashed = a.line.slice(0, a.line.lastIndexOf(',"hash":'));
    expect(a.hash).toBe(createHash('sha256').update(hashed).digest('hex'));
    const stored: Record<string, unknown> = { ...rest };
    delete stored['identity'];
    expect(JSON.parse(a.line)).toEqual({ seq: 7, prev, ...stored, time, hash: a.hash });
  });

  it('keeps the chain members first when the event carries members of the same name', () => {
    const odd = { time: '2026-12-03T16:00:00.000Z', type: 'manifest', seq: 99 } as unknown as AuditEvent;
    const { line } = encodeRecord(odd, 3, prev);
    expect(line.startsWith(`{"seq":99,"prev":"${prev}","time":`)).toBe(true);
    expect(line.match(/"seq"/g)).toHaveLength(1);
  });
});
