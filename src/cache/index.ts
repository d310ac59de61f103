export type { BlobHandle, BlobSource, BlobStore, BlobStoreStats, BlobTooLargeDetail } from './types.ts';
export { FsBlobStore, readCachedBlob } from './fs-blob-store.ts';
export type { FsBlobStoreOptions } from './fs-blob-store.ts';
export { DiskHeadroom } from './disk-headroom.ts';
export type { DiskHeadroomOptions, HeadroomState, Reserve } from './disk-headroom.ts';
export { acquireStorageLock, StorageLock, StorageLockedError } from './storage-lock.ts';
export type { LockOwner, StorageLockOptions, StorageMode } from './storage-lock.ts';
