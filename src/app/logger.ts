/**
 * The process's logger set-up, in one place: level, timestamp format, redaction and the `service`
 * field of every line, for the app, the cluster primary and the `serve` command alike.
 */
import { pino, stdTimeFunctions } from 'pino';
import type { DestinationStream, Logger, LoggerOptions } from 'pino';
import { REDACT_PATHS, REDACTED } from '../config/index.ts';

/** How log lines carry their time: `log.timestamp` of the config. */
export type LogTimestamp = 'iso' | 'epoch' | 'none';

/**
 * The pino `timestamp` option for `log.timestamp`: ISO-8601 (`"time":"2026-12-03T10:15:00.000Z"`,
 * the default: readable, sortable, unambiguous about the zone), epoch milliseconds (pino's own
 * default, cheaper to parse), or none (when the log collector stamps lines itself, e.g. journald).
 */
export function logTimestamp(kind: LogTimestamp = 'iso'): NonNullable<LoggerOptions['timestamp']> {
  switch (kind) {
    case 'iso':
      return stdTimeFunctions.isoTime;
    case 'epoch':
      return stdTimeFunctions.epochTime;
    case 'none':
      return false;
  }
}

/** A logger for `log.level` and `log.timestamp`, writing to stdout unless `destination` is given. */
export function createLogger(
  level: string,
  timestamp: LogTimestamp = 'iso',
  destination?: DestinationStream,
): Logger {
  const options: LoggerOptions = {
    level,
    timestamp: logTimestamp(timestamp),
    redact: { paths: [...REDACT_PATHS], censor: REDACTED },
    base: { service: 'pullwarden' },
  };
  return destination === undefined ? pino(options) : pino(options, destination);
}

/** A logger that writes nothing (dry runs and command-line tools that report on stdout themselves). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
