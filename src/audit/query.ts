import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
// The one duration grammar of the config file (a leaf module: no cycle; see policy/schema.ts).
import { globToRegExp, parseDuration } from '../shared/index.ts';
import type { GlobOptions } from '../shared/index.ts';
import type { DecisionResult } from '../shared/index.ts';
import { sortAuditFiles } from './chain.ts';
import { forEachLine, lineChunks, lineChunksFromEnd } from './lines.ts';
import type { AuditEventType, AuditRecord } from './types.ts';

/** Which events to return. Every given filter must match (AND). */
export interface AuditQuery {
  /** Events at or after this time (the event's `time`, when the request arrived). */
  since?: Date | undefined;
  /** Events before this time. */
  until?: Date | undefined;
  /** Exact upstream host. */
  upstream?: string | undefined;
  /**
   * Glob over the repository (`library/*`, `acme/**`), or over `<upstream>/<repository>` when it does not
   * match the repository alone. `*` stays within one path component, `**` crosses them, `?` is one character.
   */
  repository?: string | undefined;
  /** Exact digest: the resolved or blob digest, the reference asked for, or old/new of a tag move. */
  digest?: string | undefined;
  /** Exact tag (asked for, or the tag that resolved a digest pull). */
  tag?: string | undefined;
  decision?: DecisionResult | undefined;
  /** Exact policy name. */
  policy?: string | undefined;
  /** An attestation gate by name, and optionally its result (pass, deny, warn). */
  gate?: { name: string; result?: 'pass' | 'deny' | 'warn' | undefined } | undefined;
  /** Exact client address or authenticated identity. */
  client?: string | undefined;
  /** Exact identity (`user:…`, `token:…`, `cert:…`, or `anonymous` for a refused unauthenticated request). */
  identity?: string | undefined;
  type?: AuditEventType | undefined;
}

export interface AuditQueryOptions {
  /** Newest events first (default: oldest first). */
  newestFirst?: boolean;
  /** Stop after this many events (the newest N with `newestFirst`). */
  limit?: number;
}

/**
 * Parse a time bound as the CLI takes it: an ISO 8601 date or date-time (`2025-11-23`,
 * `2025-11-23T16:00:00Z`), or a duration before `now` (`24h`, `30m`, `7d`). Undefined when neither.
 */
export function parseTimeBound(value: string, now: Date = new Date()): Date | undefined {
  const trimmed = value.trim();
  if (/^\d+(?:\.\d+)?\s*(?:ms|s|m|h|d)$/.test(trimmed)) {
    const ms = parseDuration(trimmed);
    return ms === undefined ? undefined : new Date(now.getTime() - ms);
  }
  if (!/^\d{4}-\d{2}-\d{2}/.test(trimmed)) return undefined;
  const date = new Date(trimmed);
  return Number.isNaN(date.getTime()) ? undefined : date;
}

/** Anchored, case-insensitive regular expression for a repository glob (see {@link AuditQuery.repository}). */
export function repositoryGlob(glob: string): RegExp {
  return globToRegExp(glob, REPOSITORY_GLOB);
}

/** `*` within one path component, `**` any run (`/` included), `?` one character; case-insensitive. */
const REPOSITORY_GLOB: GlobOptions = {
  star: 'component',
  doubleStar: 'any',
  question: true,
  ignoreCase: true,
};

/** Slack when skipping whole files by time: the name's timestamp is truncated and clocks can step. */
const FILE_TIME_SLACK_MS = 60_000;
const TIME_KEY = Buffer.from('"time":"');
const REPOSITORY_KEY = Buffer.from('"repository":"');
const UPSTREAM_KEY = Buffer.from('"upstream":"');

/**
 * The value of a top-level string member, read without parsing; undefined when absent or escaped
 * (then the parsed record decides). The first `"key":"` of a line is the member: inside a JSON string
 * every quote is escaped.
 */
