import { z } from 'zod';
// The one duration and size grammar of the config file, from the shared leaf (config wires this
// schema into its own, so audit must not import config back).
import { duration, size } from '../shared/index.ts';

export const auditWebhookSchema = z
  .strictObject({
    url: z
      .url({ protocol: /^https?$/, error: 'expected an http:// or https:// URL' })
      .describe('Collector endpoint: receives POST with a JSON array of audit events'),
    batchSize: z.number().int().min(1).max(10_000).default(100).describe('Most events in one POST'),
    flushInterval: duration('1s', 'Longest time an event waits for a fuller batch'),
    timeout: duration('10s', 'Timeout of one POST'),
    spoolDir: z
      .string()
      .min(1)
      .optional()
      .describe(
        'Disk buffer for events not yet acknowledged by the collector (default: <audit.dir>/webhook-spool)',
      ),
    headers: z
      .record(z.string().min(1), z.string())
      .optional()
      .describe('Extra request headers, e.g. Authorization (redacted when the config is printed)'),
    required: z
      .boolean()
      .default(false)
      .describe('Fail pulls (with failClosed) when the spool cannot be written; delivery failures never do'),
  })
  .describe(
    'Ship audit events to an HTTP collector, through a disk spool so that a collector that is down loses nothing',
  );

export const auditRetentionSchema = z
  .strictObject({
    maxAge: duration(
      '0s',
      'Delete audit files whose newest event is older than this (0: keep by age forever)',
    ),
    maxBytes: size(
      '0B',
      'Delete the oldest audit files while the trail is larger than this (0: no size limit)',
    ),
  })
  .describe(
    'Retention: whole files, oldest first, never the current one, and only once every other sink (the webhook) has received them',
  );

export const auditCheckpointSchema = z
  .strictObject({
    keyFile: z
      .string()
      .min(1)
      .optional()
      .describe('Ed25519 private key (PEM, PKCS#8) that signs checkpoints'),
    keyEnv: z.string().min(1).optional().describe('Environment variable that holds the PEM private key'),
    every: z
      .number()
      .int()
      .min(1)
      .default(10_000)
      .describe('Write a signed checkpoint after this many events'),
    interval: duration('5m', 'Write a signed checkpoint at least this often, also when idle (at least 1s)'),
  })
  .describe(
    'Signed checkpoints that anchor the hash chain (audit verify --key detects rewriting before the newest)',
  );

export const auditSchema = z
  .strictObject({
    dir: z.string().min(1).optional().describe('Audit trail directory (default: <storage.dir>/audit)'),
    maxFileBytes: size('64MiB', 'Start a new audit file before one grows beyond this', 4096),
    maxFileAge: duration('24h', 'Start a new audit file when the current one is older than this'),
    failClosed: z
      .boolean()
      .default(true)
      .describe('Refuse pulls (503) when their audit event cannot be written; false serves them and logs'),
    groupCommit: duration(
      '0ms',
      'Longest time an audit event waits to share one write + fsync with others (0: as soon as the writer is idle)',
    ),
    stdout: z.boolean().default(false).describe('Also write every audit event as a JSON line to stdout'),
    webhook: auditWebhookSchema.optional(),
    retention: auditRetentionSchema.optional(),
    checkpoint: auditCheckpointSchema.optional(),
  })
  .prefault({})
  .describe('Audit trail: an append-only, hash-chained JSONL record of every manifest and blob request');

export type AuditConfigInput = z.input<typeof auditSchema>;
export type AuditConfig = z.output<typeof auditSchema>;
export type AuditWebhookConfig = z.output<typeof auditWebhookSchema>;
export type AuditCheckpointConfig = z.output<typeof auditCheckpointSchema>;

/** Default audit config in input form (for the embedded defaults / example config). */
export const defaultAuditInput = {
  maxFileBytes: '64MiB',
  maxFileAge: '24h',
  failClosed: true,
  groupCommit: '0ms',
  stdout: false,
} as const satisfies AuditConfigInput;
