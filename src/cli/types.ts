import type { Writable } from 'node:stream';
import type { CheckResult, DeploymentHandle } from '../app.ts';
import type { LoadedConfig } from '../config/index.ts';

export type { DeploymentHandle } from '../app.ts';

/** The composition root (src/app.ts), loaded lazily so that `config` commands do not start anything. */
export interface AppModule {
  startServer(config: LoadedConfig): Promise<DeploymentHandle>;
  /** `server.workers`-aware start (one process, cluster primary or worker); startServer if absent. */
  startDeployment?(config: LoadedConfig): Promise<DeploymentHandle>;
  checkImage(config: LoadedConfig, reference: string): Promise<CheckResult>;
}

/** What `pullwarden check` learns about an image reference. */
export type { CheckResult } from '../app.ts';

/** Where the process delivers signals; `process` in production, an EventEmitter in tests. */
export interface SignalSource {
  on(signal: NodeJS.Signals, listener: (signal: NodeJS.Signals) => void): unknown;
  off(signal: NodeJS.Signals, listener: (signal: NodeJS.Signals) => void): unknown;
}

/** Everything a command touches outside its arguments, so that tests can replace it. */
export interface CliContext {
  stdout: Writable;
  stderr: Writable;
  env: NodeJS.ProcessEnv;
  cwd: string;
  signals: SignalSource;
  /** Ends the process (serve only, after shutdown). */
  exit: (code: number) => void;
  loadApp: () => Promise<AppModule>;
  /** Print stack traces with errors (`--debug`, LOG_LEVEL=debug); set by `main`. */
  debug?: boolean;
}

/** One CLI command. Multi-word names ("config validate") form groups in the help. */
export interface Command {
  /** The words that select the command, e.g. "config validate". */
  name: string;
  /** Argument synopsis after the name, e.g. "FILE [--skip-secrets]". */
  synopsis: string;
  /** One line for the command list. */
  summary: string;
  /** Longer help: options and notes, shown by `pullwarden help <command>` and `<command> --help`. */
  help?: string;
  /** Runs the command with the arguments after its name; resolves to the exit code. */
  run(args: string[], ctx: CliContext): Promise<number>;
}

/** A mistake in how the command was called: printed with the command's usage, exit code 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}
