export type * from './types.ts';
export { discoverEvidence } from './discover.ts';
export type { DiscoverOptions } from './discover.ts';
export { listReferrers } from './referrers.ts';
export type { ReferrersListing } from './referrers.ts';
export type { ReadManifest, ReadOptions, RegistryReader } from './registry-reader.ts';
export { loadPublicKey, parseTrustedRoot, publicGoodTrustedRoot } from './roots.ts';
export { TrustMaterialStore } from './store.ts';
export type {
  TrustedRootFetcher,
  TrustMaterialConfig,
  TrustMaterialStoreOptions,
  TrustRefreshOptions,
} from './roots.ts';
export { anchoredRegExp, IDENTITY_GLOB, identityGlob } from './identity.ts';
export {
  Annotation,
  COSIGN_SIGN_PREDICATE_TYPE,
  DSSE_MEDIA_TYPE,
  SIGSTORE_BUNDLE_ARTIFACT_TYPE,
  SIMPLESIGNING_MEDIA_TYPE,
} from './constants.ts';
export {
  classicAttestationToBundle,
  classicSignatureToBundle,
  inTotoStatement,
  statementObject,
  parseBundle,
} from './convert.ts';
export type { InTotoStatement } from './convert.ts';
export * from './predicates/index.ts';
export { KevCatalog, parseKevCatalog } from './kev.ts';
export type { KevCatalogOptions } from './kev.ts';
