import type { Digest } from '../../oci/index.ts';
import type { Attestor, EvidenceSource, Severity, SignerIdentity } from '../../shared/index.ts';

export type GateKind = 'vulnerabilities' | 'sbom' | 'provenance' | 'age' | 'cel';

/** Conditions of a vulnerabilities gate. A finding counts when it passes every filter given. */
export interface VulnerabilityRules {
  /** Largest allowed count of counted findings per severity; a severity left out is unlimited. */
  max: Partial<Record<Severity, number>>;
  /** true: count only findings with a fixed version; false: only those without. */
  fixAvailable?: boolean;
  /** true: count only findings in the KEV catalog (or marked known-exploited by the scanner); false: only others. */
  knownExploited?: boolean;
  /** IDs not counted until `until` (an ISO date; the whole day counts), with the reason why. */
  ignore: { id: string; until?: string; reason?: string }[];
  /** ms: a scan older than this (by `scanFinishedOn`) fails the gate. */
  maxScanAge?: number;
  /** OpenVEX predicate types read from the same attestors ([] turns VEX off). */
  vexPredicateTypes: string[];
}

/** A package rule of an sbom gate: packages whose purl matches `purl` (and `versions`) are banned. */
export interface PackageRule {
  /** Anchored glob over the purl without version, qualifiers and subpath; `*` matches any run. */
  purl: string;
  /** Banned versions: an exact list, or a semver range (e.g. "<2.17.1"); absent = every version. */
  versions?: string[] | string;
  reason?: string;
}

export interface SbomRules {
  deny: PackageRule[];
}

/** Anchored globs (`*` matches any run of characters, as in keyless identities). */
export interface ProvenanceRules {
  builderId?: string;
  buildType?: string;
  sourceRepository?: string;
  sourceRef?: string;
}

export interface AgeRules {
  /** ms: the image's config `created` must be at most this old. */
  maxAge: number;
}

export interface CelRules {
  /** A CEL expression that must be true (see gates/cel.ts for the variables). */
  expression: string;
  /** What a failure means, in the reasons (default: the expression). */
  message?: string;
}

interface GateBase {
  name: string;
  mode: 'enforce' | 'warn';
  /** Whose attestations count (any one); empty for the age gate, which reads the image config. */
  attestors: Attestor[];
  /** Predicate types read (defaults per gate kind). */
  predicateTypes: string[];
  /** Largest attestation read for this gate, counted on the bytes received. */
  maxBytes: number;
}

export type Gate =
  | (GateBase & { kind: 'vulnerabilities'; vulnerabilities: VulnerabilityRules })
  | (GateBase & { kind: 'sbom'; sbom: SbomRules })
  | (GateBase & { kind: 'provenance'; provenance: ProvenanceRules })
  | (GateBase & { kind: 'age'; age: AgeRules })
  | (GateBase & { kind: 'cel'; cel: CelRules });

/** pass, or what a failure means: deny (an enforce gate) or warn (a warn gate: served, recorded). */
export type GateOutcome = 'pass' | 'deny' | 'warn';

/** One failing vulnerability as the 403 detail lists it. */
export interface FailingVulnerability {
  id: string;
  package: string;
  installed: string;
  fixed: string[] | null;
  severity: Severity;
  knownExploited: boolean;
}

/** How one gate fared: what `pullwarden check`, the 403 detail and the audit event show. */
export interface GateResult {
  gate: string;
  kind: GateKind;
  mode: 'enforce' | 'warn';
  result: GateOutcome;
  /** Most important first. */
  reasons: string[];
  /** The attestation that decided (the newest valid one). */
  attestation?: {
    source: EvidenceSource;
    manifestDigest: Digest;
    layerDigest: Digest;
    predicateType: string;
    signer: SignerIdentity;
    /** ISO time the attestation was chosen by, and which time it is. */
    time?: string;
    timeSource: 'scan' | 'signature' | 'none';
    /** Valid attestations of this gate's types that were found (the newest decided). */
    candidates: number;
  };
  /** Gate-specific facts (JSON): counts per severity, failing vulnerabilities, builder found... */
  facts: Record<string, unknown>;
}