function stringMember(line: Buffer, key: Buffer): string | undefined {
  const at = line.indexOf(key);
  if (at < 0) return undefined;
  const from = at + key.length;
  const end = line.indexOf(0x22, from);
  if (end < 0) return undefined;
  const backslash = line.indexOf(0x5c, from);
  if (backslash >= 0 && backslash < end) return undefined;
  return line.toString('utf8', from, end);
}

/**
 * Stream the events of an audit directory that match `query`.
 *
 * Fast path: exact-string filters become byte needles (`"tag":"1.27"`); a chunk of several MiB is
 * searched for the most selective one and only lines that contain every needle are decoded and parsed.
 * Time bounds are checked on the `time` member at the start of each line before parsing, and whole files
 * that end before `since` are skipped (a file ends before the next one starts). Every candidate is then
 * checked exactly on the parsed record, so a needle can only speed things up, never change the answer.
 * Torn lines (a crash) are skipped.
 */
export async function* queryAuditDir(
  dir: string,
  query: AuditQuery,
  options: AuditQueryOptions = {},
): AsyncGenerator<AuditRecord> {
  const limit = options.limit ?? Infinity;
  if (limit <= 0) return;
  const matches = compile(query);
  const needles = needlesFor(query);
  const [first, ...others] = needles;
  const since = query.since?.toISOString();
  const until = query.until?.toISOString();

  const files = sortAuditFiles(await readdir(dir));
  const wanted = files.filter((f, i) => {
    const next = files[i + 1];
    if (query.since === undefined || next === undefined) return true;
    return next.started.getTime() + FILE_TIME_SLACK_MS >= query.since.getTime();
  });
  if (options.newestFirst) wanted.reverse();

  const repo = query.repository === undefined ? undefined : repositoryGlob(query.repository);
  /** The matching records among the whole lines of `chunk`, in file order; at most `room`. */
  const collect = (chunk: Buffer, room: number): AuditRecord[] => {
    const found: AuditRecord[] = [];
    const consider = (line: Buffer): boolean => {
      for (const n of others) if (line.indexOf(n) < 0) return true;
      if (since !== undefined || until !== undefined) {
        const time = timeOf(line);
        if (time !== undefined) {
          if (since !== undefined && time < since) return true;
          if (until !== undefined && time >= until) return true;
        }
      }
      if (repo) {
        const r = stringMember(line, REPOSITORY_KEY);
        const u = stringMember(line, UPSTREAM_KEY);
        if (r !== undefined && u !== undefined && !repo.test(r) && !repo.test(`${u}/${r}`)) return true;
      }
      let record: AuditRecord;
      try {
        record = JSON.parse(line.toString('utf8')) as AuditRecord;
      } catch {
        return true; // not a record (verify reports it)
      }
      if (!matches(record)) return true;
      found.push(record);
      return found.length < room;
    };
    if (first === undefined) forEachLine(chunk, consider);
    else scan(chunk, first, consider);
    return found;
  };

  let count = 0;
  for (const f of wanted) {
    const path = join(dir, f.name);
    if (options.newestFirst) {
      // From the end of the file: "the newest N" reads only as far back as it must.
      for await (const chunk of lineChunksFromEnd(path)) {
        const found = collect(chunk, Infinity);
        for (let i = found.length - 1; i >= 0; i--) {
          yield found[i] as AuditRecord;
          if (++count >= limit) return;
        }
      }
    } else {
      for await (const part of lineChunks(path)) {
        if (!part.lines) continue; // a torn last line
        for (const record of collect(part.lines, limit - count)) {
          yield record;
          if (++count >= limit) return;
        }
      }
    }
  }
}

/** Visit only the lines of `chunk` that contain `needle`. */
function scan(chunk: Buffer, needle: Buffer, onLine: (line: Buffer) => boolean): boolean {
  let from = 0;
  for (;;) {
    const hit = chunk.indexOf(needle, from);
    if (hit < 0) return true;
    const start = chunk.lastIndexOf(0x0a, hit) + 1;
    let end = chunk.indexOf(0x0a, hit);
    if (end < 0) end = chunk.length;
    if (!onLine(chunk.subarray(start, end))) return false;
    from = end + 1;
  }
}

