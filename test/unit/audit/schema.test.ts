import { describe, expect, it } from 'vitest';
import { auditSchema, defaultAuditInput } from '../../../src/audit/index.ts';

describe('auditSchema', () => {
  it('fills in the defaults, in milliseconds and bytes', () => {
    expect(auditSchema.parse(undefined)).toEqual({
      maxFileBytes: 64 * 1024 * 1024,
      maxFileAge: 24 * 3_600_000,
      failClosed: true,
      groupCommit: 0,
      stdout: false,
    });
    expect(auditSchema.parse(defaultAuditInput)).toEqual(auditSchema.parse({}));
  });

  it('takes a webhook with its own defaults', () => {
    const parsed = auditSchema.parse({
      dir: '/var/lib/pullwarden/audit',
      webhook: { url: 'https://collector.example/audit', headers: { authorization: 'Bearer x' } },
    });
    expect(parsed.webhook).toEqual({
      url: 'https://collector.example/audit',
      batchSize: 100,
      flushInterval: 1000,
      timeout: 10_000,
      headers: { authorization: 'Bearer x' },
      required: false,
    });
  });

  it('rejects unknown keys, bad sizes and non-http webhooks', () => {
    expect(auditSchema.safeParse({ rotate: '1d' }).success).toBe(false);
    expect(auditSchema.safeParse({ maxFileBytes: '1KiB' }).success).toBe(false);
    expect(auditSchema.safeParse({ maxFileAge: 'soon' }).success).toBe(false);
    expect(auditSchema.safeParse({ webhook: { url: 'ftp://x' } }).success).toBe(false);
  });
});
