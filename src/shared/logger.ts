/**
 * The one logger interface: the calls the modules below the app make, object first, then a
 * lower-case message (`log.info({ repo, digest }, 'blob cache fill complete')`). A pino logger fits;
 * the app builds it once (src/app/logger.ts) and hands each module a child.
 */
export interface Logger {
  debug(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

const drop = (): void => undefined;

/** A logger that drops every line: the default where a module's logger is optional. */
export const noopLogger: Logger = { debug: drop, info: drop, warn: drop, error: drop };
