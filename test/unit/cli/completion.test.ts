import { execFile, execFileSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { commandFlags } from '../../../src/cli/commands/completion.ts';
import { commands } from '../../../src/cli/commands/index.ts';
import { runCli } from '../../support/cli.ts';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const execFileP = promisify(execFile);

const run = (argv: string[]) => runCli(argv, tmpdir());

/** Which shells exist here (zsh and fish are optional). */
function has(shell: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${shell}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

describe('the command table', () => {
  it('shows an example in every command’s --help', async () => {
    for (const command of commands) {
      const help = await run([...command.name.split(' '), '--help']);
      expect(help.code, command.name).toBe(0);
      expect(help.stdout, command.name).toMatch(/\nExamples?:\n {2}(?:pullwarden|source|PULLWARDEN_)/);
    }
  });

  it('documents exactly the options each command’s parser accepts', async () => {
    for (const command of commands) {
      // An option no command has: the parser's answer lists the options it knows.
      const result = await run([...command.name.split(' '), '--zzzzzzzzzzzzzzzzzz']);
      expect(result.code, command.name).toBe(2);
      const known = /\(known: ([^)]*)\)/.exec(result.stderr)?.[1]?.split(', ') ?? [];
      const documented = commandFlags(command).flatMap((f) =>
        f.short === undefined ? [f.long] : [f.long, f.short],
      );
      expect(new Set(known), command.name).toEqual(new Set([...documented, '--help']));
    }
  });
});

describe('pullwarden completion', () => {
  let dir: string;
  let script: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pw-completion-'));
    const { stdout } = await execFileP(
      process.execPath,
      [join(root, 'src/cli/run.ts'), 'completion', 'bash'],
      {
        env: {},
      },
    );
    script = join(dir, 'completion.bash');
    await writeFile(script, stdout);
    await writeFile(join(dir, 'pullwarden.yaml'), 'upstreams: { ghcr.io: {} }\n');
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** What bash completes for the words typed so far (the last one being completed). */
  async function complete(line: string): Promise<string[]> {
    const words = line.split(' ');
    const program = [
      `source ${JSON.stringify(script)}`,
      `COMP_WORDS=(${words.map((w) => JSON.stringify(w)).join(' ')})`,
      `COMP_CWORD=${words.length - 1}`,
      '_pullwarden',
      'printf "%s\\n" "${COMPREPLY[@]}"',
    ].join('\n');
    const { stdout } = await execFileP('bash', ['-c', program], { cwd: dir });
    return stdout.split('\n').filter((l) => l !== '');
  }

  it('bash: loads and completes commands, subcommands, options and files', async () => {
    expect(await complete('pullwarden con')).toEqual(['config']);
    expect(await complete('pullwarden config ')).toEqual(['validate', 'schema', 'show']);
    expect(await complete('pullwarden config validate --sk')).toEqual(['--skip-secrets', '--skip-files']);
    expect(await complete('pullwarden serve --config pull')).toEqual(['pullwarden.yaml']);
    expect(await complete('pullwarden audit verify --ex')).toEqual(['--expect-head']);
    expect(await complete('pullwarden help ta')).toEqual(['tags']);
    expect(await complete('pullwarden ')).toEqual(
      expect.arrayContaining(['serve', 'check', 'config', 'audit', 'doctor', 'completion', 'help', '--help']),
    );
  });

  it('bash: the script is valid bash', async () => {
    await expect(execFileP('bash', ['-n', script])).resolves.toBeDefined();
  });

  it('zsh and fish: scripts for every command and option (syntax-checked where the shell exists)', async () => {
    const zsh = await run(['completion', 'zsh']);
    const fish = await run(['completion', 'fish']);
    expect(zsh.code).toBe(0);
    expect(fish.code).toBe(0);
    expect(zsh.stdout.startsWith('#compdef pullwarden\n')).toBe(true);
    expect(zsh.stdout).toContain('compdef _pullwarden pullwarden');
    for (const command of commands) {
      expect(zsh.stdout, command.name).toContain(`'${command.name}') flags=(`);
      const [first = '', ...rest] = command.name.split(' ');
      for (const flag of commandFlags(command)) {
        expect(zsh.stdout, `${command.name} ${flag.long}`).toContain(`'${flag.long}'`);
        const cond =
          rest.length === 0
            ? `__fish_seen_subcommand_from ${first}'`
            : `__fish_seen_subcommand_from ${first}; and __fish_seen_subcommand_from ${rest.join(' ')}'`;
        expect(fish.stdout, `${command.name} ${flag.long}`).toMatch(
          new RegExp(`-n '${cond.replaceAll(/[.*+?^${}()|[\]\\]/g, '\\$&')} -l ${flag.long.slice(2)}\\b`),
        );
      }
    }
    for (const [shell, text] of [
      ['zsh', zsh.stdout],
      ['fish', fish.stdout],
    ] as const) {
      if (!has(shell)) {
        console.log(`${shell} is not installed: structure checked, syntax not`);
        continue;
      }
      const file = join(dir, `completion.${shell}`);
      await writeFile(file, text);
      await expect(execFileP(shell, ['-n', file])).resolves.toBeDefined();
    }
  });

  it('refuses a shell it does not know', async () => {
    const result = await run(['completion', 'powershell']);
    expect(result).toMatchObject({ code: 2 });
    expect(result.stderr).toContain('unknown shell "powershell" (bash, zsh or fish)');
  });
});
