import type { Command } from '../types.ts';
import { UsageError } from '../types.ts';
import { parseCommandArgs } from './parse.ts';

/** One option of a command, as its help documents it. */
export interface CommandFlag {
  /** `--config` */
  long: string;
  /** `-c`, when there is a short form. */
  short?: string;
  /** The value's placeholder (`FILE`), when the option takes one. */
  value?: string;
  description: string;
}

const FLAG_LINE = /^ {2,}(?:-([A-Za-z]), )?--([a-z][\w-]*)(?: ([A-Z][A-Z0-9_[\]:]*))?(?: {2,}(.*))?$/;

/**
 * The options a command's help documents under "Options:" (`  -c, --config FILE   Config file`).
 * The help is the command table's record of its flags; a test checks it against what each command's
 * parser accepts, so completion and help cannot drift from the code.
 */
export function commandFlags(command: Command): CommandFlag[] {
  const flags: CommandFlag[] = [];
  for (const line of (command.help ?? '').split('\n')) {
    const m = FLAG_LINE.exec(line);
    if (m === null) continue;
    const [, short, long, value, description] = m;
    flags.push({
      long: `--${long ?? ''}`,
      ...(short === undefined ? {} : { short: `-${short}` }),
      ...(value === undefined ? {} : { value }),
      description: (description ?? '').trim(),
    });
  }
  return flags;
}

const GLOBAL_FLAGS = ['--help', '--version', '--debug'];
const SHELLS = ['bash', 'zsh', 'fish'] as const;
type Shell = (typeof SHELLS)[number];

export const completion: Command = {
  name: 'completion',
  synopsis: 'bash|zsh|fish',
  summary: 'Print a shell completion script for commands and their options',
  help: [
    'Prints a completion script generated from the command table: command and subcommand names,',
    'each command’s options, and file names after options that take a FILE or DIR.',
    '',
    'Examples:',
    '  source <(pullwarden completion bash)                     # bash, this shell',
    '  pullwarden completion bash > /etc/bash_completion.d/pullwarden',
    '  pullwarden completion zsh > "${fpath[1]}/_pullwarden"    # zsh, then restart it',
    '  pullwarden completion fish > ~/.config/fish/completions/pullwarden.fish',
  ].join('\n'),
  async run(args, ctx) {
    const { positionals } = parseCommandArgs(
      args,
      {},
      { min: 1, max: 1, names: 'SHELL (bash, zsh or fish)' },
    );
    const shell = positionals[0] as Shell;
    if (!SHELLS.includes(shell)) throw new UsageError(`unknown shell "${shell}" (bash, zsh or fish)`);
    // Imported here: the table lists this command (a static import would be a cycle).
    const { commands: table } = await import('./index.ts');
    ctx.stdout.write(shell === 'bash' ? bash(table) : shell === 'zsh' ? zsh(table) : fish(table));
    return 0;
  },
};

/** Top-level words, and the subcommands of each group (`config` → validate, schema, show). */
function tree(table: readonly Command[]): { top: string[]; groups: Map<string, string[]> } {
  const top: string[] = [];
  const groups = new Map<string, string[]>();
  for (const c of table) {
    const [first = '', ...rest] = c.name.split(' ');
    if (!top.includes(first)) top.push(first);
    if (rest.length > 0) groups.set(first, [...(groups.get(first) ?? []), rest.join(' ')]);
  }
  return { top: [...top, 'help'], groups };
}

function words(flags: CommandFlag[], valued: boolean): string[] {
  return flags
    .filter((f) => !valued || f.value !== undefined)
    .flatMap((f) => (f.short === undefined ? [f.long] : [f.long, f.short]));
}

const q = (s: string) => `'${s.replaceAll("'", "'\\''")}'`;

function bash(table: readonly Command[]): string {
  const { top, groups } = tree(table);
  const cases = table
    .map((c) => {
      const flags = commandFlags(c);
      return `    ${q(c.name)}) flags=${q([...words(flags, false), '--help'].join(' '))}; valued=${q(words(flags, true).join(' '))} ;;`;
    })
    .join('\n');
  const groupCases = [...groups]
    .map(([g, subs]) => `    ${q(g)}) COMPREPLY=($(compgen -W ${q(subs.join(' '))} -- "$cur")); return ;;`)
    .join('\n');
  return `# bash completion for pullwarden (pullwarden completion bash)
_pullwarden() {
  local cur prev cmd flags valued
  cur="\${COMP_WORDS[COMP_CWORD]}"
  prev="\${COMP_WORDS[COMP_CWORD-1]}"
  if [[ $COMP_CWORD -eq 1 ]]; then
    COMPREPLY=($(compgen -W ${q([...top, ...GLOBAL_FLAGS].join(' '))} -- "$cur"))
    return
  fi
  cmd="\${COMP_WORDS[1]}"
  case "$cmd" in
    ${[...groups.keys()].map(q).join('|')})
      if [[ $COMP_CWORD -eq 2 ]]; then
        case "$cmd" in
${groupCases}
        esac
      fi
      cmd="$cmd \${COMP_WORDS[2]}" ;;
    help)
      COMPREPLY=($(compgen -W ${q(top.filter((t) => t !== 'help').join(' '))} -- "$cur")); return ;;
  esac
  case "$cmd" in
${cases}
    *) return ;;
  esac
  # After an option that takes a FILE, DIR, URL…: complete file names.
  if [[ " $valued " == *" $prev "* ]]; then
    COMPREPLY=($(compgen -f -- "$cur"))
    return
  fi
  if [[ "$cur" == -* ]]; then
    COMPREPLY=($(compgen -W "$flags --debug" -- "$cur"))
  else
    COMPREPLY=($(compgen -f -- "$cur"))
  fi
}
complete -o filenames -F _pullwarden pullwarden
`;
}

