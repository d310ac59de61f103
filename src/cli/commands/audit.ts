import { readFile } from 'node:fs/promises';
import { basename, dirname, resolve } from 'node:path';
import {
  auditChains,
  parseTimeBound,
  queryAuditTrail,
  readChainTail,
  verifyAuditTrail,
  verifyingKey,
} from '../../app/tools.ts';
import type { AuditQuery, AuditRecord, AuditVerifyOptions, AuditVerifyResult } from '../../app/tools.ts';
import { parseDuration } from '../../config/index.ts';
import { ConfigError, loadConfig } from '../../config/index.ts';
import type { Command, CliContext } from '../types.ts';
import { UsageError } from '../types.ts';
import { configPath } from './config.ts';
import { parseCommandArgs } from './parse.ts';

const DIR_HELP = [
  '  -d, --dir DIR       Audit directory',
  '  -c, --config FILE   Config file whose audit.dir (default <storage.dir>/audit) to read',
  '                      (default: $PULLWARDEN_CONFIG, else the embedded defaults)',
];

/**
 * The audit directory: --dir, else the config's audit.dir, else <storage.dir>/audit. With
 * `storage.shared` the config's audit.dir is this replica's chain; `whole` asks for the base that
 * holds every replica's chain instead (verify and query read the whole trail).
 */
async function auditDir(
  dir: string | undefined,
  config: string | undefined,
  ctx: CliContext,
  whole = false,
): Promise<string> {
  if (dir !== undefined) return resolve(ctx.cwd, dir);
  const loaded = await loadConfig(configPath(config, ctx.env), ctx.env, {
    cwd: ctx.cwd,
    resolveSecrets: false,
  });
  // The loader resolves audit.dir against the config file and defaults it to <storage.dir>/audit.
  return whole && loaded.storage.shared ? dirname(loaded.audit.dir) : loaded.audit.dir;
}

/** Print an error as the CLI does: exit 2 for a bad config or an unreadable directory. */
function fail(name: string, error: unknown, ctx: CliContext): number {
  if (error instanceof UsageError) throw error;
  const message =
    error instanceof ConfigError
      ? `invalid configuration\n${error.message}`
      : error instanceof Error
        ? error.message
        : String(error);
  ctx.stderr.write(`pullwarden ${name}: ${message}\n`);
  return 2;
}

const DECISIONS = ['allow', 'deny', 'warn'] as const;
const TYPES = ['manifest', 'blob', 'tags', 'referrers', 'tag-moved'] as const;

