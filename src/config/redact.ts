/** What a secret is replaced with in logs and printed configuration. */
export const REDACTED = '[redacted]';

/** Keys whose values are secrets wherever they appear (config, log objects). */
const SECRET_KEYS = ['password', 'token', 'checkpointKey'] as const;

/**
 * The one redaction list: pino `redact` paths of every log line of the process (src/app/logger.ts),
 * a logged LoadedConfig (`config.*`, or at the top) included. Prefer logging `redactConfig(config)`,
 * which also masks credentials inside URLs.
 */
export const REDACT_PATHS: readonly string[] = [
  'req.headers.authorization',
  'headers.authorization',
  'authorization',
  ...SECRET_KEYS.flatMap((k) => [k, `*.${k}`]),
  'upstreams.*.password',
  'config.upstreams.*.password',
  'config.metadata.password',
  'config.audit.checkpointKey',
];

/**
 * A deep copy of a configuration (input or loaded) with every `password` value replaced by
 * "[redacted]" and the password in any URL (e.g. `redis://:secret@host`) masked.
 */
export function redactConfig<T>(config: T): T {
  return redactValue(config, undefined) as T;
}

function redactValue(value: unknown, key: string | undefined): unknown {
  if (isSecretKey(key) && value !== undefined && value !== null) return REDACTED;
  // Webhook headers usually carry a bearer token: keep the names, hide the values.
  if (key === 'headers' && value !== null && typeof value === 'object' && !Array.isArray(value)) {
    return Object.fromEntries(Object.keys(value).map((k) => [k, REDACTED]));
  }
  if (typeof value === 'string') return key === 'url' ? redactUrl(value) : value;
  if (Array.isArray(value)) return value.map((v) => redactValue(v, undefined));
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, redactValue(v, k)]));
  }
  return value;
}

function isSecretKey(key: string | undefined): boolean {
  return (SECRET_KEYS as readonly (string | undefined)[]).includes(key);
}

/** Mask the password part of a URL's userinfo; leave anything that is not a URL alone. */
export function redactUrl(url: string): string {
  if (!URL.canParse(url)) return url;
  const parsed = new URL(url);
  if (parsed.password === '') return url;
  // Rebuild by hand: URL.href would also normalize the rest of the string.
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/[^:/?#@]*:)[^@/?#]*@/i, `$1${REDACTED}@`);
}
