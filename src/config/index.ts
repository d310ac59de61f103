export { configSchema, upstreamSchema, defaultConfigInput } from './schema.ts';
export type { Config, ConfigInput, UpstreamConfig } from './schema.ts';
export { ConfigError, formatProblem } from './errors.ts';
export type { ConfigProblem } from './errors.ts';
export {
  loadConfig,
  readConfigInput,
  EMBEDDED_SOURCE,
  ENV_OVERRIDES,
  defaultUpstreamUrl,
  sqlitePath,
} from './load.ts';
export type { LoadedConfig, LoadedUpstream, LoadedMetadata, LoadOptions } from './load.ts';
export { jsonSchema } from './json-schema.ts';
export { redactConfig, redactUrl, REDACTED, REDACT_PATHS } from './redact.ts';
export { formatDuration, formatSize, parseDuration, parseSize } from '../shared/index.ts';
export { loadCandidatePolicies } from './candidate.ts';
export { FILE_KEYS } from './files.ts';
export { effectiveConfigInput } from './show.ts';
export type { FileKind, FileParsers, ParsedFileKind } from './files.ts';
export { didYouMean, suggest } from '../shared/index.ts';
export { watchFile } from './watch.ts';
export { splitListen } from './listen.ts';
