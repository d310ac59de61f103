// The attestation content shapes live in the shared leaf (policy judges them); trust's surface keeps them.
export type {
  AttestationReader,
  AttestationRef,
  AttestationStatement,
  ImageFacts,
  KnownExploitedCatalog,
  Parsed,
  Provenance,
  ProvenanceSource,
  Sbom,
  SbomPackage,
  Severity,
  VexDocument,
  VexStatement,
  VexStatus,
  VulnReport,
  Vulnerability,
} from '../../shared/index.ts';
export { SEVERITIES } from '../../shared/index.ts';