/** The `time` member of a stored line, read without parsing (it is always near the start). */
function timeOf(line: Buffer): string | undefined {
  const at = line.indexOf(TIME_KEY);
  if (at < 0 || at > 200) return undefined;
  const from = at + TIME_KEY.length;
  const end = line.indexOf(0x22, from);
  if (end < 0) return undefined;
  const time = line.toString('latin1', from, end);
  // Lexical order is time order only in the canonical toISOString form; anything else is left to parsing.
  return time.length === 24 && time.endsWith('Z') ? time : undefined;
}

/** Byte strings every matching line must contain, most selective first. */
function needlesFor(q: AuditQuery): Buffer[] {
  const member = (key: string, value: string) => Buffer.from(`"${key}":${JSON.stringify(value)}`);
  const out: Buffer[] = [];
  if (q.digest !== undefined) out.push(Buffer.from(JSON.stringify(q.digest)));
  if (q.tag !== undefined) out.push(member('tag', q.tag));
  if (q.policy !== undefined) out.push(member('policy', q.policy));
  if (q.client !== undefined) out.push(Buffer.from(JSON.stringify(q.client)));
  if (q.identity !== undefined) out.push(member('identity', q.identity));
  if (q.upstream !== undefined) out.push(member('upstream', q.upstream));
  if (q.type !== undefined) out.push(member('type', q.type));
  if (q.decision !== undefined) out.push(member('decision', q.decision));
  if (q.gate !== undefined) out.push(member('gate', q.gate.name));
  return out;
}

/** The exact predicate over a parsed record. */
function compile(q: AuditQuery): (r: AuditRecord) => boolean {
  const repo = q.repository === undefined ? undefined : repositoryGlob(q.repository);
  const since = q.since?.getTime();
  const until = q.until?.getTime();
  return (r) => {
    // Checkpoints anchor the chain; they are not events (audit verify reads them).
    if ((r.type as string) === 'checkpoint') return false;
    if (since !== undefined || until !== undefined) {
      const t = Date.parse(r.time);
      if (since !== undefined && !(t >= since)) return false;
      if (until !== undefined && !(t < until)) return false;
    }
    if (q.upstream !== undefined && r.upstream !== q.upstream) return false;
    if (q.tag !== undefined && r.tag !== q.tag) return false;
    if (q.decision !== undefined && r.decision !== q.decision) return false;
    if (q.policy !== undefined && r.policy !== q.policy) return false;
    if (q.type !== undefined && r.type !== q.type) return false;
    const g = q.gate;
    if (
      g !== undefined &&
      !(r.gates ?? []).some((x) => x.gate === g.name && (g.result === undefined || x.result === g.result))
    ) {
      return false;
    }
    if (q.client !== undefined && r.client !== q.client && r.identity !== q.client) return false;
    if (q.identity !== undefined && r.identity !== q.identity) return false;
    if (
      q.digest !== undefined &&
      r.digest !== q.digest &&
      r.reference !== q.digest &&
      r.old !== q.digest &&
      r.new !== q.digest
    ) {
      return false;
    }
    if (repo && !repo.test(r.repository) && !repo.test(`${r.upstream}/${r.repository}`)) return false;
    return true;
  };
}

/**
 * The chain directories under `base` (replicas on a shared storage directory write one each, named
 * after the replica): every subdirectory that holds an audit file, sorted.
 */
export async function auditChainDirs(base: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(base, { withFileTypes: true })) {
    if (!entry.isDirectory()) continue;
    const dir = join(base, entry.name);
    const names = await readdir(dir).catch(() => []);
    if (sortAuditFiles(names).length > 0) out.push(dir);
  }
  return out.sort();
}
