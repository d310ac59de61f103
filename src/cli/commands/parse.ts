import { parseArgs } from 'node:util';
import type { ParseArgsOptionsConfig } from 'node:util';
import { suggest } from '../../config/index.ts';
import { UsageError } from '../types.ts';

/**
 * `util.parseArgs` in strict mode, with its errors turned into a UsageError: an unknown option gets
 * the nearest known one (`--confg` → `--config`), a missing value says which option needs one.
 */
export function parseCommandArgs<T extends ParseArgsOptionsConfig>(
  args: string[],
  options: T,
  positionals: { min: number; max: number; names: string },
) {
  let parsed;
  try {
    parsed = parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (error) {
    throw new UsageError(argsProblem(error, options));
  }
  const count = parsed.positionals.length;
  if (count < positionals.min) throw new UsageError(`missing ${positionals.names}`);
  if (count > positionals.max) {
    throw new UsageError(`unexpected argument "${parsed.positionals[positionals.max] ?? ''}"`);
  }
  return parsed;
}

function argsProblem(error: unknown, options: ParseArgsOptionsConfig): string {
  const { code, message } = error as { code?: string; message: string };
  if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
    const given = /Unknown option '([^']+)'/.exec(message)?.[1] ?? '';
    const known = [
      ...Object.keys(options).map((name) => `--${name}`),
      ...Object.values(options).flatMap((o) => (o.short === undefined ? [] : [`-${o.short}`])),
      '--help',
    ];
    // Compare without dashes, so that "-config" and "--confg" both find "--config".
    const bare = given.replace(/^-+/, '').replace(/=.*$/, '');
    const hit = suggest(
      bare,
      known.filter((k) => k.startsWith('--')).map((k) => k.slice(2)),
    );
    const hint = hit === undefined ? ` (known: ${known.join(', ')})` : ` (did you mean "--${hit}"?)`;
    return `unknown option "${given}"${hint}`;
  }
  if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
    const name = /--([a-z][\w-]*)/.exec(message)?.[1];
    if (message.includes('argument missing') && name !== undefined) return `--${name} needs a value`;
    if (message.includes('does not take an argument') && name !== undefined) {
      return `--${name} takes no value`;
    }
  }
  return message;
}
