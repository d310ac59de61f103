import type { Writable } from 'node:stream';
import { join } from 'node:path';
import { JsonlAuditSink } from './jsonl-sink.ts';
import { MultiAuditSink } from './multi-sink.ts';
import type { AuditExtra } from './multi-sink.ts';
import type { AuditConfig } from './schema.ts';
import { StdoutAuditSink } from './stdout-sink.ts';
import type { AuditLogger } from './types.ts';
import { WebhookAuditSink } from './webhook-sink.ts';

/**
 * Build the configured audit sinks: the JSONL trail in `dir` (the resolved `audit.dir`, by default
 * `<storage.dir>/audit`), plus stdout and the webhook when configured. `webhook.spoolDir` defaults to
 * `<dir>/webhook-spool` (not an audit file name, so query and verify ignore it); the caller resolves a
 * relative one against the config file.
 */
export async function openAuditSink(
  config: AuditConfig,
  options: { dir: string; log?: AuditLogger; stdout?: Writable },
): Promise<MultiAuditSink> {
  const log = options.log;
  const primary = await JsonlAuditSink.open({
    dir: options.dir,
    maxFileBytes: config.maxFileBytes,
    maxFileAgeMs: config.maxFileAge,
    groupCommitMs: config.groupCommit,
    ...(log ? { log } : {}),
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
  return new MultiAuditSink(primary, extras, log);
}
