/**
 * How a request was answered, one vocabulary for the blob cache, the service, the access log, the
 * `X-Pullwarden-Cache` header and the audit trail:
 * - `hit`: from the cache, no upstream request;
 * - `miss`: fetched from the upstream by this request;
 * - `joined`: attached to a blob fill another request started (blobs only);
 * - `stale`: a tag's last verified digest, served because the upstream failed (manifests only).
 */
export type CacheState = 'hit' | 'miss' | 'joined' | 'stale';

/** The states of a blob request. */
export type BlobCacheState = Exclude<CacheState, 'stale'>;

/** The states of a manifest request. */
export type ManifestCacheState = Exclude<CacheState, 'joined'>;

/**
 * The states the audit trail records: there a joined request is a `miss` (it waited on an upstream
 * fill, only another request made the upstream call), so a query for misses finds every request
 * that was not answered from the cache.
 */
export type RecordedCacheState = Exclude<CacheState, 'joined'>;

/** The one mapping from a request's state to the audit trail's. */
export function recordedCacheState(state: CacheState): RecordedCacheState {
  return state === 'joined' ? 'miss' : state;
}
