import { openTagAdmin } from '../../app/tools.ts';
import type { TagAdmin, TagRef } from '../../app/tools.ts';
import { parseDigest } from '../../oci/index.ts';
import type { Digest } from '../../oci/index.ts';
import type { CliContext, Command } from '../types.ts';
import { loadCommandConfig } from './config.ts';
import { parseCommandArgs } from './parse.ts';

/** Run `fn` with the tag rules' state of the configured metadata store (the one the proxy shares). */
async function withTags(
  args: string[],
  ctx: CliContext,
  positionals: { min: number; max: number; names: string },
  fn: (tags: TagAdmin, positionals: string[], flags: { json: boolean; force: boolean }) => Promise<number>,
  accepts: { force?: boolean } = {},
): Promise<number> {
  const { values, positionals: rest } = parseCommandArgs(
    args,
    {
      config: { type: 'string', short: 'c' },
      json: { type: 'boolean' },
      ...(accepts.force === true ? { force: { type: 'boolean' as const } } : {}),
    },
    positionals,
  );
  const config = await loadCommandConfig(values.config, ctx);
  if (config === undefined) return 2;
  const tags = await openTagAdmin(config);
  try {
    const force = (values as { force?: boolean }).force === true;
    return await fn(tags, rest, { json: values.json === true, force });
  } catch (error) {
    ctx.stderr.write(`pullwarden: ${error instanceof Error ? error.message : String(error)}\n`);
    return 2;
  } finally {
    await tags.close();
  }
}

const common = [
  'Options:',
  '  -c, --config FILE   Config file (default: $PULLWARDEN_CONFIG, else the embedded defaults);',
  '                      its metadata store (SQLite file or Redis) is the one the proxy uses',
];

export const tagsHistory: Command = {
  name: 'tags history',
  synopsis: 'REF [--config FILE] [--json]',
  summary: 'Print the digests a tag has pointed at (and its pin)',
  help: [...common, '  --json              One JSON object'].join('\n'),
  run: (args, ctx) =>
    withTags(args, ctx, { min: 1, max: 1, names: 'REF' }, async (tags, [input = ''], { json }) => {
      const ref = tags.resolve(input);
      const history = await tags.history(ref);
      const pin = await tags.pin(ref);
      if (json) {
        ctx.stdout.write(`${JSON.stringify({ ref: ref.text, pin: pin ?? null, history })}\n`);
        return 0;
      }
      ctx.stdout.write(`${ref.text}\n`);
      if (history.length === 0) ctx.stdout.write('  (never resolved through this proxy)\n');
      for (const h of history) {
        const mark = pin?.digest === h.digest ? ' (pinned)' : '';
        ctx.stdout.write(
          `  ${new Date(h.firstSeen).toISOString()} … ${new Date(h.lastSeen).toISOString()}  ${h.digest}${mark}\n`,
        );
      }
      if (pin)
        ctx.stdout.write(`  pin: ${pin.digest} (${pin.by}, ${new Date(pin.pinnedAt).toISOString()})\n`);
      return 0;
    }),
};

export const tagsPin: Command = {
  name: 'tags pin',
  synopsis: 'REF DIGEST [--force] [--config FILE] [--json]',
  summary: 'Pin a tag to a digest (accepts a move under tags.immutable or tags.onMove: deny)',
  help: [
    ...common,
    '  --force             Pin without asking the upstream whether it has DIGEST in the repository',
    '  --json              {"ref":…,"pin":…} on stdout',
    '',
    'The upstream is asked first (HEAD of the manifest by digest): a digest it does not have is',
    'refused (exit 1), as is one it cannot be asked about (exit 2), unless --force.',
  ].join('\n'),
  run: (args, ctx) =>
    withTags(
      args,
      ctx,
      { min: 2, max: 2, names: 'REF DIGEST' },
      async (tags, [input = '', d = ''], { json, force }) => {
        const ref: TagRef = tags.resolve(input);
        const digest: Digest = parseDigest(d);
        if (!force) {
          let has: boolean;
          try {
            has = await tags.upstreamHas(ref, digest);
          } catch (error) {
            ctx.stderr.write(
              `pullwarden tags pin: cannot ask ${ref.upstream} whether ${ref.upstream}/${ref.repository} has ${digest}: ${error instanceof Error ? error.message : String(error)}; not pinned (--force pins without asking)\n`,
            );
            return 2;
          }
          if (!has) {
            ctx.stderr.write(
              `pullwarden tags pin: ${ref.upstream}/${ref.repository} has no manifest ${digest} upstream; not pinned (--force pins it anyway)\n`,
            );
            return 1;
          }
        }
        await tags.setPin(ref, digest);
        ctx.stdout.write(
          json
            ? `${JSON.stringify({ ref: ref.text, pin: digest, ...(force ? { forced: true } : {}) })}\n`
            : `${ref.text} pinned to ${digest}${force ? ' (--force: not checked against the upstream)' : ''}\n`,
        );
        return 0;
      },
      { force: true },
    ),
};

export const tagsUnpin: Command = {
  name: 'tags unpin',
  synopsis: 'REF [--config FILE] [--json]',
  summary: 'Remove the pin of a tag (an immutable tag pins its current digest at the next pull)',
  help: [...common, '  --json              {"ref":…,"pin":…} on stdout'].join('\n'),
  run: (args, ctx) =>
    withTags(args, ctx, { min: 1, max: 1, names: 'REF' }, async (tags, [input = ''], { json }) => {
      const ref = tags.resolve(input);
      await tags.unpin(ref);
      ctx.stdout.write(json ? `${JSON.stringify({ ref: ref.text, pin: null })}\n` : `${ref.text} unpinned\n`);
      return 0;
    }),
};
