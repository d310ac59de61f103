import { spawn } from 'node:child_process';
import type { SpawnOptions } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Environment for every third-party client the tests start (containerd, podman, skopeo).
 *
 * The proxy variables point at a closed port so that a client we misconfigured fails fast instead
 * of reaching a public registry; loopback stays direct. Callers add their own variables on top.
 */
export function clientEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return {
    ...process.env,
    HTTPS_PROXY: 'http://127.0.0.1:9',
    HTTP_PROXY: 'http://127.0.0.1:9',
    https_proxy: 'http://127.0.0.1:9',
    http_proxy: 'http://127.0.0.1:9',
    NO_PROXY: '127.0.0.1,localhost,::1',
    no_proxy: '127.0.0.1,localhost,::1',
    ...extra,
  };
}

export interface RunOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Kill the process group and reject after this long. Default 120 s. */
  timeoutMs?: number;
  /** Resolve instead of rejecting when the exit code is not 0. */
  allowFailure?: boolean;
  input?: string;
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Error thrown by {@link run}; carries the command line and both output streams. */
export class CommandError extends Error {
  readonly result: RunResult;
  constructor(message: string, result: RunResult) {
    super(message);
    this.name = 'CommandError';
    this.result = result;
  }
}

function describe(cmd: string, args: readonly string[]): string {
  return [cmd, ...args].map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : JSON.stringify(a))).join(' ');
}

function killGroup(pid: number | undefined, signal: NodeJS.Signals): void {
  if (pid === undefined) return;
  try {
    // Negative pid: the whole process group (the child was spawned detached, so it leads one).
    process.kill(-pid, signal);
  } catch {
    // Already gone.
  }
}

/**
 * Runs a command to completion and returns its output. Rejects with {@link CommandError} (whose
 * message includes stdout and stderr) on a non-zero exit unless `allowFailure`, and on timeout.
 */
export async function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const timeoutMs = opts.timeoutMs ?? 120_000;
  const spawnOpts: SpawnOptions = {
    env: opts.env ?? clientEnv(),
    detached: true,
    stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
  };
  if (opts.cwd !== undefined) spawnOpts.cwd = opts.cwd;
  const child = spawn(cmd, args, spawnOpts);
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout?.on('data', (c: Buffer) => out.push(c));
  child.stderr?.on('data', (c: Buffer) => err.push(c));
  if (opts.input !== undefined) child.stdin?.end(opts.input);
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    killGroup(child.pid, 'SIGKILL');
  }, timeoutMs);
  const result = await new Promise<RunResult>((resolve, reject) => {
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({
        code,
        signal,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
      });
    });
  });
  const line = describe(cmd, args);
  if (timedOut) {
    throw new CommandError(
      `timed out after ${timeoutMs} ms: ${line}\n${result.stdout}\n${result.stderr}`,
      result,
    );
  }
  if (result.code !== 0 && opts.allowFailure !== true) {
    throw new CommandError(
      `exit ${String(result.code ?? result.signal)}: ${line}\n--- stdout\n${result.stdout}\n--- stderr\n${result.stderr}`,
      result,
    );
  }
  return result;
}

export interface Daemon {
  readonly pid: number;
  /** Everything the daemon wrote to stdout and stderr so far, in arrival order per stream. */
  stdout(): string;
  stderr(): string;
  /** Resolves with the exit code (or signal name) once the process has exited. */
  readonly exited: Promise<number | string>;
  /** SIGTERM to the process group, SIGKILL after `graceMs` (default 5 s); resolves when it is gone. */
  stop(graceMs?: number): Promise<void>;
}

export interface DaemonOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

/**
 * Starts a long-running process in its own process group and captures its output in memory.
 * `stop()` signals the whole group, so helpers the daemon forked (containerd shims) go too.
 */
export function startDaemon(cmd: string, args: readonly string[], opts: DaemonOptions = {}): Daemon {
  const spawnOpts: SpawnOptions = {
    env: opts.env ?? clientEnv(),
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  };
  if (opts.cwd !== undefined) spawnOpts.cwd = opts.cwd;
  const child = spawn(cmd, args, spawnOpts);
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout?.on('data', (c: Buffer) => out.push(c));
  child.stderr?.on('data', (c: Buffer) => err.push(c));
  const exited = new Promise<number | string>((resolve) => {
    child.once('error', (e) => {
      err.push(Buffer.from(`\nspawn error: ${e.message}\n`));
      resolve('spawn-error');
    });
    child.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown'));
  });
  let gone = false;
  void exited.then(() => {
    gone = true;
  });
  const pid = child.pid ?? -1;
  return {
    pid,
    stdout: () => Buffer.concat(out).toString('utf8'),
    stderr: () => Buffer.concat(err).toString('utf8'),
    exited,
    async stop(graceMs = 5_000) {
      if (gone) return;
      killGroup(child.pid, 'SIGTERM');
      const timer = setTimeout(() => killGroup(child.pid, 'SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
      // Children of the group leader (shims) may outlive it briefly.
      killGroup(child.pid, 'SIGKILL');
    },
  };
}

/**
 * Polls `check` until it returns a value other than `undefined`/`false`, or throws after
 * `timeoutMs`. Exceptions from `check` count as "not yet"; the last one is reported.
 */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined | false> | T | undefined | false,
  {
    timeoutMs = 15_000,
    intervalMs = 50,
    daemon,
  }: { timeoutMs?: number; intervalMs?: number; daemon?: Daemon } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  let exited: number | string | undefined;
  if (daemon !== undefined) void daemon.exited.then((c) => (exited = c));
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value;
    } catch (e) {
      last = e;
    }
    const tail = daemon === undefined ? '' : `\n--- daemon stderr\n${daemon.stderr().slice(-4000)}`;
    if (exited !== undefined) throw new Error(`${what}: process exited (${exited}) while waiting${tail}`);
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}: ${String(last)}${tail}`);
    }
    await sleep(intervalMs);
  }
}

/** Names of `tools` not found on PATH. */
export function missingTools(tools: readonly string[]): string[] {
  const dirs = (process.env['PATH'] ?? '').split(':').filter((d) => d !== '');
  return tools.filter((t) => !dirs.some((d) => existsSync(join(d, t))));
}

/**
 * Throws an error naming every missing tool (and a missing root) so an e2e suite FAILS with a
 * message that says what to install; nothing is skipped silently. Call it first in `beforeAll`.
 */
export function assertE2ePrerequisites(tools: readonly string[], { needsRoot = false } = {}): void {
  const problems: string[] = [];
  const missing = missingTools(tools);
  if (missing.length > 0) {
    problems.push(`missing on PATH: ${missing.join(', ')} (on Debian 12, \`bash .ci/run\` installs them)`);
  }
  if (needsRoot && process.getuid?.() !== 0) {
    problems.push('must run as root (private containerd and podman stores)');
  }
  if (problems.length > 0) throw new Error(`e2e prerequisites: ${problems.join('; ')}`);
}
