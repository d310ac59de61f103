import { resolve } from 'node:path';
import { buildInventory, inventorySources, parseTimeBound } from '../../app/tools.ts';
import type { InventoryEntry, InventoryOptions, InventorySources } from '../../app/tools.ts';
import { ConfigError, loadConfig, parseDuration } from '../../config/index.ts';
import type { Command } from '../types.ts';
import { UsageError } from '../types.ts';
import { configPath } from './config.ts';
import { parseCommandArgs } from './parse.ts';

export const inventory: Command = {
  name: 'inventory',
  synopsis:
    '[--config FILE | --dir DIR] [--denied] [--since T] [--repository GLOB] [--unsigned] [--older-than D] [--json]',
  summary: 'What was pulled: per repository and tag, digests, clients, decisions, signers, age, tag moves',
  help: [
    'Answers "which image is deployed, which one is safe?" from the audit trail (and, for image age,',
    'the config blobs in the cache): per upstream/repository, each tag with the digest it resolved to',
    '(and earlier ones), first and last pull, distinct clients and identities, the newest decision and',
    'policy, verified signers, image age (config "created"), gate results and tag moves. Read-only:',
    'safe while the proxy runs.',
    '',
    'Options:',
    '  -c, --config FILE   Config file (audit.dir and storage.dir; default $PULLWARDEN_CONFIG, else the',
    '                      embedded defaults)',
    '  -d, --dir DIR       Audit directory only (image age unknown)',
    '  --denied            Only tags with at least one denied pull',
    '  --since T           Pulls at or after T: ISO date/time or a duration ago (24h, 7d)',
    '  --repository GLOB   Repository glob (library/*, acme/**) or <upstream>/<repository> glob',
    '  --unsigned          Only tags whose newest decision had no verified signer',
    '  --older-than D      Only images created longer ago than D (90d); unknown ages are left out',
    '  --json              One JSON document: {"entries":[…]}',
    '',
    'Example:',
    '  pullwarden inventory --config pullwarden.yaml --since 30d --unsigned --older-than 90d',
    '',
    'Exit codes: 0 done (also when nothing matched), 2 error.',
  ].join('\n'),
  async run(args, ctx) {
    const { values } = parseCommandArgs(
      args,
      {
        config: { type: 'string', short: 'c' },
        dir: { type: 'string', short: 'd' },
        denied: { type: 'boolean' },
        since: { type: 'string' },
        repository: { type: 'string' },
        unsigned: { type: 'boolean' },
        'older-than': { type: 'string' },
        json: { type: 'boolean' },
      },
      { min: 0, max: 0, names: '' },
    );
    if (values.dir !== undefined && values.config !== undefined) {
      throw new UsageError('give --dir or --config, not both');
    }
    const now = new Date();
    const options: InventoryOptions = { now };
    if (values.since !== undefined) {
      const since = parseTimeBound(values.since, now);
      if (!since)
        throw new UsageError(
          `--since: expected an ISO date/time or a duration such as 24h, got "${values.since}"`,
        );
      options.since = since;
    }
    const older = values['older-than'];
    if (older !== undefined) {
      const ms = parseDuration(older);
      if (ms === undefined)
        throw new UsageError(`--older-than: expected a duration such as 90d, got "${older}"`);
      options.olderThanMs = ms;
    }
    if (values.repository !== undefined) options.repository = values.repository;
    if (values.denied === true) options.denied = true;
    if (values.unsigned === true) options.unsigned = true;
    try {
      let sources: InventorySources;
      if (values.dir !== undefined) sources = { auditDir: resolve(ctx.cwd, values.dir) };
      else {
        const config = await loadConfig(configPath(values.config, ctx.env), ctx.env, {
          cwd: ctx.cwd,
          resolveSecrets: false,
        });
        sources = await inventorySources(config);
      }
      const inv = await buildInventory(sources, options);
      if (values.json === true) {
        ctx.stdout.write(`${JSON.stringify({ entries: inv.entries })}\n`);
        return 0;
      }
      ctx.stdout.write(`${table(inv.entries, now)}\n`);
      return 0;
    } catch (error) {
      if (error instanceof UsageError) throw error;
      const e = error as NodeJS.ErrnoException;
      if (e.code === 'ENOENT' && e.syscall === 'scandir') {
        ctx.stderr.write(
          `pullwarden inventory: no audit trail at ${e.path ?? '?'} (check --dir, or audit.dir in the config)\n`,
        );
        return 2;
      }
      const message =
        error instanceof ConfigError ? `invalid configuration\n${error.message}` : (error as Error).message;
      ctx.stderr.write(`pullwarden inventory: ${message}\n`);
      return 2;
    }
  },
};

function shortDigest(d: string | undefined): string {
  if (d === undefined) return '-';
  const colon = d.indexOf(':');
  return colon < 0 ? d : `${d.slice(0, colon + 1)}${d.slice(colon + 1, colon + 13)}`;
}

/** `12d` / `5h` since an ISO time, or `-`. */
export function age(iso: string | undefined, now: Date): string {
  if (iso === undefined) return '-';
  const ms = now.getTime() - Date.parse(iso);
  if (!Number.isFinite(ms)) return '-';
  const days = Math.floor(ms / 86_400_000);
  return days >= 1 ? `${days}d` : `${Math.max(0, Math.floor(ms / 3_600_000))}h`;
}

function table(entries: readonly InventoryEntry[], now: Date): string {
  const header = [
    'IMAGE',
    'DIGEST',
    'DECISION',
    'POLICY',
    'PULLS',
    'CLIENTS',
    'DENIED',
    'LAST PULL',
    'AGE',
    'MOVES',
    'SIGNERS',
  ];
  const rows = entries.map((e) => [
    `${e.upstream}/${e.repository}${e.tag !== undefined ? `:${e.tag}` : ''}`,
    shortDigest(e.digest),
    e.decision ?? '-',
    e.policy ?? '-',
    String(e.pulls),
    String(e.clients),
    String(e.denials),
    e.lastPull.slice(0, 19).replace('T', ' '),
    age(e.created, now),
    String(e.moves.length),
    e.signers.length > 0 ? e.signers.join(', ') : '-',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}
