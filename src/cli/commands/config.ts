import { stringify } from 'yaml';
import {
  ConfigError,
  EMBEDDED_SOURCE,
  effectiveConfigInput,
  jsonSchema,
  loadConfig,
} from '../../config/index.ts';
import type { LoadedConfig } from '../../config/index.ts';
import type { CliContext, Command } from '../types.ts';
import { UsageError } from '../types.ts';
import { fileParsers } from '../../app/tools.ts';
import { parseCommandArgs } from './parse.ts';

export const configValidate: Command = {
  name: 'config validate',
  synopsis: '[FILE | --config FILE] [--skip-secrets] [--skip-files]',
  summary: 'Check a config file: schema, cross-references, files, secrets',
  help: [
    'Validates FILE as `serve --config FILE` would load it, PULLWARDEN_* overrides included, and',
    'reports everything serve would refuse in one run: schema, references between sections (keys',
    'and trust roots policies name, defaultUpstream), and every file the config names (trust keys,',
    'trusted_root.json, KEV catalog, htpasswd, TLS certificate and key, CA bundles, secret files,',
    'directories). Each problem is one line: FILE:LINE:COL: key.path: what is expected.',
    'Prints "FILE: ok (N upstreams)" and exits 0, or lists every problem and exits 1.',
    '',
    'Options:',
    '  -c, --config FILE   The file (same as the FILE argument; default: $PULLWARDEN_CONFIG)',
    '  --skip-secrets      Do not read passwordFile/tokenFile files or passwordEnv/tokenEnv variables',
    '  --skip-files        Do not check the other files and directories the config names',
    '                      (both: to check a file on a machine that does not hold them, e.g. CI)',
    '',
    'Examples:',
    '  pullwarden config validate /etc/pullwarden/pullwarden.yaml',
    '  pullwarden config validate --config pullwarden.yaml --skip-secrets --skip-files',
  ].join('\n'),
  async run(args, ctx) {
    const { values, positionals } = parseCommandArgs(
      args,
      {
        config: { type: 'string', short: 'c' },
        'skip-secrets': { type: 'boolean' },
        'skip-files': { type: 'boolean' },
      },
      { min: 0, max: 1, names: 'FILE' },
    );
    const file = fileArgument(positionals[0], values.config, ctx.env);
    if (file === undefined) throw new UsageError('missing FILE (or --config FILE)');
    try {
      const config = await loadConfig(file, ctx.env, {
        cwd: ctx.cwd,
        resolveSecrets: values['skip-secrets'] !== true,
        ...(values['skip-files'] === true ? {} : { files: fileParsers }),
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
  synopsis: '[FILE | --config FILE]',
  summary: 'Print the effective configuration as a config file (defaults filled in, secrets redacted)',
  help: [
    'Loads the configuration as `serve` would (FILE, else $PULLWARDEN_CONFIG, else the embedded',
    'defaults; PULLWARDEN_* overrides applied) and prints it as a config file that',
    '`config validate` accepts and that means the same: every default filled in, durations and',
    'sizes in unit form ("30s", "50GiB"), relative paths made absolute, secrets "[redacted]".',
    '',
    'Options:',
    '  -c, --config FILE   Config file (same as the FILE argument)',
    '',
    'Examples:',
    '  pullwarden config show pullwarden.yaml',
    '  pullwarden config show > effective.yaml && pullwarden config validate effective.yaml',
  ].join('\n'),
  async run(args, ctx) {
    const { values, positionals } = parseCommandArgs(
      args,
      { config: { type: 'string', short: 'c' } },
      { min: 0, max: 1, names: '' },
    );
    const file = fileArgument(positionals[0], values.config, ctx.env);
    try {
      // Secrets are never printed, so they need not be readable here (show works on a CI machine).
      const effective = await effectiveConfigInput(file, ctx.env, { cwd: ctx.cwd, resolveSecrets: false });
      const from = file === undefined ? EMBEDDED_SOURCE : file;
      ctx.stdout.write(`# Effective configuration of ${from} (pullwarden config show)\n`);
      ctx.stdout.write(stringify(effective, { lineWidth: 0 }));
      return 0;
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      ctx.stderr.write(`${error.message}\n`);
      return 1;
    }
  },
};

/**
 * The config file of a command that takes it as an argument or as --config (not both, unless the
 * same), else $PULLWARDEN_CONFIG.
 */
function fileArgument(
  positional: string | undefined,
  flag: string | undefined,
  env: NodeJS.ProcessEnv,
): string | undefined {
  if (positional !== undefined && flag !== undefined && positional !== flag) {
    throw new UsageError(`two config files given ("${positional}" and --config "${flag}"): name one`);
  }
  return configPath(positional ?? flag, env);
}

/** --config, else $PULLWARDEN_CONFIG, else undefined (embedded defaults). */
export function configPath(flag: string | undefined, env: NodeJS.ProcessEnv): string | undefined {
  if (flag !== undefined) return flag;
  const fromEnv = env['PULLWARDEN_CONFIG'];
  return fromEnv === undefined || fromEnv === '' ? undefined : fromEnv;
}

/**
 * The configuration a command runs on (--config, else $PULLWARDEN_CONFIG, else the embedded defaults),
 * or undefined after printing why it is invalid (the caller exits 2). `command` names the command in
 * the message; `resolveSecrets: false` for commands that never use upstream secrets; `checkFiles` to
 * check every file the config names first (serve: all problems at once, before anything starts).
 */
export async function loadCommandConfig(
  flag: string | undefined,
  ctx: CliContext,
  options: { command?: string; resolveSecrets?: boolean; checkFiles?: boolean } = {},
): Promise<LoadedConfig | undefined> {
  try {
    return await loadConfig(configPath(flag, ctx.env), ctx.env, {
      cwd: ctx.cwd,
      ...(options.resolveSecrets === undefined ? {} : { resolveSecrets: options.resolveSecrets }),
      ...(options.checkFiles === true ? { files: fileParsers } : {}),
    });
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    const who = options.command === undefined ? 'pullwarden' : `pullwarden ${options.command}`;
    ctx.stderr.write(`${who}: invalid configuration\n${error.message}\n`);
    return undefined;
  }
}
