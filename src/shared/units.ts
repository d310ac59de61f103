/**
 * Durations and sizes as operators write them in YAML. A bare number is seconds (durations) or bytes
 * (sizes), so `tagTTL: 30` and `tagTTL: "30s"` mean the same.
 */

/** JSON Schema / regex source for a duration string; kept in step with {@link parseDuration}. */
export const DURATION_PATTERN = '^\\s*\\d+(?:\\.\\d+)?\\s*(?:ms|s|m|h|d)?\\s*$';

/** JSON Schema / regex source for a size string; kept in step with {@link parseSize}. */
export const SIZE_PATTERN = '^\\s*\\d+(?:\\.\\d+)?\\s*(?:[bB]|[kKmMgGtT][iI]?[bB])?\\s*$';

const DURATION_RE = new RegExp(DURATION_PATTERN);
const SIZE_RE = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/;

const DURATION_UNITS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** Parse `30s`, `5m`, `24h`, `7d`, `250ms` (or a bare number of seconds) into milliseconds. */
export function parseDuration(value: string | number): number | undefined {
  if (typeof value === 'number') {
    return Number.isFinite(value) && value >= 0 ? Math.round(value * 1000) : undefined;
  }
  if (!DURATION_RE.test(value)) return undefined;
  const m = /(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?/.exec(value);
  if (!m) return undefined;
  const unit = (m[2] ?? 's') as keyof typeof DURATION_UNITS;
  const ms = Math.round(Number(m[1]) * DURATION_UNITS[unit]);
  return Number.isSafeInteger(ms) ? ms : undefined;
}

const SIZE_UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
  tib: 1024 ** 4,
};

/** Parse `50GiB`, `500MB`, `1048576` into bytes. */
export function parseSize(value: string | number): number | undefined {
  if (typeof value === 'number') return Number.isSafeInteger(value) && value >= 0 ? value : undefined;
  const m = SIZE_RE.exec(value);
  if (!m) return undefined;
  const factor = SIZE_UNITS[(m[2] ?? '').toLowerCase()];
  if (factor === undefined) return undefined;
  const bytes = Math.floor(Number(m[1]) * factor);
  return Number.isSafeInteger(bytes) ? bytes : undefined;
}

/** Milliseconds in the largest unit that holds them exactly: 30000 → "30s", 86400000 → "1d". */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0s';
  for (const unit of ['d', 'h', 'm', 's'] as const) {
    const factor = DURATION_UNITS[unit];
    if (ms % factor === 0) return `${ms / factor}${unit}`;
  }
  return `${ms}ms`;
}

const SIZE_FORMATS = [
  ['TiB', 1024 ** 4],
  ['GiB', 1024 ** 3],
  ['MiB', 1024 ** 2],
  ['KiB', 1024],
  ['TB', 1e12],
  ['GB', 1e9],
  ['MB', 1e6],
  ['KB', 1e3],
] as const;

/** Bytes in the largest unit that holds them exactly: 53687091200 → "50GiB", 500000000 → "500MB". */
export function formatSize(bytes: number): string {
  if (bytes === 0) return '0B';
  for (const [unit, factor] of SIZE_FORMATS) {
    if (bytes % factor === 0) return `${bytes / factor}${unit}`;
  }
  return `${bytes}B`;
}
