export type { BlobHandle, BlobStore, BlobStoreStats, ByteRange, CacheState } from './types.ts';
export { FsBlobStore } from './fs-blob-store.ts';
export type { CacheLogger, FsBlobStoreOptions } from './fs-blob-store.ts';
