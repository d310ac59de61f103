import { z } from 'zod';
import { DURATION_PATTERN, SIZE_PATTERN, parseDuration, parseSize } from './units.ts';

/** The unit schemas by instance, so that `config show` can print their values in unit form. */
export const UNIT_SCHEMAS = new WeakMap<z.ZodType, 'duration' | 'size' | 'size-or-percent'>();

/** Mark `schema` as holding a duration, size or reserve; returns it (for chaining). */
export function unitSchema<T extends z.ZodType>(schema: T, unit: 'duration' | 'size' | 'size-or-percent'): T {
  UNIT_SCHEMAS.set(schema, unit);
  return schema;
}

/**
 * A duration in the YAML ("30s", "5m", "24h", or a number of seconds), in milliseconds after parsing.
 * The default is given in input form so that the JSON Schema shows "30s" rather than 30000 (which a
 * reader would take for seconds). Shared by every schema fragment (config, policy, audit): one grammar.
 */
export const duration = (dflt: string, description: string) => {
  const expected = `expected a duration such as "${dflt}" (number + ms, s, m, h or d)`;
  const schema = z
    .union([z.string().regex(new RegExp(DURATION_PATTERN), expected), z.number().min(0, expected)], {
      error: expected,
    })
    .transform((v, ctx) => {
      const ms = parseDuration(v);
      if (ms === undefined) {
        ctx.addIssue({ code: 'custom', message: expected });
        return z.NEVER;
      }
      return ms;
    })
    .meta({ description: `${description}. Duration: "250ms", "30s", "5m", "24h", "7d" or seconds.` });
  return unitSchema(schema, 'duration').prefault(dflt);
};

/** A size in the YAML ("50GiB", "500MB", or a number of bytes), in bytes after parsing. */
export const size = (dflt: string, description: string, minBytes = 0) => {
  const expected = `expected a size such as "${dflt}" (number + B, KB, MB, GB, TB, KiB, MiB, GiB or TiB)`;
  const schema = z
    .union([z.string().regex(new RegExp(SIZE_PATTERN), expected), z.number().int().min(0, expected)], {
      error: expected,
    })
    .transform((v, ctx) => {
      const bytes = parseSize(v);
      if (bytes === undefined || bytes < minBytes) {
        ctx.addIssue({
          code: 'custom',
          message: minBytes > 0 ? `${expected}, at least ${minBytes} bytes` : expected,
        });
        return z.NEVER;
      }
      return bytes;
    })
    .meta({ description: `${description}. Size: "4MiB", "500MB", "50GiB" or bytes.` });
  return unitSchema(schema, 'size').prefault(dflt);
};
