import { resolve } from 'node:path';
import { z } from 'zod';
import { FILE_KEYS, valuesAt } from './files.ts';
import { loadConfig, readConfigInput } from './load.ts';
import type { LoadOptions } from './load.ts';
import { redactConfig } from './redact.ts';
import { configSchema } from './schema.ts';
import { formatDuration, formatSize, parseDuration, parseSize, UNIT_SCHEMAS } from '../shared/index.ts';

/**
 * The effective configuration as a config file: what `serve` would run on (file or embedded
 * defaults, PULLWARDEN_* overrides, every default filled in), written the way an operator writes it —
 * durations and sizes in unit form ("30s", "50GiB"), relative paths made absolute, and only keys the
 * schema accepts. Feeding it back to `loadConfig` gives the same effective configuration (secrets
 * aside: inline ones and webhook header values are printed as "[redacted]").
 *
 * @throws ConfigError when the configuration is invalid (as `loadConfig`).
 */
export async function effectiveConfigInput(
  path: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
  options: LoadOptions = {},
): Promise<Record<string, unknown>> {
  await loadConfig(path, env, options); // validates, with the same options
  const cwd = options.cwd ?? process.cwd();
  const { input, fileBase, fromEnv } = await readConfigInput(path, env, cwd);
  const filled = withDefaults(configSchema, input) as Record<string, unknown>;

  // Relative paths resolve against the file (or, from the environment, the working directory);
  // printed absolute, the output means the same wherever it is saved.
  for (const entry of FILE_KEYS) {
    if ('inline' in entry) continue;
    for (const { path: at, value } of valuesAt(filled, entry.path)) {
      if (typeof value !== 'string') continue;
      const base = fromEnv.has(at.join('.')) ? cwd : fileBase;
      const parent = valuesAt(filled, at.slice(0, -1).map(String))[0]?.value as Record<PropertyKey, unknown>;
      const key = at[at.length - 1] as PropertyKey;
      if (entry.kind === 'sqlite') {
        const file = value.startsWith('sqlite://') ? value.slice('sqlite://'.length) : undefined;
        if (file !== undefined && file !== ':memory:') parent[key] = `sqlite://${resolve(base, file)}`;
      } else {
        parent[key] = resolve(base, value);
      }
    }
  }
  return redactConfig(filled);
}

/** `value` (input form) with every default of `schema` filled in and units in canonical form. */
function withDefaults(schema: z.ZodType, input: unknown): unknown {
  let s = schema;
  let value = input;
  for (;;) {
    const unit = UNIT_SCHEMAS.get(s);
    if (unit !== undefined) return value === undefined ? undefined : canonicalUnit(unit, value);
    if (s instanceof z.ZodDefault || s instanceof z.ZodPrefault) {
      if (value === undefined) value = structuredClone(s.def.defaultValue);
      s = s.unwrap() as z.ZodType;
    } else if (s instanceof z.ZodOptional || s instanceof z.ZodNullable) {
      if (value === undefined) return undefined;
      s = s.unwrap() as z.ZodType;
    } else if (s instanceof z.ZodPipe) {
      s = s.in as z.ZodType;
    } else {
      break;
    }
  }
  if (value === undefined) return undefined;
  if (s instanceof z.ZodObject && isRecord(value)) {
    const out: Record<string, unknown> = {};
    const shape: Record<string, z.ZodType> = s.shape;
    for (const [key, sub] of Object.entries(shape)) {
      const v = withDefaults(sub, value[key]);
      if (v !== undefined) out[key] = v;
    }
    return out;
  }
  if (s instanceof z.ZodRecord && isRecord(value)) {
    const valueType = s.valueType as z.ZodType;
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, withDefaults(valueType, v)]));
  }
  if (s instanceof z.ZodArray && Array.isArray(value)) {
    const element = s.element as z.ZodType;
    return value.map((v: unknown) => withDefaults(element, v));
  }
  return value;
}

/** A bare number (seconds, bytes) in unit form; a string as written (validation accepted it). */
function canonicalUnit(unit: 'duration' | 'size' | 'size-or-percent', value: unknown): unknown {
  if (typeof value === 'string') return value.trim();
  if (typeof value !== 'number') return value;
  if (unit === 'duration') {
    const ms = parseDuration(value);
    return ms === undefined ? value : formatDuration(ms);
  }
  const bytes = parseSize(value);
  return bytes === undefined ? value : formatSize(bytes);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}