function zsh(table: readonly Command[]): string {
  const { top, groups } = tree(table);
  const summaries = new Map(table.map((c) => [c.name, c.summary]));
  const described = (name: string, word: string) =>
    q(
      `${word}:${(summaries.get(name) ?? (name === 'help' ? 'Show help for a command' : `${name} commands`)).replaceAll(':', '\\:')}`,
    );
  const cases = table
    .map((c) => {
      const flags = commandFlags(c);
      return `    ${q(c.name)}) flags=(${[...words(flags, false), '--help'].map(q).join(' ')}); valued=(${words(flags, true).map(q).join(' ')}) ;;`;
    })
    .join('\n');
  const groupCases = [...groups]
    .map(([g, subs]) => `        ${q(g)}) subs=(${subs.map((s) => described(`${g} ${s}`, s)).join(' ')}) ;;`)
    .join('\n');
  return `#compdef pullwarden
# zsh completion for pullwarden (pullwarden completion zsh)
_pullwarden() {
  local cmd
  local -a tops subs flags valued
  if (( CURRENT == 2 )); then
    tops=(${top.map((t) => described(t, t)).join(' ')})
    _describe -t commands 'pullwarden command' tops
    compadd -- ${GLOBAL_FLAGS.join(' ')}
    return
  fi
  cmd=$words[2]
  case $cmd in
    ${[...groups.keys()].join('|')})
      if (( CURRENT == 3 )); then
        case $cmd in
${groupCases}
        esac
        _describe -t commands "pullwarden $cmd command" subs
        return
      fi
      cmd="$cmd $words[3]" ;;
  esac
  case $cmd in
${cases}
    *) _files; return ;;
  esac
  if (( \${valued[(Ie)$words[CURRENT-1]]} )); then
    _files
  elif [[ $PREFIX == -* ]]; then
    compadd -- $flags --debug
  else
    _files
  fi
}
if [[ $funcstack[1] == _pullwarden ]]; then
  _pullwarden "$@"
else
  compdef _pullwarden pullwarden
fi
`;
}

function fish(table: readonly Command[]): string {
  const { top, groups } = tree(table);
  const lines = ['# fish completion for pullwarden (pullwarden completion fish)'];
  const summaries = new Map(table.map((c) => [c.name, c.summary]));
  lines.push(`complete -c pullwarden -n __fish_use_subcommand -l help -d 'Show help'`);
  lines.push(`complete -c pullwarden -n __fish_use_subcommand -l version -d 'Print the version'`);
  for (const t of top) {
    const d = summaries.get(t) ?? (t === 'help' ? 'Show help for a command' : `${t} commands`);
    lines.push(`complete -c pullwarden -f -n __fish_use_subcommand -a ${q(t)} -d ${q(d)}`);
  }
  for (const [g, subs] of groups) {
    const none = `not __fish_seen_subcommand_from ${subs.join(' ')}`;
    for (const s of subs) {
      lines.push(
        `complete -c pullwarden -f -n ${q(`__fish_seen_subcommand_from ${g}; and ${none}`)} -a ${q(s)} -d ${q(summaries.get(`${g} ${s}`) ?? '')}`,
      );
    }
  }
  for (const c of table) {
    const [first = '', ...rest] = c.name.split(' ');
    const cond =
      rest.length === 0
        ? `__fish_seen_subcommand_from ${first}`
        : `__fish_seen_subcommand_from ${first}; and __fish_seen_subcommand_from ${rest.join(' ')}`;
    for (const f of [...commandFlags(c), { long: '--debug', description: 'Stack traces with errors' }]) {
      const short = 'short' in f && f.short !== undefined ? ` -s ${f.short.slice(1)}` : '';
      const value = 'value' in f && f.value !== undefined ? ' -r -F' : '';
      lines.push(
        `complete -c pullwarden -n ${q(cond)} -l ${f.long.slice(2)}${short}${value} -d ${q(f.description)}`,
      );
    }
  }
  return `${lines.join('\n')}\n`;
}
