import { readFileSync } from 'node:fs';
import { didYouMean, suggest } from '../config/index.ts';
import { commands } from './commands/index.ts';
import type { AppModule, CliContext, Command } from './types.ts';
import { UsageError } from './types.ts';
import { debugWanted, describeError } from './errors.ts';
import { EXAMPLES } from './examples.ts';

export type { AppModule, CliContext, Command, DeploymentHandle } from './types.ts';

const DESCRIPTION = 'pullwarden: pull-through OCI registry proxy that enforces trust at pull time';

/**
 * Run the CLI with `argv` (without node and script) and resolve to the exit code: 0 success, 1 the
 * command failed (e.g. an invalid config file), 2 usage error or failed startup. Only `serve` ends the
 * process itself, after a signal.
 */
export async function main(argv: string[], overrides: Partial<CliContext> = {}): Promise<number> {
  const ctx: CliContext = {
    stdout: process.stdout,
    stderr: process.stderr,
    env: process.env,
    cwd: process.cwd(),
    signals: process,
    exit: (code) => process.exit(code),
    // Lazy: `config` commands must not load Fastify, undici and the stores.
    loadApp: (): Promise<AppModule> => import('../app.ts'),
    ...overrides,
  };
  // --debug anywhere before `--`: stack traces for errors (as LOG_LEVEL=debug).
  const end = argv.includes('--') ? argv.indexOf('--') : argv.length;
  const debugFlag = argv.slice(0, end).includes('--debug');
  if (debugFlag) argv = argv.filter((a, i) => i >= end || a !== '--debug');
  ctx.debug = debugWanted(debugFlag || ctx.debug === true, ctx.env);

  try {
    return await dispatch(argv, ctx);
  } catch (error) {
    // Anything no command caught: still one line (the stack only with --debug).
    ctx.stderr.write(`pullwarden: ${describeError(error, ctx.debug)}\n`);
    return 1;
  }
}

async function dispatch(argv: string[], ctx: CliContext): Promise<number> {
  const [first, ...rest] = argv;
  if (first === undefined) {
    ctx.stderr.write(usage());
    return 2;
  }
  if (first === '-h' || first === '--help') {
    ctx.stdout.write(usage());
    return 0;
  }
  if (first === 'help') return help(rest, ctx);
  if (first === '-V' || first === '--version' || first === 'version') {
    ctx.stdout.write(`${version()}\n`);
    return 0;
  }

  const match = findCommand(argv);
  if (match === undefined) {
    const group = commands.filter((c) => c.name.split(' ')[0] === first);
    if (group.length > 0) {
      const sub = rest[0];
      if (sub === undefined) {
        ctx.stderr.write(usage(group));
      } else {
        const hit = suggest(
          sub,
          group.map((c) => c.name.split(' ').slice(1).join(' ')),
        );
        const hint = hit === undefined ? '' : ` (did you mean "${first} ${hit}"?)`;
        ctx.stderr.write(
          `pullwarden: unknown command "${first} ${sub}"${hint}; see "pullwarden help ${first}"\n`,
        );
      }
    } else {
      const names = [...new Set(commands.map((c) => c.name.split(' ')[0] ?? ''))];
      ctx.stderr.write(
        `pullwarden: unknown command "${first}"${didYouMean(first, names)}; see "pullwarden --help"\n`,
      );
    }
    return 2;
  }

  const { command, args } = match;
  const optionArgs = args.includes('--') ? args.slice(0, args.indexOf('--')) : args;
  if (optionArgs.includes('-h') || optionArgs.includes('--help')) {
    ctx.stdout.write(commandHelp(command));
    return 0;
  }
  try {
    return await command.run(args, ctx);
  } catch (error) {
    if (error instanceof UsageError) {
      ctx.stderr.write(
        `pullwarden ${command.name}: ${error.message}; see "pullwarden ${command.name} --help"\n`,
      );
      return 2;
    }
    ctx.stderr.write(`pullwarden ${command.name}: ${describeError(error, ctx.debug === true)}\n`);
    return 1;
  }
}

/**
 * The process entry point (bin/pullwarden.js, src/cli/run.ts): `main`, plus handlers that turn an
 * error nothing caught (a bug, or a failure after `serve` started) into one line on stderr and exit
 * code 1 instead of Node's stack trace (kept with --debug or LOG_LEVEL=debug).
 */
export async function runCli(argv: string[]): Promise<void> {
  const debug = debugWanted(argv.includes('--debug'), process.env);
  const fatal = (error: unknown) => {
    process.stderr.write(`pullwarden: unexpected error: ${describeError(error, debug)}\n`);
    process.exit(1);
  };
  process.on('uncaughtException', fatal);
  process.on('unhandledRejection', fatal);
  process.exitCode = await main(argv);
}

/** The command whose name is the longest prefix of argv. */
function findCommand(argv: string[]): { command: Command; args: string[] } | undefined {
  let best: { command: Command; args: string[] } | undefined;
  for (const command of commands) {
    const words = command.name.split(' ');
    if (
      words.every((w, i) => argv[i] === w) &&
      (best === undefined || words.length > best.command.name.split(' ').length)
    ) {
      best = { command, args: argv.slice(words.length) };
    }
  }
  return best;
}

function help(topic: string[], ctx: CliContext): number {
  if (topic.length === 0) {
    ctx.stdout.write(usage());
    return 0;
  }
  const match = findCommand(topic);
  if (match !== undefined && match.args.length === 0) {
    ctx.stdout.write(commandHelp(match.command));
    return 0;
  }
  const group = commands.filter((c) => c.name.split(' ')[0] === topic[0]);
  if (group.length > 0 && topic.length === 1) {
    ctx.stdout.write(usage(group));
    return 0;
  }
  ctx.stderr.write(`pullwarden: no help for "${topic.join(' ')}"\n\n${usage()}`);
  return 2;
}

function synopsis(command: Command): string {
  return command.synopsis === '' ? command.name : `${command.name} ${command.synopsis}`;
}

function usage(list: readonly Command[] = commands): string {
  const width = Math.max(...list.map((c) => synopsis(c).length), 'help [COMMAND]'.length) + 3;
  const line = (left: string, right: string) => `  ${left.padEnd(width)}${right}\n`;
  return (
    `${DESCRIPTION}\n\nUsage: pullwarden <command> [options]\n\nCommands:\n` +
    list.map((c) => line(synopsis(c), c.summary)).join('') +
    line('help [COMMAND]', 'Show help for a command') +
    `\nOptions:\n` +
    line('-h, --help', 'Show help') +
    line('-V, --version', 'Print the version') +
    line('--debug', 'Stack traces with errors (also LOG_LEVEL=debug)') +
    `\nEnvironment: PULLWARDEN_CONFIG (config file), PULLWARDEN_LISTEN, PULLWARDEN_STORAGE_DIR,\n` +
    `PULLWARDEN_METADATA_URL, PULLWARDEN_LOG_LEVEL (override the file).\n`
  );
}

function commandHelp(command: Command): string {
  const body = command.help === undefined ? '' : `\n${command.help}\n`;
  const examples = /^Examples?:$/m.test(command.help ?? '') ? [] : (EXAMPLES[command.name] ?? []);
  const tail = examples.length === 0 ? '' : `\nExamples:\n${examples.map((e) => `  ${e}\n`).join('')}`;
  return `Usage: pullwarden ${synopsis(command)}\n\n${command.summary}\n${body}${tail}`;
}

/** The package version; package.json sits two levels above both src/cli and dist/cli. */
export function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
    version?: unknown;
  };
  return typeof pkg.version === 'string' ? pkg.version : 'unknown';
}
