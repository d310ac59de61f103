/** Media types, annotations and tag names that cosign and Sigstore use in a registry. */

/** Sigstore bundle v0.3 as an OCI artifact type (cosign `--new-bundle-format`, `WriteReferrer`). */
export const SIGSTORE_BUNDLE_ARTIFACT_TYPE = 'application/vnd.dev.sigstore.bundle.v0.3+json';
/** Every bundle media type starts with this (cosign's `GetBundles` keeps layers by this prefix). */
export const SIGSTORE_BUNDLE_PREFIX = 'application/vnd.dev.sigstore.bundle';
/** cosign's experimental OCI 1.1 classic signature artifact (`cosign sign --registry-referrers-mode`). */
export const COSIGN_SIG_ARTIFACT_TYPE = 'application/vnd.dev.cosign.artifact.sig.v1+json';
/** cosign's experimental OCI 1.1 classic attestation artifact. */
export const COSIGN_ATT_ARTIFACT_TYPE = 'application/vnd.dev.cosign.artifact.att.v1+json';

export const SIMPLESIGNING_MEDIA_TYPE = 'application/vnd.dev.cosign.simplesigning.v1+json';
export const DSSE_MEDIA_TYPE = 'application/vnd.dsse.envelope.v1+json';
export const IN_TOTO_PAYLOAD_TYPE = 'application/vnd.in-toto+json';

/** cosign v3 signs images as an in-toto statement of this type: a signature, not an attestation. */
export const COSIGN_SIGN_PREDICATE_TYPE = 'https://sigstore.dev/cosign/sign/v1';
/** `critical.type` of a simplesigning payload. */
export const SIMPLESIGNING_TYPE = 'cosign container image signature';

/** Layer annotations of cosign classic signatures (cosign `pkg/oci/static/signature.go`). */
export const Annotation = {
  signature: 'dev.cosignproject.cosign/signature',
  certificate: 'dev.sigstore.cosign/certificate',
  chain: 'dev.sigstore.cosign/chain',
  bundle: 'dev.sigstore.cosign/bundle',
  rfc3161Timestamp: 'dev.sigstore.cosign/rfc3161timestamp',
  bundleContent: 'dev.sigstore.bundle.content',
  bundlePredicateType: 'dev.sigstore.bundle.predicateType',
} as const;

/** Largest signature/attestation/bundle blob discovery reads (real ones are a few KiB). */
export const MAX_EVIDENCE_BLOB_BYTES = 1024 * 1024;
/** Most layers read from one `.sig`/`.att` manifest, and most referrers followed. */
export const MAX_EVIDENCE_ITEMS = 32;

export const OID_CODE_SIGNING = '1.3.6.1.5.5.7.3.3';
