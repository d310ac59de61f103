import type { Logger } from 'pino';
import { createLogger } from '../../app/tools.ts';
import type { LoadedConfig } from '../../config/index.ts';
import type { CliContext, Command, DeploymentHandle } from '../types.ts';
import { loadCommandConfig } from './config.ts';
import { parseCommandArgs } from './parse.ts';
import { describeError } from '../errors.ts';

/** Extra time, beyond server.shutdownGrace, before a stuck shutdown is abandoned. */
const SHUTDOWN_SLACK_MS = 5_000;

export const serve: Command = {
  name: 'serve',
  synopsis: '[--config FILE]',
  summary: 'Run the registry proxy',
  help: [
    'Options:',
    '  -c, --config FILE   Config file (default: $PULLWARDEN_CONFIG, else the embedded defaults:',
    '                      docker.io, ghcr.io, quay.io, registry.k8s.io, gcr.io, public.ecr.aws)',
    '',
    'SIGHUP (and any change to the config file) reloads trust, policies and decisions; a broken file',
    'keeps the last good policy and logs why.',
    'SIGTERM or SIGINT shuts down gracefully (at most server.shutdownGrace); a second signal exits',
    'at once. Exit codes: 0 after a graceful shutdown, 1 after a forced one, 2 if startup failed.',
  ].join('\n'),
  async run(args, ctx) {
    const { values } = parseCommandArgs(
      args,
      { config: { type: 'string', short: 'c' } },
      { min: 0, max: 0, names: '' },
    );

    const config = await loadCommandConfig(values.config, ctx, { checkFiles: true });
    if (config === undefined) return 2;

    let handle: DeploymentHandle;
    try {
      const app = await ctx.loadApp();
      handle = await (app.startDeployment ?? app.startServer)(config);
    } catch (error) {
      ctx.stderr.write(`pullwarden: cannot start: ${describeError(error, ctx.debug === true)}\n`);
      return 2;
    }

    if (handle.managed !== undefined) {
      // A cluster worker: its primary handles the signals and tells it when to shut down.
      const code = await handle.managed;
      ctx.exit(code);
      return code;
    }
    // The app logs "listening"; this logger covers only the process side (signals, shutdown).
    const log = createLogger(config.log.level, config.log.timestamp, ctx.stdout).child({ module: 'cli' });
    return waitForShutdown(handle, config, ctx, log);
  },
};

/**
 * Resolve with the exit code once a signal has shut the server down, and end the process: stores and
 * client pools may hold handles that would otherwise keep it alive.
 */
function waitForShutdown(
  handle: DeploymentHandle,
  config: LoadedConfig,
  ctx: CliContext,
  log: Logger,
): Promise<number> {
  return new Promise<number>((resolveCode) => {
    let closing = false;
    let timer: NodeJS.Timeout | undefined;

    let done = false;

    const finish = (code: number) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      ctx.signals.off('SIGTERM', onSignal);
      ctx.signals.off('SIGINT', onSignal);
      ctx.signals.off('SIGHUP', onHangup);
      resolveCode(code);
      ctx.exit(code);
    };

    function onHangup(): void {
      log.info('SIGHUP: reloading the policy from the config file');
      void handle.reload?.();
    }

    function onSignal(signal: NodeJS.Signals): void {
      if (closing) {
        log.warn({ signal }, 'second signal, exiting without waiting for requests in flight');
        finish(1);
        return;
      }
      closing = true;
      log.info({ signal, graceMs: config.server.shutdownGrace }, 'shutting down');
      timer = setTimeout(() => {
        log.error('shutdown did not finish in time, exiting');
        finish(1);
      }, config.server.shutdownGrace + SHUTDOWN_SLACK_MS);
      timer.unref();
      handle.close().then(
        () => {
          log.info('shutdown complete');
          finish(0);
        },
        (error: unknown) => {
          log.error({ err: error }, 'shutdown failed');
          finish(1);
        },
      );
    }

    ctx.signals.on('SIGTERM', onSignal);
    ctx.signals.on('SIGINT', onSignal);
    ctx.signals.on('SIGHUP', onHangup);
  });
}
