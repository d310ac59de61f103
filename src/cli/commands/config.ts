import { stringify } from 'yaml';
import { ConfigError, jsonSchema, loadConfig, redactConfig } from '../../config/index.ts';
import type { LoadedConfig } from '../../config/index.ts';
import type { CliContext, Command } from '../types.ts';
import { parseCommandArgs } from './parse.ts';

export const configValidate: Command = {
  name: 'config validate',
  synopsis: 'FILE [--skip-secrets]',
  summary: 'Check a config file: schema, cross-references, secret files and variables',
  help: [
    'Validates FILE as `serve --config FILE` would load it, PULLWARDEN_* overrides included.',
    'Prints "FILE: ok (N upstreams)" and exits 0, or lists every problem and exits 1.',
    '',
    'Options:',
    '  --skip-secrets   Do not read passwordFile files or passwordEnv variables',
    '                   (to check a file on a machine that does not hold the secrets)',
  ].join('\n'),
  async run(args, ctx) {
    const { values, positionals } = parseCommandArgs(
      args,
      { 'skip-secrets': { type: 'boolean' } },
      { min: 1, max: 1, names: 'FILE' },
    );
    const file = positionals[0] ?? '';
    try {
      const config = await loadConfig(file, ctx.env, {
        cwd: ctx.cwd,
        resolveSecrets: values['skip-secrets'] !== true,
      });
      const n = Object.keys(config.upstreams).length;
      ctx.stdout.write(`${file}: ok (${n} upstream${n === 1 ? '' : 's'})\n`);
      return 0;
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      ctx.stderr.write(`${error.message}\n`);
      return 1;
    }
  },
};

export const configSchemaCommand: Command = {
  name: 'config schema',
  synopsis: '',
  summary: 'Print the JSON Schema of the config file',
  help: 'For editors: e.g. `# yaml-language-server: $schema=pullwarden.schema.json` at the top of the file.',
  run(args, ctx) {
    parseCommandArgs(args, {}, { min: 0, max: 0, names: '' });
    ctx.stdout.write(`${JSON.stringify(jsonSchema(), null, 2)}\n`);
    return Promise.resolve(0);
  },
};

export const configShow: Command = {
  name: 'config show',
  synopsis: '[--config FILE]',
  summary: 'Print the effective configuration (defaults filled in, secrets redacted)',
  help: [
    'Loads the configuration as `serve` would and prints it as YAML, durations in milliseconds and',
    'sizes in bytes, paths made absolute, secrets replaced by "[redacted]".',
    '',
    'Options:',
    '  -c, --config FILE   Config file (default: $PULLWARDEN_CONFIG, else the embedded defaults)',
  ].join('\n'),
  async run(args, ctx) {
    const { values } = parseCommandArgs(
      args,
      { config: { type: 'string', short: 'c' } },
      { min: 0, max: 0, names: '' },
    );
    try {
      const config = await loadConfig(configPath(values.config, ctx.env), ctx.env, { cwd: ctx.cwd });
      ctx.stdout.write(stringify(redactConfig(config)));
      return 0;
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      ctx.stderr.write(`${error.message}\n`);
      return 1;
    }
  },
};

/** --config, else $PULLWARDEN_CONFIG, else undefined (embedded defaults). */
export function configPath(flag: string | undefined, env: NodeJS.ProcessEnv): string | undefined {
  if (flag !== undefined) return flag;
  const fromEnv = env['PULLWARDEN_CONFIG'];
  return fromEnv === undefined || fromEnv === '' ? undefined : fromEnv;
}

/**
 * The configuration a command runs on (--config, else $PULLWARDEN_CONFIG, else the embedded defaults),
 * or undefined after printing why it is invalid (the caller exits 2). `command` names the command in
 * the message; `resolveSecrets: false` for commands that never use upstream secrets.
 */
export async function loadCommandConfig(
  flag: string | undefined,
  ctx: CliContext,
  options: { command?: string; resolveSecrets?: boolean } = {},
): Promise<LoadedConfig | undefined> {
  try {
    return await loadConfig(configPath(flag, ctx.env), ctx.env, {
      cwd: ctx.cwd,
      ...(options.resolveSecrets === undefined ? {} : { resolveSecrets: options.resolveSecrets }),
    });
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    const who = options.command === undefined ? 'pullwarden' : `pullwarden ${options.command}`;
    ctx.stderr.write(`${who}: invalid configuration\n${error.message}\n`);
    return undefined;
  }
}
