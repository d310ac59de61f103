/** Small readers for untrusted JSON: every field is checked before it is used. */

export type Json = Record<string, unknown>;

export function obj(v: unknown): Json | undefined {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Json) : undefined;
}

export function arr(v: unknown): unknown[] | undefined {
  return Array.isArray(v) ? v : undefined;
}

export function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

/** An RFC 3339 time as ms since the epoch, or undefined. */
export function time(v: unknown): number | undefined {
  if (typeof v !== 'string' || v === '') return undefined;
  const ms = Date.parse(v);
  return Number.isFinite(ms) ? ms : undefined;
}

/** Thrown by parsers for a shape they do not understand; turned into a reason by the reader. */
export class FormatError extends Error {}

export function need<T>(v: T | undefined, what: string): T {
  if (v === undefined) throw new FormatError(what);
  return v;
}
