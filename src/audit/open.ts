import type { Writable } from 'node:stream';
import { join } from 'node:path';
import { signingKey } from './checkpoint.ts';
import { JsonlAuditSink } from './jsonl-sink.ts';
import { MultiAuditSink } from './multi-sink.ts';
import type { AuditExtra } from './multi-sink.ts';
import type { AuditConfig } from './schema.ts';
import { StdoutAuditSink } from './stdout-sink.ts';
import { WebhookAuditSink } from './webhook-sink.ts';
import type { Logger } from '../shared/index.ts';

/**
 * Build the configured audit sinks: the JSONL trail in `dir` (the resolved `audit.dir`, by default
 * `<storage.dir>/audit`), plus stdout and the webhook when configured. `webhook.spoolDir` defaults to
 * `<dir>/webhook-spool` (not an audit file name, so query and verify ignore it); the caller resolves a
 * relative one against the config file.
 */
export async function openAuditSink(
  config: AuditConfig,
  options: { dir: string; log?: Logger; stdout?: Writable; checkpointKey?: string | undefined },
): Promise<MultiAuditSink> {
  const log = options.log;
  const cp = config.checkpoint;
  const pem = options.checkpointKey;
  const primary = await JsonlAuditSink.open({
    dir: options.dir,
    maxFileBytes: config.maxFileBytes,
    maxFileAgeMs: config.maxFileAge,
    groupCommitMs: config.groupCommit,
    ...(log ? { log } : {}),
    ...(config.retention
      ? {
          retention: {
            maxAgeMs: config.retention.maxAge || undefined,
            maxBytes: config.retention.maxBytes || undefined,
          },
        }
      : {}),
    ...(cp && pem !== undefined
      ? {
          checkpoint: {
            key: signingKey(pem),
            everyEvents: cp.every,
            intervalMs: Math.max(1000, cp.interval),
          },
        }
      : {}),
  });
  const extras: AuditExtra[] = [];
  try {
    if (config.stdout) extras.push({ name: 'stdout', sink: new StdoutAuditSink(options.stdout) });
    const hook = config.webhook;
    if (hook) {
      const sink = await WebhookAuditSink.open({
        url: hook.url,
        spoolDir: hook.spoolDir ?? join(options.dir, 'webhook-spool'),
        batchSize: hook.batchSize,
        flushIntervalMs: hook.flushInterval,
        timeoutMs: hook.timeout,
        ...(hook.headers ? { headers: hook.headers } : {}),
        ...(log ? { log } : {}),
      });
      extras.push({ name: 'webhook', sink, required: hook.required });
    }
  } catch (error) {
    await primary.close();
    throw error;
  }
  const multi = new MultiAuditSink(primary, extras, log);
  primary.retentionHold = () => multi.receivedThrough();
  primary.onCheckpoint = (record) => multi.forward(record);
  return multi;
}
