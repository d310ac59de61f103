/**
 * Realistic reports with the field names the tools emit (Trivy 0.5x JSON schema v2, Grype 0.8x JSON,
 * syft SPDX 2.3 / CycloneDX JSON, SLSA provenance v0.2 / v1 as the GitHub generators write them,
 * OpenVEX v0.2.0 and v0.0.1) and the cosign / in-toto predicates that carry them.
 */

export const COSIGN_VULN = 'https://cosign.sigstore.dev/attestation/vuln/v1';
export const IN_TOTO_VULNS = 'https://in-toto.io/attestation/vulns/v0.1';
export const SPDX = 'https://spdx.dev/Document';
export const CYCLONEDX = 'https://cyclonedx.org/bom';
export const SLSA_V1 = 'https://slsa.dev/provenance/v1';
export const SLSA_V02 = 'https://slsa.dev/provenance/v0.2';
export const OPENVEX = 'https://openvex.dev/ns/v0.2.0';

export interface Finding {
  id: string;
  pkg: string;
  installed: string;
  /** Fixed versions; undefined or [] = no fix. */
  fixed?: string[];
  severity: 'critical' | 'high' | 'medium' | 'low' | 'negligible' | 'unknown';
  purlType?: string;
}

const upper = (s: string) => s.toUpperCase();
const title = (s: string) => s.charAt(0).toUpperCase() + s.slice(1);

/** `trivy image --format json` (SchemaVersion 2). A clean target has no Vulnerabilities key. */
export function trivyReport(findings: Finding[], opts: { createdAt?: string; artifact?: string } = {}) {
  const target = {
    Target: `${opts.artifact ?? 'registry.test/acme/app:v1'} (debian 12.5)`,
    Class: 'os-pkgs',
    Type: 'debian',
  };
  return {
    SchemaVersion: 2,
    CreatedAt: opts.createdAt ?? new Date().toISOString(),
    ArtifactName: opts.artifact ?? 'registry.test/acme/app:v1',
    ArtifactType: 'container_image',
    Metadata: { OS: { Family: 'debian', Name: '12.5' }, ImageID: `sha256:${'1'.repeat(64)}`, DiffIDs: [] },
    Results:
      findings.length === 0
        ? [target]
        : [
            {
              ...target,
              Vulnerabilities: findings.map((f) => ({
                VulnerabilityID: f.id,
                PkgID: `${f.pkg}@${f.installed}`,
                PkgName: f.pkg,
                PkgIdentifier: {
                  PURL: `pkg:${f.purlType ?? 'deb'}/debian/${f.pkg}@${f.installed}?arch=amd64&distro=debian-12.5`,
                  UID: 'a1b2c3',
                },
                InstalledVersion: f.installed,
                // Absent when there is no fix; several fixed versions are comma-separated.
                ...(f.fixed !== undefined && f.fixed.length > 0 ? { FixedVersion: f.fixed.join(', ') } : {}),
                Status: f.fixed !== undefined && f.fixed.length > 0 ? 'fixed' : 'affected',
                Layer: { DiffID: `sha256:${'2'.repeat(64)}` },
                SeveritySource: 'nvd',
                PrimaryURL: `https://avd.aquasec.com/nvd/${f.id.toLowerCase()}`,
                Title: `${f.pkg}: issue ${f.id}`,
                Severity: upper(f.severity),
                CVSS: {},
              })),
            },
          ],
  };
}

/** `grype -o json`. Severities are title-case; fixes are fix.state + fix.versions. */
export function grypeReport(findings: (Finding & { kev?: boolean })[], opts: { timestamp?: string } = {}) {
  return {
    matches: findings.map((f) => ({
      vulnerability: {
        id: f.id,
        dataSource: `https://security-tracker.debian.org/tracker/${f.id}`,
        namespace: 'debian:distro:debian:12',
        severity: title(f.severity),
        urls: [],
        fix:
          f.fixed !== undefined && f.fixed.length > 0
            ? { versions: f.fixed, state: 'fixed' }
            : { versions: [], state: 'not-fixed' },
        advisories: [],
        ...(f.kev ? { knownExploited: [{ cve: f.id, vendorProject: 'x', product: f.pkg }] } : {}),
      },
      relatedVulnerabilities: [{ id: f.id, dataSource: `https://nvd.nist.gov/vuln/detail/${f.id}` }],
      matchDetails: [{ type: 'exact-indirect-match', matcher: 'dpkg-matcher' }],
      artifact: {
        id: 'abc',
        name: f.pkg,
        version: f.installed,
        type: f.purlType ?? 'deb',
        locations: [],
        language: '',
        licenses: [],
        cpes: [],
        purl: `pkg:deb/debian/${f.pkg}@${f.installed}?arch=amd64`,
        upstreams: [],
      },
    })),
    source: { type: 'image', target: { userInput: 'registry.test/acme/app:v1' } },
    distro: { name: 'debian', version: '12', idLike: [] },
    descriptor: {
      name: 'grype',
      version: '0.86.1',
      configuration: {},
      db: { built: '2026-01-01T00:00:00Z', schemaVersion: 5 },
      timestamp: opts.timestamp ?? new Date().toISOString(),
    },
  };
}

