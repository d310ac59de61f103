export { configSchema, upstreamSchema, defaultConfigInput } from './schema.ts';
export type { Config, ConfigInput, UpstreamConfig } from './schema.ts';
export { ConfigError, formatProblem } from './errors.ts';
export type { ConfigProblem } from './errors.ts';
export { loadConfig, EMBEDDED_SOURCE, ENV_OVERRIDES, defaultUpstreamUrl, sqlitePath } from './load.ts';
export type { LoadedConfig, LoadedUpstream, LoadedMetadata, LoadOptions } from './load.ts';
export { jsonSchema } from './json-schema.ts';
export { redactConfig, redactUrl, REDACTED, REDACT_PATHS } from './redact.ts';
export { parseDuration, parseSize } from './units.ts';