export const auditQuery: Command = {
  name: 'audit query',
  synopsis: '[--dir DIR | --config FILE] [FILTER…] [--newest] [--limit N] [--json]',
  summary: 'Search the audit trail',
  help: [
    'Prints the audit events that match every given filter, oldest first, as a table (or JSON lines).',
    'Several chains under the directory (replicas on a shared volume) are merged by event time.',
    '',
    'Options:',
    ...DIR_HELP,
    '',
    'Filters (all that are given must match):',
    '  --since T           At or after T: ISO date/time (2025-11-23, 2025-11-23T16:00:00Z) or a',
    '                      duration ago (30m, 24h, 7d)',
    '  --until T           Before T (same forms)',
    '  --upstream HOST     Exact upstream host, e.g. docker.io',
    '  --repository GLOB   Repository glob (library/*, acme/**), or <upstream>/<repository> glob',
    '  --digest D          Resolved or blob digest, or the digest asked for, or old/new of a tag move',
    '  --tag T             Tag asked for, or the tag that resolved a digest pull',
    '  --decision D        allow, deny or warn',
    '  --policy P          Policy name',
    '  --gate NAME[:R]     Attestation gate by name, optionally with its result (pass, deny, warn)',
    '  --client C          Client address or authenticated identity',
    '  --identity I        Identity exactly (user:…, token:…, cert:…, or anonymous)',
    '  --type T            manifest, blob, tags, referrers or tag-moved',
    '',
    '  --newest            Newest first (with --limit: the newest N)',
    '  --limit N           At most N events',
    '  --json              One JSON object per line (the stored record, with seq, prev and hash)',
    '',
    'Exit codes: 0 done (also when nothing matched), 2 error.',
  ].join('\n'),
  async run(args, ctx) {
    const { values } = parseCommandArgs(
      args,
      {
        dir: { type: 'string', short: 'd' },
        config: { type: 'string', short: 'c' },
        since: { type: 'string' },
        until: { type: 'string' },
        upstream: { type: 'string' },
        repository: { type: 'string' },
        digest: { type: 'string' },
        tag: { type: 'string' },
        decision: { type: 'string' },
        policy: { type: 'string' },
        gate: { type: 'string' },
        client: { type: 'string' },
        identity: { type: 'string' },
        type: { type: 'string' },
        newest: { type: 'boolean' },
        limit: { type: 'string' },
        json: { type: 'boolean' },
      },
      { min: 0, max: 0, names: '' },
    );
    if (values.dir !== undefined && values.config !== undefined) {
      throw new UsageError('give --dir or --config, not both');
    }
    const now = new Date();
    const bound = (flag: 'since' | 'until') => {
      const v = values[flag];
      if (v === undefined) return undefined;
      const d = parseTimeBound(v, now);
      if (!d)
        throw new UsageError(`--${flag}: expected an ISO date/time or a duration such as 24h, got "${v}"`);
      return d;
    };
    const oneOf = <T extends string>(flag: string, v: string | undefined, allowed: readonly T[]) => {
      if (v === undefined) return undefined;
      if (!(allowed as readonly string[]).includes(v)) {
        throw new UsageError(`--${flag}: expected ${allowed.join(', ')}, got "${v}"`);
      }
      return v as T;
    };
    let limit: number | undefined;
    if (values.limit !== undefined) {
      limit = Number(values.limit);
      if (!Number.isSafeInteger(limit) || limit < 1) {
        throw new UsageError(`--limit: expected a positive integer, got "${values.limit}"`);
      }
    }
    const query: AuditQuery = {
      since: bound('since'),
      until: bound('until'),
      upstream: values.upstream,
      repository: values.repository,
      digest: values.digest,
      tag: values.tag,
      decision: oneOf('decision', values.decision, DECISIONS),
      policy: values.policy,
      gate: gateFilter(values.gate),
      client: values.client,
      identity: values.identity,
      type: oneOf('type', values.type, TYPES),
    };
    const json = values.json === true;
    try {
      const dir = await auditDir(values.dir, values.config, ctx, true);
      const options = { newestFirst: values.newest === true, ...(limit === undefined ? {} : { limit }) };
      if (!json) ctx.stdout.write(`${TABLE_HEADER}\n`);
      let batch: string[] = [];
      for await (const record of queryAuditTrail(dir, query, options)) {
        batch.push(json ? JSON.stringify(record) : tableRow(record));
        if (batch.length >= 256) {
          await write(ctx, `${batch.join('\n')}\n`);
          batch = [];
        }
      }
      if (batch.length > 0) await write(ctx, `${batch.join('\n')}\n`);
      return 0;
    } catch (error) {
      return fail('audit query', error, ctx);
    }
  },
};