/** `cosign attest --type vuln`: the scanner's report under scanner.result. */
export function cosignVulnPredicate(
  result: unknown,
  opts: { finishedOn?: string; scanner?: 'trivy' | 'grype' } = {},
) {
  const finished = opts.finishedOn ?? new Date().toISOString();
  const grype = opts.scanner === 'grype';
  return {
    invocation: { parameters: null, uri: '', event_id: '', 'builder.id': '' },
    scanner: {
      uri: grype ? 'pkg:github/anchore/grype@v0.86.1' : 'pkg:github/aquasecurity/trivy@v0.58.1',
      version: grype ? '0.86.1' : '0.58.1',
      db: { uri: '', version: '' },
      result,
    },
    metadata: { scanStartedOn: finished, scanFinishedOn: finished },
  };
}

/** The in-toto vulns v0.1 predicate (no package, no fix). */
export function inTotoVulnsPredicate(findings: { id: string; score: string }[], finishedOn?: string) {
  const t = finishedOn ?? new Date().toISOString();
  return {
    invocation: { uri: 'https://github.com/acme/app/actions/runs/1', producerId: 'acme-ci' },
    scanner: {
      uri: 'pkg:github/aquasecurity/trivy@v0.58.1',
      version: '0.58.1',
      db: { uri: 'pkg:github/aquasecurity/trivy-db', version: '2' },
      result: findings.map((f) => ({ id: f.id, severity: [{ method: 'nvd', score: f.score }] })),
    },
    metadata: { scanStartedOn: t, scanFinishedOn: t },
  };
}

export interface Pkg {
  name: string;
  version: string;
  purl: string;
}

/** `syft -o spdx-json` (SPDX 2.3): purls in externalRefs. */
export function spdxDocument(packages: Pkg[]) {
  return {
    spdxVersion: 'SPDX-2.3',
    dataLicense: 'CC0-1.0',
    SPDXID: 'SPDXRef-DOCUMENT',
    name: 'registry.test/acme/app',
    documentNamespace: 'https://anchore.com/syft/image/app-1',
    creationInfo: {
      licenseListVersion: '3.25',
      creators: ['Tool: syft-1.18.1'],
      created: new Date().toISOString(),
    },
    packages: packages.map((p, i) => ({
      name: p.name,
      SPDXID: `SPDXRef-Package-${i}`,
      versionInfo: p.version,
      supplier: 'NOASSERTION',
      downloadLocation: 'NOASSERTION',
      filesAnalyzed: false,
      licenseConcluded: 'NOASSERTION',
      copyrightText: 'NOASSERTION',
      externalRefs: [
        {
          referenceCategory: 'SECURITY',
          referenceType: 'cpe23Type',
          referenceLocator: `cpe:2.3:a:${p.name}:${p.name}:${p.version}:*:*:*:*:*:*:*`,
        },
        { referenceCategory: 'PACKAGE-MANAGER', referenceType: 'purl', referenceLocator: p.purl },
      ],
    })),
    relationships: [],
  };
}

/** `syft -o cyclonedx-json` (specVersion given: 1.5, 1.6, 1.7). */
export function cycloneDxBom(packages: Pkg[], specVersion = '1.6') {
  return {
    $schema: `http://cyclonedx.org/schema/bom-${specVersion}.schema.json`,
    bomFormat: 'CycloneDX',
    specVersion,
    serialNumber: 'urn:uuid:3e671687-395b-41f5-a30f-a58921a69b79',
    version: 1,
    metadata: {
      timestamp: new Date().toISOString(),
      tools: { components: [{ type: 'application', name: 'syft', version: '1.18.1' }] },
      component: { type: 'container', name: 'registry.test/acme/app', version: 'sha256:x' },
    },
    components: packages.map((p) => ({
      'bom-ref': p.purl,
      type: 'library',
      name: p.name,
      version: p.version,
      purl: p.purl,
    })),
  };
}

