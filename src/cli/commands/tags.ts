import { pino } from 'pino';
import type { LoadedConfig } from '../../config/index.ts';
import { canonicalHost } from '../../http/index.ts';
import { openMetadataStore } from '../../metadata/index.ts';
import {
  defaultManifestAccept,
  isRegistryError,
  normalizeRepository,
  parseDigest,
  parseImageReference,
  RegistryError,
} from '../../oci/index.ts';
import type { Digest } from '../../oci/index.ts';
import { TagGuard } from '../../service/index.ts';
import { UndiciUpstream } from '../../upstream/index.ts';
import type { CliContext, Command } from '../types.ts';
import { loadCommandConfig } from './config.ts';
import { parseCommandArgs } from './parse.ts';

interface TagRef {
  upstream: string;
  repository: string;
  tag: string;
  text: string;
}

/** `<host>/<repository>:<tag>` against the configured upstreams (and their aliases). */
function tagRef(config: LoadedConfig, input: string): TagRef {
  const ref = parseImageReference(input, config.defaultUpstream ?? 'docker.io');
  const host = canonicalHost(ref.host);
  const upstream =
    host in config.upstreams
      ? host
      : Object.entries(config.upstreams).find(([, u]) => u.aliases.includes(host))?.[0];
  if (upstream === undefined)
    throw new RegistryError('DENIED', `upstream registry "${host}" is not configured`);
  if (ref.tag === undefined) throw new RegistryError('MANIFEST_INVALID', `${input}: a tag is needed`);
  const repository = normalizeRepository(upstream, ref.repository);
  return { upstream, repository, tag: ref.tag, text: `${upstream}/${repository}:${ref.tag}` };
}

/** Run `fn` with a TagGuard on the configured metadata store (the one the proxy shares). */
async function withTags(
  args: string[],
  ctx: CliContext,
  positionals: { min: number; max: number; names: string },
  fn: (
    guard: TagGuard,
    config: LoadedConfig,
    positionals: string[],
    flags: { json: boolean; force: boolean },
  ) => Promise<number>,
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
  const options: Parameters<typeof openMetadataStore>[0] = {
    url: config.metadata.url,
    namespace: config.metadata.namespace,
  };
  if (config.metadata.password !== undefined) options.password = config.metadata.password;
  const metadata = await openMetadataStore(options);
  try {
    const guard = new TagGuard({ metadata, logger: pino({ level: 'silent' }) });
    const force = (values as { force?: boolean }).force === true;
    return await fn(guard, config, rest, { json: values.json === true, force });
  } catch (error) {
    ctx.stderr.write(`pullwarden: ${error instanceof Error ? error.message : String(error)}\n`);
    return 2;
  } finally {
    await metadata.close();
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
    withTags(args, ctx, { min: 1, max: 1, names: 'REF' }, async (guard, config, [input = ''], { json }) => {
      const ref = tagRef(config, input);
      const history = await guard.history(ref.upstream, ref.repository, ref.tag);
      const pin = await guard.pin(ref.upstream, ref.repository, ref.tag);
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

/**
 * Whether the upstream has `digest` in the repository (HEAD of the manifest by digest): a pin to a
 * digest that does not exist there would refuse or break every pull of the tag. Throws when the
 * upstream cannot answer (then nothing is pinned either).
 */
async function upstreamHas(config: LoadedConfig, ref: TagRef, digest: Digest): Promise<boolean> {
  const upstreamConfig = config.upstreams[ref.upstream];
  if (upstreamConfig === undefined)
    throw new RegistryError('DENIED', `upstream ${ref.upstream} is not configured`);
  const upstream = new UndiciUpstream({
    host: ref.upstream,
    config: upstreamConfig,
    maxManifestBytes: config.server.maxManifestBytes,
  });
  try {
    const head = await upstream.headManifest(ref.repository, digest, { accept: defaultManifestAccept });
    return head.digest === digest;
  } catch (error) {
    if (isRegistryError(error) && (error.code === 'MANIFEST_UNKNOWN' || error.code === 'NAME_UNKNOWN')) {
      return false;
    }
    throw error;
  } finally {
    await upstream.close();
  }
}

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
      async (guard, config, [input = '', d = ''], { json, force }) => {
        const ref = tagRef(config, input);
        const digest: Digest = parseDigest(d);
        if (!force) {
          let has: boolean;
          try {
            has = await upstreamHas(config, ref, digest);
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
        await guard.setPin(ref.upstream, ref.repository, ref.tag, digest);
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
    withTags(args, ctx, { min: 1, max: 1, names: 'REF' }, async (guard, config, [input = ''], json) => {
      const ref = tagRef(config, input);
      await guard.unpin(ref.upstream, ref.repository, ref.tag);
      ctx.stdout.write(json ? `${JSON.stringify({ ref: ref.text, pin: null })}\n` : `${ref.text} unpinned\n`);
      return 0;
    }),
};
