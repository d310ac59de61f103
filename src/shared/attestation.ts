/**
 * What attestation gates read, normalized from the formats tools emit (Trivy, Grype, in-toto vulns,
 * SPDX, CycloneDX, SLSA provenance, OpenVEX). Produced in `trust` from the verified DSSE payload;
 * judged in `policy`, which sees only these shapes and never the bytes. Here, below both.
 */
import type { Bundle } from '@sigstore/bundle';
import type { Digest } from '../oci/index.ts';

/** Severities as policies name them; each scanner's spelling (CRITICAL, Critical, 9.8) maps here. */
export type Severity = 'critical' | 'high' | 'medium' | 'low' | 'negligible' | 'unknown';
export const SEVERITIES: readonly Severity[] = ['critical', 'high', 'medium', 'low', 'negligible', 'unknown'];

/** One finding: a vulnerability in one installed package. */
export interface Vulnerability {
  id: string;
  /** Other identifiers of the same vulnerability (Grype's relatedVulnerabilities, GHSA → CVE). */
  aliases: string[];
  /** Package name, "" when the report does not say (the in-toto vulns predicate). */
  package: string;
  purl?: string;
  installed: string;
  /**
   * Versions that fix it: [] when the scanner says there is no fix, undefined when the report cannot
   * say (in-toto vulns has no fix field; Grype `fix.state: unknown`). Unknown matches both
   * `fixAvailable: true` and `fixAvailable: false`: a filter never hides a finding it cannot judge.
   */
  fixed: string[] | undefined;
  severity: Severity;
  /** Scanner status, as written (Trivy `Status`, Grype `fix.state`). */
  status?: string;
  /** The report itself says it is known exploited (Grype `knownExploited`). */
  knownExploited?: boolean;
}

export interface VulnReport {
  format: 'trivy' | 'grype' | 'in-toto-vulns';
  /** Scanner URI or name and version, as reported. */
  scanner: string;
  /** ms since the epoch: `metadata.scanFinishedOn`, else the scanner's own report time. */
  scanFinishedOn: number | undefined;
  vulnerabilities: Vulnerability[];
}

export interface SbomPackage {
  name: string;
  version: string | undefined;
  purl: string | undefined;
  /** The purl without version, qualifiers and subpath: what package rules match on. */
  purlBase: string | undefined;
  /** The purl's version (percent-decoded), when it has one. */
  purlVersion: string | undefined;
}

export interface Sbom {
  format: string;
  packages: SbomPackage[];
}

export interface ProvenanceSource {
  /** Repository URI without `git+` and ref, e.g. "https://github.com/acme/app". */
  repository: string;
  ref: string | undefined;
}

export interface Provenance {
  slsaVersion: 'v0.2' | 'v1';
  builderId: string | undefined;
  buildType: string | undefined;
  /** The source the build says it built from; undefined when it names none. */
  source: ProvenanceSource | undefined;
}

export type VexStatus = 'not_affected' | 'affected' | 'fixed' | 'under_investigation';

export interface VexStatement {
  vulnerability: string;
  aliases: string[];
  /** Product identifiers (purls) the statement is about. */
  products: string[];
  status: VexStatus;
  /** ms since the epoch; the statement's own timestamp, else the document's. */
  timestamp: number | undefined;
}

export interface VexDocument {
  format: 'openvex-v0.2.0' | 'openvex-v0.0.1';
  statements: VexStatement[];
}

/** The in-toto statement of a verified attestation, with its predicate as JSON. */
export interface AttestationStatement {
  statementType: string;
  predicateType: string;
  subjects: Record<string, string>[];
  predicate: unknown;
}

/** A parse result: a reason (never an exception) when the shape is not understood. */
export type Parsed<T> = { ok: true; value: T } | { ok: false; reason: string };

/**
 * Reads the content of found attestations: parsed once per attestation (layer digest), then served
 * from memory. CPU only. Call only on attestations that verified: the content is then what the
 * attestor signed.
 */
export interface AttestationReader {
  statement(found: AttestationRef): Parsed<AttestationStatement>;
  vulnerabilities(found: AttestationRef): Parsed<VulnReport>;
  sbom(found: AttestationRef): Parsed<Sbom>;
  provenance(found: AttestationRef): Parsed<Provenance>;
  vex(found: AttestationRef): Parsed<VexDocument>;
  /** ms since the epoch the transparency log (or TSA) vouches the attestation was signed; else undefined. */
  signedAt(found: AttestationRef): number | undefined;
}

/** What a reader needs of a found attestation (a {@link FoundSignature} fits). */
export interface AttestationRef {
  layerDigest: Digest;
  bundle: Bundle;
}

/** The CISA Known Exploited Vulnerabilities catalog, as loaded. */
export interface KnownExploitedCatalog {
  /** Changes when the file changes; part of the decision cache key. */
  readonly version: string;
  /** Why the catalog could not be read (then `knownExploited` conditions fail closed). */
  readonly problem: string | undefined;
  has(id: string): boolean;
}

/** Facts from an image's config blob (the age and cel gates), per platform manifest. */
export interface ImageFacts {
  digest: Digest;
  /** `os/architecture[/variant]` from the config (or the index entry). */
  platform: string;
  created: string | undefined;
  os: string | undefined;
  architecture: string | undefined;
  labels: Record<string, string>;
  /** Why the config could not be read. */
  problem?: string;
}
