/**
 * Vulnerability reports as scanners emit them:
 *
 * - cosign's vuln predicate (`https://cosign.sigstore.dev/attestation/vuln/v1`, `cosign attest --type
 *   vuln`): `scanner.result` holds whatever the scanner wrote — a Trivy JSON report, a Grype JSON
 *   report, SARIF, or nothing. Only Trivy and Grype are understood; anything else is a reason.
 * - the in-toto vulns predicate (`https://in-toto.io/attestation/vulns/v0.1`): `scanner.result` is a
 *   list of `{ id, severity: [{ method, score }] }`, with no package and no fix field.
 *
 * Quirks handled (as the tools write them): Trivy severities are upper-case, `FixedVersion` is absent
 * when there is no fix and may be a comma-separated list, a clean scan may have no `Vulnerabilities`
 * (or no `Results`) at all; Grype severities are title-case (with `Negligible`), fixes are
 * `fix.state` + `fix.versions`, and newer Grype adds `knownExploited`.
 */
import type { Severity, Vulnerability, VulnReport } from './types.ts';
import { arr, FormatError, need, obj, str, time } from './json.ts';
import type { Json } from './json.ts';

export const COSIGN_VULN_PREDICATE_TYPE = 'https://cosign.sigstore.dev/attestation/vuln/v1';
export const IN_TOTO_VULNS_PREDICATE_TYPE = 'https://in-toto.io/attestation/vulns/v0.1';

const WORDS: Record<string, Severity> = {
  critical: 'critical',
  high: 'high',
  important: 'high',
  medium: 'medium',
  moderate: 'medium',
  low: 'low',
  negligible: 'negligible',
  unknown: 'unknown',
  none: 'negligible',
};

/** A scanner's severity word or CVSS score (CVSS v3 bands) as a {@link Severity}. */
export function severityOf(v: unknown): Severity {
  if (typeof v === 'number') return cvssBand(v);
  if (typeof v !== 'string') return 'unknown';
  const word = WORDS[v.trim().toLowerCase()];
  if (word !== undefined) return word;
  const n = Number(v);
  return v.trim() !== '' && Number.isFinite(n) ? cvssBand(n) : 'unknown';
}

function cvssBand(n: number): Severity {
  if (n >= 9) return 'critical';
  if (n >= 7) return 'high';
  if (n >= 4) return 'medium';
  if (n > 0) return 'low';
  return 'negligible';
}

function isTrivy(r: Json): boolean {
  return r.SchemaVersion !== undefined && (r.Results === undefined || Array.isArray(r.Results));
}

function isGrype(r: Json): boolean {
  return Array.isArray(r.matches) && (obj(r.descriptor) !== undefined || obj(r.source) !== undefined);
}

function trivy(report: Json): Omit<VulnReport, 'scanner' | 'scanFinishedOn'> & { created?: number } {
  const vulnerabilities: Vulnerability[] = [];
  for (const result of arr(report.Results) ?? []) {
    const r = need(obj(result), 'Trivy report: a Results entry is not an object');
    // A clean target has no Vulnerabilities key at all (or null).
    for (const entry of arr(r.Vulnerabilities) ?? []) {
      const v = need(obj(entry), 'Trivy report: a Vulnerabilities entry is not an object');
      const id = need(str(v.VulnerabilityID), 'Trivy report: a vulnerability has no VulnerabilityID');
      const fixedVersion = str(v.FixedVersion);
      const purl = str(obj(v.PkgIdentifier)?.PURL);
      vulnerabilities.push({
        id,
        aliases: [],
        package: str(v.PkgName) ?? '',
        ...(purl !== undefined ? { purl } : {}),
        installed: str(v.InstalledVersion) ?? '',
        fixed:
          fixedVersion === undefined
            ? []
            : fixedVersion
                .split(',')
                .map((s) => s.trim())
                .filter((s) => s !== ''),
        severity: severityOf(v.Severity),
        ...(str(v.Status) !== undefined ? { status: str(v.Status) ?? '' } : {}),
      });
    }
  }
  const created = time(report.CreatedAt);
  return { format: 'trivy', vulnerabilities, ...(created !== undefined ? { created } : {}) };
}

