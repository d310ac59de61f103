/**
 * OCI distribution error codes (distribution-spec "Error Codes") plus the two that registries use in
 * practice for upstream trouble. The HTTP status for each code lives in exactly one table,
 * {@link errorStatus}; lower layers throw a {@link RegistryError} and never pick a status.
 */
export const errorCodes = [
  'BLOB_UNKNOWN',
  'BLOB_UPLOAD_INVALID',
  'BLOB_UPLOAD_UNKNOWN',
  'DIGEST_INVALID',
  'MANIFEST_BLOB_UNKNOWN',
  'MANIFEST_INVALID',
  'MANIFEST_UNKNOWN',
  'NAME_INVALID',
  'NAME_UNKNOWN',
  'SIZE_INVALID',
  'UNAUTHORIZED',
  'DENIED',
  'UNSUPPORTED',
  'TOOMANYREQUESTS',
  'RANGE_INVALID',
  'UNAVAILABLE',
  'UNKNOWN',
] as const;

export type ErrorCode = (typeof errorCodes)[number];

/** The one place an error code becomes an HTTP status. */
export const errorStatus = {
  BLOB_UNKNOWN: 404,
  BLOB_UPLOAD_INVALID: 400,
  BLOB_UPLOAD_UNKNOWN: 404,
  DIGEST_INVALID: 400,
  MANIFEST_BLOB_UNKNOWN: 404,
  MANIFEST_INVALID: 400,
  MANIFEST_UNKNOWN: 404,
  NAME_INVALID: 400,
  NAME_UNKNOWN: 404,
  SIZE_INVALID: 400,
  UNAUTHORIZED: 401,
  DENIED: 403,
  // distribution answers 405 for operations a read-only (pull-through) registry does not support.
  UNSUPPORTED: 405,
  TOOMANYREQUESTS: 429,
  RANGE_INVALID: 416,
  UNAVAILABLE: 503,
  UNKNOWN: 500,
} as const satisfies Record<ErrorCode, number>;

export interface RegistryErrorOptions {
  /** Structured detail sent to the client in the OCI error body. Never put secrets here. */
  detail?: unknown;
  cause?: unknown;
  /** Seconds, for TOOMANYREQUESTS / UNAVAILABLE answers: sent as `Retry-After`. */
  retryAfter?: number;
}

/** A failure with an OCI error code. Every layer throws these; only `http/` turns them into responses. */
export class RegistryError extends Error {
  readonly code: ErrorCode;
  readonly detail: unknown;
  readonly retryAfter: number | undefined;

  constructor(code: ErrorCode, message: string, options: RegistryErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'RegistryError';
    this.code = code;
    this.detail = options.detail;
    this.retryAfter = options.retryAfter;
  }

  get status(): number {
    return errorStatus[this.code];
  }
}

export function isRegistryError(err: unknown): err is RegistryError {
  return err instanceof RegistryError;
}

/**
 * The codes that say "the registry has no such thing": no such manifest (tag or digest), blob or
 * repository. The one set the upstream client takes from an upstream's 404 body, and the one callers
 * test to tell "nothing there" from a failure (a fault is never "nothing there").
 */
export const notFoundCodes: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'MANIFEST_UNKNOWN',
  'BLOB_UNKNOWN',
  'NAME_UNKNOWN',
]);

/** Whether `err` is a {@link RegistryError} with one of the {@link notFoundCodes}. */
export function isNotFoundError(err: unknown): err is RegistryError {
  return isRegistryError(err) && notFoundCodes.has(err.code);
}

/** The OCI error body: `{"errors":[{"code","message","detail"}]}`. */
export function errorBody(err: RegistryError): {
  errors: { code: ErrorCode; message: string; detail?: unknown }[];
} {
  const entry: { code: ErrorCode; message: string; detail?: unknown } = {
    code: err.code,
    message: err.message,
  };
  if (err.detail !== undefined) entry.detail = err.detail;
  return { errors: [entry] };
}
