/**
 * The on-disk format of the audit trail, in one place.
 *
 * Directory: `<dir>/audit-<UTC start, YYYYMMDDTHHMMSSZ>-<seq of the first line, 12 digits>.jsonl`.
 * Files are ordered by that seq (not by name or mtime, so a clock that steps back cannot reorder them).
 *
 * Line: one JSON object and `\n`. Its first members are always `seq`, `prev` and `time`, its last
 * member is always `hash`:
 *
 *     {"seq":42,"prev":"<64 hex>","time":"2025-11-23T16:22:33.123Z","type":"manifest",…,"hash":"<64 hex>"}
 *
 * - `hash` = sha256 (hex) of the line's UTF-8 bytes before `,"hash":` (everything but the hash itself).
 * - `prev` = the `hash` of the line before it in the chain; for the first line of a file that is the
 *   last line of the previous file, so the chain continues across rotation. The very first line of a
 *   trail has `prev` = {@link GENESIS} (64 zeros) and `seq` 1.
 * - `seq` increases by exactly one per line, across files.
 *
 * An edited line no longer matches its own `hash`; an edit that also recomputes `hash` breaks the
 * `prev` of the next line; a deleted, inserted or reordered line breaks `seq` and `prev`. What a
 * chain cannot show by itself is a cut at the end (the newest lines removed): compare the head that
 * `audit verify` prints with a copy held elsewhere (the stdout or webhook sink carries seq and hash).
 */
import { createHash } from 'node:crypto';
import type { AuditEvent } from './types.ts';

/** `prev` of the first line of a trail. */
export const GENESIS = '0'.repeat(64);

/** `,"hash":"` + 64 hex + `"}`. */
export const HASH_SUFFIX_LENGTH = 75;
const HASH_MEMBER = ',"hash":"';

const FILE_RE = /^audit-(\d{8}T\d{6}Z)-(\d{1,16})\.jsonl$/;

export interface AuditFileName {
  name: string;
  /** Seq of the first line written to the file. */
  firstSeq: number;
  /** When the file was started (from the name). */
  started: Date;
}

/** The name of a file whose first line will have `firstSeq`, started at `now`. */
export function auditFileName(now: Date, firstSeq: number): string {
  const ts = now
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');
  return `audit-${ts}-${String(firstSeq).padStart(12, '0')}.jsonl`;
}

/** Parse an audit file name; undefined for anything else in the directory. */
export function parseAuditFileName(name: string): AuditFileName | undefined {
  const m = FILE_RE.exec(name);
  if (!m) return undefined;
  const ts = m[1] ?? '';
  const iso = `${ts.slice(0, 4)}-${ts.slice(4, 6)}-${ts.slice(6, 8)}T${ts.slice(9, 11)}:${ts.slice(11, 13)}:${ts.slice(13, 15)}Z`;
  const started = new Date(iso);
  if (Number.isNaN(started.getTime())) return undefined;
  return { name, firstSeq: Number(m[2]), started };
}

/** Audit files of a directory listing, in chain order. */
export function sortAuditFiles(names: readonly string[]): AuditFileName[] {
  const files: AuditFileName[] = [];
  for (const n of names) {
    const f = parseAuditFileName(n);
    if (f) files.push(f);
  }
  return files.sort((a, b) => a.firstSeq - b.firstSeq || a.started.getTime() - b.started.getTime());
}

export function sha256Hex(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Encode one event as a chained line (without the trailing newline). */
export function encodeRecord(event: AuditEvent, seq: number, prev: string): { line: string; hash: string } {
  return encodeLine(event, seq, prev);
}

/** Encode any member set with a `time` (an event, a checkpoint) as a chained line. */
export function encodeLine(
  fields: { time: string; type: string },
  seq: number,
  prev: string,
): { line: string; hash: string } {
  // `time` is spelled out first so that it sits at a fixed place near the start of every line
  // (query reads it without parsing); the spread keeps that position and the caller's value.
  const hashed = lineHead(fields, seq, prev).slice(0, -1);
  const hash = sha256Hex(hashed);
  return { line: `${hashed}${HASH_MEMBER}${hash}"}`, hash };
}

/**
 * `{"seq":…,"prev":…,"time":…,…}`. An event whose first member already is `time` (the pull events,
 * built that way) is serialized once and prefixed, which gives the very bytes of the general path
 * without copying the event into a new object on every line of the warm path.
 */
function lineHead(fields: { time: string; type: string }, seq: number, prev: string): string {
  if (firstKey(fields) === 'time' && !('seq' in fields) && !('prev' in fields)) {
    return `{"seq":${JSON.stringify(seq)},"prev":${JSON.stringify(prev)},${JSON.stringify(fields).slice(1)}`;
  }
  const { time, ...rest } = fields;
  return JSON.stringify({ seq, prev, time, ...rest });
}

function firstKey(o: object): string | undefined {
  for (const k in o) return k;
  return undefined;
}

const HEAD_RE = /^\{"seq":(\d{1,16}),"prev":"([0-9a-f]{64})"/;
const HASH_TAIL_RE = /^,"hash":"([0-9a-f]{64})"\}$/;

/** The chain members of a stored line, or why the line is not a chain record. */
export function chainFields(
  line: string,
): { ok: true; seq: number; prev: string; hash: string; hashed: string } | { ok: false; problem: string } {
  const head = HEAD_RE.exec(line);
  if (!head) return { ok: false, problem: 'not an audit record (does not start with {"seq":…,"prev":…)' };
  const tail = HASH_TAIL_RE.exec(line.slice(-HASH_SUFFIX_LENGTH));
  if (!tail) return { ok: false, problem: 'not an audit record (does not end with a "hash" member)' };
  return {
    ok: true,
    seq: Number(head[1]),
    prev: head[2] ?? '',
    hash: tail[1] ?? '',
    hashed: line.slice(0, -HASH_SUFFIX_LENGTH),
  };
}

/** {@link chainFields} for a line still in bytes: reads only its first and last bytes. */
export function chainFieldsOf(
  line: Buffer,
): { ok: true; seq: number; prev: string; hash: string } | { ok: false; problem: string } {
  const head = HEAD_RE.exec(line.toString('latin1', 0, Math.min(line.length, 100)));
  if (!head) return { ok: false, problem: 'not an audit record (does not start with {"seq":…,"prev":…)' };
  const tail =
    line.length >= HASH_SUFFIX_LENGTH + 1
      ? HASH_TAIL_RE.exec(line.toString('latin1', line.length - HASH_SUFFIX_LENGTH))
      : null;
  if (!tail) return { ok: false, problem: 'not an audit record (does not end with a "hash" member)' };
  return { ok: true, seq: Number(head[1]), prev: head[2] ?? '', hash: tail[1] ?? '' };
}
