/** Attestation content: statements and predicates parsed from verified DSSE payloads. */
export * from './types.ts';
export { CachingAttestationReader } from './reader.ts';
export type { CachingAttestationReaderOptions } from './reader.ts';
export { parseStatement, STATEMENT_TYPES } from './statement.ts';
export {
  COSIGN_VULN_PREDICATE_TYPE,
  IN_TOTO_VULNS_PREDICATE_TYPE,
  parseCosignVuln,
  parseInTotoVulns,
  severityOf,
} from './vulns.ts';
export {
  CYCLONEDX_PREDICATE_TYPE,
  parseCycloneDx,
  parseSpdx,
  purlParts,
  SPDX_PREDICATE_TYPE,
} from './sbom.ts';
export {
  parseSlsaV02,
  parseSlsaV1,
  SLSA_V02_PREDICATE_TYPE,
  SLSA_V1_PREDICATE_TYPE,
  sourceFromUri,
} from './provenance.ts';
export { OPENVEX_PREDICATE_TYPES, parseOpenVex } from './vex.ts';