export const auditVerify: Command = {
  name: 'audit verify',
  synopsis: '[--dir DIR | --config FILE] [--key PUB] [--max-age DUR] [--expect-head [SEQ:]HASH] [--json]',
  summary: 'Check the hash chain of the audit trail and report the first break',
  help: [
    'Checks every line of every audit file: its hash, its seq and its link (prev) to the line before,',
    'across files. Reports the first break (file, line, what is wrong), torn last lines left by a crash',
    '(not a break), and the head of the chain: keep the head elsewhere to detect later that lines were',
    'cut from the end, which a chain alone cannot show. Files removed by retention are recorded by a',
    'checkpoint; files removed otherwise are a break. A directory holding chain subdirectories (replicas',
    'on a shared volume, storage.shared: with --config, every replica of the volume) has each chain checked.',
    '',
    'Options:',
    ...DIR_HELP,
    '  --key PUB           Ed25519 public key (PEM) of audit.checkpoint: every checkpoint must be signed',
    '                      by it, so lines rewritten or deleted before the newest one are a break even',
    '                      when their hashes were recomputed',
    '  --max-age DUR       With --key: the newest signed checkpoint must be younger (e.g. 15m for a',
    '                      proxy that signs every 5m): a cut tail shows',
    '  --expect-head H     A head saved elsewhere (`audit head`): SEQ:HASH or HASH must be in the trail',
    '  --json              One JSON object on stdout',
    '',
    'Example:',
    '  pullwarden audit verify --config pullwarden.yaml --key audit-key.pub --max-age 15m',
    '',
    'Exit codes: 0 the chain verifies, 1 it is broken, 2 error.',
  ].join('\n'),
  async run(args, ctx) {
    const { values } = parseCommandArgs(
      args,
      {
        dir: { type: 'string', short: 'd' },
        config: { type: 'string', short: 'c' },
        key: { type: 'string' },
        'max-age': { type: 'string' },
        'expect-head': { type: 'string' },
        json: { type: 'boolean' },
      },
      { min: 0, max: 0, names: '' },
    );
    if (values.dir !== undefined && values.config !== undefined) {
      throw new UsageError('give --dir or --config, not both');
    }
    const options: AuditVerifyOptions = {};
    const head = values['expect-head'];
    if (head !== undefined) {
      const m = /^(?:(\d{1,16}):)?([0-9a-f]{64})$/.exec(head.trim());
      if (!m) throw new UsageError(`--expect-head: expected SEQ:HASH or HASH (64 hex), got "${head}"`);
      options.expectHead =
        m[1] === undefined ? { hash: m[2] ?? '' } : { seq: Number(m[1]), hash: m[2] ?? '' };
    }
    const maxAge = values['max-age'];
    if (maxAge !== undefined) {
      if (values.key === undefined) throw new UsageError('--max-age needs --key');
      const ms = parseDuration(maxAge);
      if (ms === undefined)
        throw new UsageError(`--max-age: expected a duration such as 15m, got "${maxAge}"`);
      options.maxAgeMs = ms;
    }
    let dir: string;
    try {
      if (values.key !== undefined) {
        const path = resolve(ctx.cwd, values.key);
        try {
          options.key = verifyingKey(await readFile(path, 'utf8'));
        } catch (error) {
          throw new Error(`--key ${path}: ${(error as Error).message}`, { cause: error });
        }
      }
      dir = await auditDir(values.dir, values.config, ctx, true);
      const trail = await verifyAuditTrail(dir, options);
      if (values.json === true) {
        // One chain: its result as before; several (replicas on a shared volume): each one's.
        const [only] = trail.chains;
        const out = trail.chains.length === 1 && only !== undefined ? only : { dir, ...trail };
        ctx.stdout.write(`${JSON.stringify(out)}\n`);
        return trail.ok ? 0 : 1;
      }
      const lines = trail.chains.flatMap((c) => verifyReport(c.dir, c));
      if (trail.chains.length > 1) {
        const broken = trail.chains.filter((c) => !c.ok).map((c) => basename(c.dir));
        lines.push(
          broken.length === 0
            ? `ok: ${trail.chains.length} chains`
            : `BROKEN: ${broken.length} of ${trail.chains.length} chains (${broken.join(', ')})`,
        );
      }
      (trail.ok ? ctx.stdout : ctx.stderr).write(`${lines.join('\n')}\n`);
      return trail.ok ? 0 : 1;
    } catch (error) {
      return fail('audit verify', error, ctx);
    }
  },
};

export const auditHead: Command = {
  name: 'audit head',
  synopsis: '[--dir DIR | --config FILE] [--json]',
  summary: 'Print the head of the audit chain (seq and hash), to keep elsewhere',
  help: [
    'Prints `SEQ:HASH` of the newest complete line of the trail, read from the end of the newest file',
    '(no full check: use `audit verify` for that). Ship it to another system, say every hour; later',
    '`audit verify --expect-head SEQ:HASH` shows whether lines up to it were cut or rewritten. With',
    "--config and storage.shared: this replica's chain; --dir of the shared base: `CHAIN SEQ:HASH` per replica.",
    '',
    'Options:',
    ...DIR_HELP,
    '  --json              {"seq":…,"hash":…} on stdout',
    '',
    'Example:',
    '  pullwarden audit head --config pullwarden.yaml | ssh vault "cat >> pullwarden-heads.txt"',
    '',
    'Exit codes: 0 printed, 2 error.',
  ].join('\n'),
  async run(args, ctx) {
    const { values } = parseCommandArgs(
      args,
      {
        dir: { type: 'string', short: 'd' },
        config: { type: 'string', short: 'c' },
        json: { type: 'boolean' },
      },
      { min: 0, max: 0, names: '' },
    );
    if (values.dir !== undefined && values.config !== undefined) {
      throw new UsageError('give --dir or --config, not both');
    }
    try {
      const dir = await auditDir(values.dir, values.config, ctx);
      const chains = await auditChains(dir);
      if (chains.length === 1) {
        const tail = await readChainTail(dir);
        ctx.stdout.write(
          values.json === true
            ? `${JSON.stringify({ seq: tail.seq, hash: tail.hash })}\n`
            : `${tail.seq}:${tail.hash}\n`,
        );
        return 0;
      }
      // A base of several chains (replicas on a shared volume): one head each, named by its chain.
      const heads: string[] = [];
      for (const chain of chains) {
        const tail = await readChainTail(chain);
        const name = basename(chain);
        heads.push(
          values.json === true
            ? JSON.stringify({ chain: name, seq: tail.seq, hash: tail.hash })
            : `${name} ${tail.seq}:${tail.hash}`,
        );
      }
      ctx.stdout.write(`${heads.join('\n')}\n`);
      return 0;
    } catch (error) {
      return fail('audit head', error, ctx);
    }
  },
};

