/**
 * Errors as a person reads them on a terminal: one line, what went wrong and how to fix it. Stack
 * traces (with every `cause`) only when asked for, with `--debug` or a debug log level.
 */

/** What to do about common system errors, by errno code. */
const FIXES: Record<string, (e: NodeJS.ErrnoException & { address?: string; port?: number }) => string> = {
  EADDRINUSE: (e) =>
    `another process listens on ${where(e)}: stop it, or set another address (listen, PULLWARDEN_LISTEN)`,
  EADDRNOTAVAIL: (e) =>
    `${where(e)} is not an address of this machine: use 0.0.0.0, [::] or one of its addresses (listen)`,
  EACCES: (e) =>
    e.syscall === 'listen' || e.syscall === 'bind'
      ? `ports below 1024 need root or CAP_NET_BIND_SERVICE: choose a port above 1024 (listen)`
      : `permission denied${e.path === undefined ? '' : ` on ${e.path}`}: check its owner and mode`,
  EPERM: (e) =>
    `operation not permitted${e.path === undefined ? '' : ` on ${e.path}`}: check its owner and mode`,
  ENOENT: (e) => `no such file or directory${e.path === undefined ? '' : `: ${e.path}`}`,
  ENOSPC: () => 'no space left on the device: free space or move storage.dir',
  EROFS: (e) => `read-only file system${e.path === undefined ? '' : ` at ${e.path}`}: move storage.dir`,
  ECONNREFUSED: (e) => `connection refused by ${where(e)}: is the server running and reachable?`,
};

function where(e: { address?: string; port?: number }): string {
  if (e.address === undefined) return 'that address';
  return e.port === undefined ? e.address : `${e.address}:${e.port}`;
}

/** Is a stack trace wanted: `--debug`, or LOG_LEVEL / PULLWARDEN_LOG_LEVEL debug or trace. */
export function debugWanted(flag: boolean, env: NodeJS.ProcessEnv): boolean {
  if (flag) return true;
  return [env['LOG_LEVEL'], env['PULLWARDEN_LOG_LEVEL']].some((l) => l === 'debug' || l === 'trace');
}

/**
 * The message of `error` as one line with its fix (a known errno code gets one), then, with
 * `debug`, the stack of the error and of each cause. Without `debug` a hint says how to get it.
 */
export function describeError(error: unknown, debug: boolean): string {
  const line = oneLine(error);
  if (!debug) {
    // Errors we made ourselves already say what to do; others may need the stack to understand.
    return isKnown(error) ? line : `${line} (run with --debug for details)`;
  }
  const stacks: string[] = [];
  let e: unknown = error;
  for (let depth = 0; e !== undefined && depth < 5; depth++) {
    stacks.push(e instanceof Error ? (e.stack ?? e.message) : typeof e === 'string' ? e : JSON.stringify(e));
    e = e instanceof Error ? e.cause : undefined;
  }
  return `${line}\n${stacks.join('\ncaused by: ')}`;
}

function oneLine(error: unknown): string {
  const e = error as (NodeJS.ErrnoException & { address?: string; port?: number }) | undefined;
  const code = e?.code;
  const fix = code === undefined ? undefined : FIXES[code];
  if (fix !== undefined && e !== undefined) return fix(e);
  const message = error instanceof Error ? error.message : String(error);
  return message.replace(/\s*\n\s*/g, '; ');
}

function isKnown(error: unknown): boolean {
  const code = (error as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' && Object.hasOwn(FIXES, code);
}
