import { z } from 'zod';
import { configSchema } from './schema.ts';

/**
 * JSON Schema (draft 2020-12) of the config file, as written by hand: durations and sizes appear as
 * strings with a pattern (or plain numbers), defaults in the form a user would type them.
 */
export function jsonSchema(): Record<string, unknown> {
  const schema = z.toJSONSchema(configSchema, { io: 'input', unrepresentable: 'any' });
  const { $schema, ...rest } = schema;
  return {
    $schema,
    title: 'pullwarden configuration',
    description:
      'Configuration file of pullwarden, the pull-through OCI registry proxy (pullwarden serve --config FILE)',
    ...rest,
  };
}