function grype(report: Json): Omit<VulnReport, 'scanner' | 'scanFinishedOn'> & { created?: number } {
  const vulnerabilities: Vulnerability[] = [];
  for (const entry of arr(report.matches) ?? []) {
    const m = need(obj(entry), 'Grype report: a match is not an object');
    const v = need(obj(m.vulnerability), 'Grype report: a match has no vulnerability');
    const artifact = obj(m.artifact) ?? {};
    const id = need(str(v.id), 'Grype report: a vulnerability has no id');
    const fix = obj(v.fix);
    const state = str(fix?.state);
    const versions = (arr(fix?.versions) ?? []).flatMap((x) => (typeof x === 'string' ? [x] : []));
    // fix.state: fixed | not-fixed | wont-fix | unknown. "unknown" is not "no fix".
    const fixed = state === 'fixed' ? versions : state === 'unknown' || state === undefined ? undefined : [];
    const kev = v.knownExploited;
    const aliases = (arr(m.relatedVulnerabilities) ?? []).flatMap((r) => {
      const rid = str(obj(r)?.id);
      return rid !== undefined && rid !== id ? [rid] : [];
    });
    const purl = str(artifact.purl);
    vulnerabilities.push({
      id,
      aliases,
      package: str(artifact.name) ?? '',
      ...(purl !== undefined && purl !== '' ? { purl } : {}),
      installed: str(artifact.version) ?? '',
      fixed: fixed !== undefined && fixed.length === 0 && state === 'fixed' ? undefined : fixed,
      severity: severityOf(v.severity),
      ...(state !== undefined ? { status: state } : {}),
      ...((Array.isArray(kev) && kev.length > 0) || kev === true ? { knownExploited: true } : {}),
    });
  }
  const created = time(obj(report.descriptor)?.timestamp);
  return { format: 'grype', vulnerabilities, ...(created !== undefined ? { created } : {}) };
}

function scannerName(scanner: Json): string {
  const uri = str(scanner.uri) ?? '';
  const version = str(scanner.version) ?? '';
  return [uri, version].filter((s) => s !== '').join(' ') || '(unnamed scanner)';
}

/** The cosign vuln predicate, normalized. Throws {@link FormatError} for a shape not understood. */
export function parseCosignVuln(predicate: unknown): VulnReport {
  const p = need(obj(predicate), 'vuln predicate is not a JSON object');
  const scanner = need(obj(p.scanner), 'vuln predicate has no scanner');
  const result = obj(scanner.result);
  if (result === undefined) {
    throw new FormatError('report format not understood: vuln predicate scanner.result is empty');
  }
  let parsed: ReturnType<typeof trivy>;
  if (isTrivy(result)) parsed = trivy(result);
  else if (isGrype(result)) parsed = grype(result);
  else if (typeof result.$schema === 'string' && result.$schema.includes('sarif')) {
    throw new FormatError('report format not understood: SARIF reports carry no package or fix facts');
  } else {
    throw new FormatError('report format not understood: scanner.result is neither Trivy nor Grype JSON');
  }
  const finished = time(obj(p.metadata)?.scanFinishedOn) ?? parsed.created;
  return {
    format: parsed.format,
    scanner: scannerName(scanner),
    scanFinishedOn: finished,
    vulnerabilities: parsed.vulnerabilities,
  };
}

/** The in-toto vulns v0.1 predicate, normalized (no packages, fixes unknown). */
export function parseInTotoVulns(predicate: unknown): VulnReport {
  const p = need(obj(predicate), 'vulns predicate is not a JSON object');
  const scanner = need(obj(p.scanner), 'vulns predicate has no scanner');
  const result = scanner.result === undefined || scanner.result === null ? [] : arr(scanner.result);
  if (result === undefined)
    throw new FormatError('report format not understood: scanner.result is not a list');
  const vulnerabilities = result.map((entry): Vulnerability => {
    const v = need(obj(entry), 'vulns predicate: a result entry is not an object');
    const id = need(str(v.id), 'vulns predicate: a result entry has no id');
    // The worst of the severities given (several methods may score it).
    const ranked = (arr(v.severity) ?? []).map((s) => severityOf(obj(s)?.score));
    const order: Severity[] = ['critical', 'high', 'medium', 'low', 'negligible'];
    const severity = order.find((s) => ranked.includes(s)) ?? 'unknown';
    return { id, aliases: [], package: '', installed: '', fixed: undefined, severity };
  });
  return {
    format: 'in-toto-vulns',
    scanner: scannerName(scanner),
    scanFinishedOn: time(obj(p.metadata)?.scanFinishedOn),
    vulnerabilities,
  };
}
