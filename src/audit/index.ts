/** Audit: the event type, the durable hash-chained JSONL trail, extra sinks, query and chain check. */
export type {
  AuditErrorCode,
  AuditEvent,
  AuditGate,
  AuditEventType,
  AuditHealth,
  AuditRecord,
  AuditSink,
  AuditSinkStats,
  ChainedAuditSink,
} from './types.ts';
export { AuditError } from './types.ts';
export { GENESIS, auditFileName, encodeRecord, parseAuditFileName, sortAuditFiles } from './chain.ts';
export { JsonlAuditSink, readChainTail } from './jsonl-sink.ts';
export type { AuditFileHandle, JsonlAuditSinkOptions } from './jsonl-sink.ts';
export { StdoutAuditSink } from './stdout-sink.ts';
export { WebhookAuditSink } from './webhook-sink.ts';
export type { WebhookAuditSinkOptions } from './webhook-sink.ts';
export { MultiAuditSink } from './multi-sink.ts';
export type { AuditExtra, AuditSinkStatus } from './multi-sink.ts';
export { openAuditSink } from './open.ts';
export { RecentTags } from './recent-tags.ts';
export { verifyAuditDir } from './verify.ts';
export { auditChains, queryAuditTrail, verifyAuditTrail } from './trail.ts';
export type { AuditTrailVerifyResult } from './trail.ts';
export type { AuditBreak, AuditVerifyOptions, AuditVerifyResult } from './verify.ts';
export { checkpointProblem, keyId, signCheckpoint, signingKey, verifyingKey } from './checkpoint.ts';
export type { AuditCheckpoint, CheckpointReason } from './checkpoint.ts';
export type { AuditCheckpointRecord, RetentionResult } from './jsonl-sink.ts';
export { auditChainDirs, parseTimeBound, queryAuditDir, repositoryGlob } from './query.ts';
export type { AuditQuery, AuditQueryOptions } from './query.ts';
export { auditSchema, auditWebhookSchema, defaultAuditInput } from './schema.ts';
export type { AuditConfig, AuditConfigInput, AuditWebhookConfig } from './schema.ts';
