/**
 * Run the CLI in-process (`main` from src/cli/main.ts) with its output captured: the one helper the
 * CLI tests share. Spawned runs (`node src/cli/run.ts …`) stay with `run` from ./proc.ts.
 */
import { PassThrough } from 'node:stream';
import { main } from '../../src/cli/main.ts';
import type { CliContext } from '../../src/cli/main.ts';

/** What one in-process CLI run printed and returned. */
export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Everything written to `stream` so far. */
export function captured(stream: PassThrough): () => string {
  let text = '';
  stream.on('data', (chunk: Buffer) => (text += chunk.toString()));
  return () => text;
}

/**
 * `pullwarden <argv>` in this process, in `cwd`, with an empty environment unless `overrides` gives
 * one; stdout and stderr are captured, never the terminal's.
 */
export async function runCli(
  argv: string[],
  cwd: string,
  overrides: Partial<Omit<CliContext, 'stdout' | 'stderr'>> = {},
): Promise<CliRun> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const out = captured(stdout);
  const err = captured(stderr);
  const code = await main(argv, { env: {}, cwd, ...overrides, stdout, stderr });
  return { code, stdout: out(), stderr: err() };
}
