import { isDigest } from '../oci/index.ts';
import type {
  AdmittedBlob,
  AdmittedChild,
  ManifestRecord,
  TagHistoryEntry,
  TagPin,
  TagRecord,
} from './types.ts';

/*
 * Readers of the records this module owns. Values come back from JSON written by this or an older
 * version, or by anything else that can write to the shared Redis: each reader checks the shape and
 * returns a fresh object of exactly the known fields, or undefined. What undefined means is the
 * caller's (see MetadataStore): a miss for caches, an error for durable state.
 */

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isSize(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

function isTime(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value);
}

export function readTagRecord(value: unknown): TagRecord | undefined {
  if (!isObject(value)) return undefined;
  const { digest, mediaType, size, checkedAt } = value;
  if (typeof digest !== 'string' || !isDigest(digest) || typeof mediaType !== 'string') return undefined;
  if (typeof size !== 'number' || !isTime(checkedAt)) return undefined;
  return { digest, mediaType, size, checkedAt };
}

export function readManifestRecord(value: unknown): ManifestRecord | undefined {
  if (!isObject(value)) return undefined;
  const { mediaType, size } = value;
  if (typeof mediaType !== 'string' || typeof size !== 'number') return undefined;
  return { mediaType, size };
}

export function readAdmittedBlob(value: unknown): AdmittedBlob | undefined {
  if (!isObject(value)) return undefined;
  const { size, maxSize } = value;
  if ((size !== undefined && !isSize(size)) || (maxSize !== undefined && !isSize(maxSize))) return undefined;
  return { ...(size === undefined ? {} : { size }), ...(maxSize === undefined ? {} : { maxSize }) };
}

export function readAdmittedChild(value: unknown): AdmittedChild | undefined {
  if (!isObject(value)) return undefined;
  const { index, policy } = value;
  if (typeof index !== 'string' || !isDigest(index)) return undefined;
  // JSON drops `policy: undefined`; null is how an older writer could have spelled it.
  if (policy !== undefined && policy !== null && typeof policy !== 'string') return undefined;
  return { index, policy: typeof policy === 'string' ? policy : undefined };
}

function readHistoryEntry(value: unknown): TagHistoryEntry | undefined {
  if (!isObject(value)) return undefined;
  const { digest, mediaType, size, firstSeen, lastSeen } = value;
  if (typeof digest !== 'string' || !isDigest(digest) || typeof mediaType !== 'string') return undefined;
  if (typeof size !== 'number' || !isTime(firstSeen) || !isTime(lastSeen)) return undefined;
  return { digest, mediaType, size, firstSeen, lastSeen };
}

export function readTagHistory(value: unknown): TagHistoryEntry[] | undefined {
  if (!Array.isArray(value)) return undefined;
  const entries: TagHistoryEntry[] = [];
  for (const item of value) {
    const entry = readHistoryEntry(item);
    if (entry === undefined) return undefined;
    entries.push(entry);
  }
  return entries;
}

export function readTagPin(value: unknown): TagPin | undefined {
  if (!isObject(value)) return undefined;
  const { digest, pinnedAt, by } = value;
  if (typeof digest !== 'string' || !isDigest(digest) || !isTime(pinnedAt)) return undefined;
  if (by !== 'first-seen' && by !== 'operator') return undefined;
  return { digest, pinnedAt, by };
}
