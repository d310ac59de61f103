export type {
  AdmittedBlob,
  AdmittedChild,
  GateKey,
  GateScope,
  ManifestRecord,
  MetadataStore,
  RecordParser,
  TagHistoryEntry,
  TagPin,
  TagRecord,
} from './types.ts';
export { KeyvMetadataStore } from './keyv-metadata-store.ts';
export type { KeyvMetadataStoreOptions } from './keyv-metadata-store.ts';
export { MetadataKeys } from './keys.ts';
export { NodeSqliteStore } from './node-sqlite-store.ts';
export type { NodeSqliteStoreOptions, NodeSqliteStoreOpts } from './node-sqlite-store.ts';
export { openMetadataStore } from './open-metadata-store.ts';
export type { OpenMetadataStoreOptions } from './open-metadata-store.ts';
