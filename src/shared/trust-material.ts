/**
 * Trust material as configured (`trust.roots.<name>`, `trust.keys.<name>`), after parsing: the words
 * policy's schema produces and trust's store loads. One definition, here, because policy and trust are
 * adapters and never import each other.
 */

/** A trust root: the embedded Sigstore public-good instance, or a `trusted_root.json` file (private Sigstore). */
export type TrustRootConfig = { sigstore: 'public-good' } | { file: string };

/** A verification key: a PEM public key file, or PEM text inline (ECDSA P-256/P-384/P-521 or RSA). */
export type TrustKeyConfig = { file: string } | { pem: string };