/** The lines `audit verify` prints for one chain. */
function verifyReport(dir: string, result: AuditVerifyResult): string[] {
  const lines = [
    `${dir}: ${result.files} file${result.files === 1 ? '' : 's'}, ${result.lines} line${result.lines === 1 ? '' : 's'} checked`,
  ];
  for (const t of result.incomplete) {
    lines.push(
      `  incomplete last line: ${t.file} line ${t.line} (${t.bytes} bytes, a write cut short by a crash; not a break)`,
    );
  }
  if (result.firstSeq !== undefined && result.firstSeq > 1) {
    lines.push(`  the trail starts at seq ${result.firstSeq}: older files were removed`);
  }
  if (result.lastCheckpoint) {
    const c = result.lastCheckpoint;
    lines.push(
      `  newest ${c.signed ? 'signed ' : ''}checkpoint: seq ${c.seq} at ${c.time} (${c.file} line ${c.line})` +
        (result.unanchored !== undefined ? `, ${result.unanchored} line(s) after it` : ''),
    );
  }
  if (result.firstBreak) {
    const b = result.firstBreak;
    lines.push(`BROKEN at ${b.file} line ${b.line}: ${b.problem}`);
  } else {
    lines.push(
      result.head
        ? `ok: head seq ${result.head.seq} ${result.head.hash} (${result.head.file} line ${result.head.line})`
        : 'ok: empty',
    );
  }
  return lines;
}

/** Write with backpressure (a pipe to `head` or `less`). */
function write(ctx: CliContext, text: string): Promise<void> {
  return new Promise((resolveWrite) => {
    if (ctx.stdout.write(text)) resolveWrite();
    else ctx.stdout.once('drain', () => resolveWrite());
  });
}

const TABLE_HEADER = [
  'TIME'.padEnd(24),
  'TYPE'.padEnd(9),
  'DECISION'.padEnd(8),
  'STATUS',
  'BYTES'.padStart(10),
  'CLIENT'.padEnd(16),
  'POLICY'.padEnd(16),
  'IMAGE',
].join(' ');

function shortDigest(d: string | undefined): string {
  if (d === undefined) return '';
  const colon = d.indexOf(':');
  return colon < 0 ? d : `${d.slice(0, colon + 1)}${d.slice(colon + 1, colon + 13)}`;
}

/** time, type, decision, status, bytes, client, policy, upstream/repository:tag@digest (short). */
function tableRow(r: AuditRecord): string {
  const image =
    r.type === 'tag-moved'
      ? `${r.upstream}/${r.repository}:${r.tag ?? ''} ${shortDigest(r.old)} -> ${shortDigest(r.new)}`
      : `${r.upstream}/${r.repository}${r.tag !== undefined ? `:${r.tag}` : ''}${r.digest !== undefined ? `@${shortDigest(r.digest)}` : r.reference.includes(':') ? `@${shortDigest(r.reference)}` : ''}`;
  return [
    r.time.padEnd(24),
    r.type.padEnd(9),
    (r.decision ?? '-').padEnd(8),
    String(r.status).padEnd(6),
    String(r.bytes).padStart(10),
    (r.identity ?? r.client).padEnd(16),
    (r.policy ?? '-').padEnd(16),
    image,
  ].join(' ');
}

/** `--gate NAME` or `--gate NAME:RESULT`. */
function gateFilter(v: string | undefined): AuditQuery['gate'] {
  if (v === undefined) return undefined;
  const [name = '', result, ...rest] = v.split(':');
  if (
    name === '' ||
    rest.length > 0 ||
    (result !== undefined && !['pass', 'deny', 'warn'].includes(result))
  ) {
    throw new UsageError(`--gate: expected NAME or NAME:RESULT (pass, deny, warn), got "${v}"`);
  }
  return { name, ...(result !== undefined ? { result: result as 'pass' | 'deny' | 'warn' } : {}) };
}