/** SLSA v1 as the GitHub Actions build type writes it (actions/attest-build-provenance). */
export function slsaV1(opts: { repository: string; ref: string; builderId?: string; buildType?: string }) {
  return {
    buildDefinition: {
      buildType: opts.buildType ?? 'https://actions.github.io/buildtypes/workflow/v1',
      externalParameters: {
        workflow: { ref: opts.ref, repository: opts.repository, path: '.github/workflows/release.yml' },
      },
      internalParameters: { github: { event_name: 'push', repository_id: '1', repository_owner_id: '2' } },
      resolvedDependencies: [
        { uri: `git+${opts.repository}@${opts.ref}`, digest: { gitCommit: 'a'.repeat(40) } },
      ],
    },
    runDetails: {
      builder: { id: opts.builderId ?? 'https://github.com/actions/runner/github-hosted' },
      metadata: { invocationId: `${opts.repository}/actions/runs/1/attempts/1` },
    },
  };
}

/** SLSA v0.2 as slsa-github-generator writes it. */
export function slsaV02(opts: { uri: string; builderId?: string }) {
  return {
    builder: {
      id:
        opts.builderId ??
        'https://github.com/slsa-framework/slsa-github-generator/.github/workflows/generator_container_slsa3.yml@refs/tags/v2.0.0',
    },
    buildType: 'https://github.com/slsa-framework/slsa-github-generator/container@v1',
    invocation: {
      configSource: {
        uri: opts.uri,
        digest: { sha1: 'b'.repeat(40) },
        entryPoint: '.github/workflows/release.yml',
      },
      parameters: {},
      environment: { github_event_name: 'push' },
    },
    metadata: {
      buildInvocationID: '1-1',
      completeness: { parameters: true, environment: false, materials: false },
      reproducible: false,
    },
    materials: [{ uri: opts.uri, digest: { sha1: 'b'.repeat(40) } }],
  };
}

/** OpenVEX v0.2.0 (`vexctl create`). */
export function openVex(
  statements: { id: string; status: string; product: string; justification?: string }[],
) {
  return {
    '@context': 'https://openvex.dev/ns/v0.2.0',
    '@id': 'https://openvex.dev/docs/public/vex-1',
    author: 'security@acme.test',
    timestamp: new Date().toISOString(),
    version: 1,
    statements: statements.map((s) => ({
      vulnerability: { name: s.id },
      products: [{ '@id': s.product, subcomponents: [] }],
      status: s.status,
      ...(s.status === 'not_affected'
        ? { justification: s.justification ?? 'vulnerable_code_not_in_execute_path' }
        : {}),
    })),
  };
}

/** OpenVEX v0.0.1 (plain strings). */
export function openVexV001(statements: { id: string; status: string; product: string }[]) {
  return {
    '@context': 'https://openvex.dev/ns',
    '@id': 'https://openvex.dev/docs/example/vex-9fb3463de1b57',
    author: 'security@acme.test',
    role: 'Document Creator',
    timestamp: new Date().toISOString(),
    version: '1',
    statements: statements.map((s) => ({
      vulnerability: s.id,
      products: [s.product],
      status: s.status,
      ...(s.status === 'not_affected' ? { justification: 'component_not_present' } : {}),
    })),
  };
}

/** The CISA KEV catalog JSON. */
export function kevCatalog(ids: string[]) {
  return {
    title: 'CISA Catalog of Known Exploited Vulnerabilities',
    catalogVersion: '2026.01.01',
    dateReleased: '2026-01-01T12:00:00.000Z',
    count: ids.length,
    vulnerabilities: ids.map((cveID) => ({
      cveID,
      vendorProject: 'Acme',
      product: 'Widget',
      vulnerabilityName: `${cveID} issue`,
      dateAdded: '2025-12-01',
      shortDescription: '',
      requiredAction: 'Apply updates.',
      dueDate: '2025-12-22',
      knownRansomwareCampaignUse: 'Unknown',
      notes: '',
      cwes: [],
    })),
  };
}
