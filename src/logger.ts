import { stdTimeFunctions } from 'pino';
import type { LoggerOptions } from 'pino';

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
