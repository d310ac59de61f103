import { describe, expect, it } from 'vitest';
import {
  parseCosignVuln,
  parseCycloneDx,
  parseInTotoVulns,
  parseKevCatalog,
  parseOpenVex,
  parseSlsaV02,
  parseSlsaV1,
  parseSpdx,
  purlParts,
  sourceFromUri,
} from '../../../src/trust/index.ts';
import {
  cosignVulnPredicate,
  cycloneDxBom,
  grypeReport,
  inTotoVulnsPredicate,
  kevCatalog,
  openVex,
  openVexV001,
  slsaV02,
  slsaV1,
  spdxDocument,
  trivyReport,
} from '../../support/reports.ts';

const log4j = {
  name: 'log4j-core',
  version: '2.14.1',
  purl: 'pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1',
};

describe('vulnerability reports', () => {
  it('reads a Trivy report inside the cosign vuln predicate: upper-case severities, comma-separated fixes, absent FixedVersion', () => {
    const report = parseCosignVuln(
      cosignVulnPredicate(
        trivyReport([
          {
            id: 'CVE-2024-0001',
            pkg: 'openssl',
            installed: '3.0.11-1',
            fixed: ['3.0.13-1', '3.0.14-1'],
            severity: 'critical',
          },
          { id: 'CVE-2024-0002', pkg: 'zlib', installed: '1.2.13', severity: 'high' },
        ]),
        { finishedOn: '2026-01-02T03:04:05Z' },
      ),
    );
    expect(report.format).toBe('trivy');
    expect(report.scanFinishedOn).toBe(Date.parse('2026-01-02T03:04:05Z'));
    expect(report.vulnerabilities).toEqual([
      expect.objectContaining({
        id: 'CVE-2024-0001',
        package: 'openssl',
        fixed: ['3.0.13-1', '3.0.14-1'],
        severity: 'critical',
        status: 'fixed',
      }),
      expect.objectContaining({
        id: 'CVE-2024-0002',
        package: 'zlib',
        fixed: [],
        severity: 'high',
        status: 'affected',
      }),
    ]);
  });

  it('reads a clean Trivy scan with no Vulnerabilities key as zero findings', () => {
    expect(parseCosignVuln(cosignVulnPredicate(trivyReport([]))).vulnerabilities).toEqual([]);
  });

  it('reads a Grype report: title-case severities with Negligible, fix.state, knownExploited, related IDs', () => {
    const report = parseCosignVuln(
      cosignVulnPredicate(
        grypeReport([
          {
            id: 'CVE-2024-0003',
            pkg: 'curl',
            installed: '7.88.1',
            fixed: ['7.88.2'],
            severity: 'critical',
            kev: true,
          },
          { id: 'CVE-2024-0004', pkg: 'tar', installed: '1.34', severity: 'negligible' },
        ]),
        { scanner: 'grype' },
      ),
    );
    expect(report.format).toBe('grype');
    expect(report.vulnerabilities[0]).toMatchObject({
      id: 'CVE-2024-0003',
      severity: 'critical',
      fixed: ['7.88.2'],
      knownExploited: true,
    });
    expect(report.vulnerabilities[1]).toMatchObject({
      id: 'CVE-2024-0004',
      severity: 'negligible',
      fixed: [],
      status: 'not-fixed',
    });
  });

  it('says "report format not understood" for SARIF, an empty result and an unknown shape', () => {
    const sarif = { $schema: 'https://json.schemastore.org/sarif-2.1.0.json', version: '2.1.0', runs: [] };
    expect(() => parseCosignVuln(cosignVulnPredicate(sarif))).toThrow(/report format not understood/);
    expect(() => parseCosignVuln(cosignVulnPredicate(undefined))).toThrow(/report format not understood/);
    expect(() => parseCosignVuln(cosignVulnPredicate({ findings: [] }))).toThrow(
      /report format not understood/,
    );
  });

  it('reads the in-toto vulns predicate: CVSS scores to severities, fixes unknown', () => {
    const report = parseInTotoVulns(
      inTotoVulnsPredicate([
        { id: 'CVE-2024-0005', score: '9.8' },
        { id: 'CVE-2024-0006', score: '5.3' },
      ]),
    );
    expect(report.vulnerabilities.map((v) => [v.id, v.severity, v.fixed])).toEqual([
      ['CVE-2024-0005', 'critical', undefined],
      ['CVE-2024-0006', 'medium', undefined],
    ]);
  });

  it('reads the CISA KEV catalog format and refuses another shape', () => {
    expect([...parseKevCatalog(Buffer.from(JSON.stringify(kevCatalog(['CVE-2021-44228'])))).ids]).toEqual([
      'CVE-2021-44228',
    ]);
    expect(() => parseKevCatalog(Buffer.from('{"cves":[]}'))).toThrow(/vulnerabilities/);
  });
});

const log4jPackage = {
  name: 'log4j-core',
  version: '2.14.1',
  purl: log4j.purl,
  purlBase: 'pkg:maven/org.apache.logging.log4j/log4j-core',
  purlVersion: '2.14.1',
};

describe('SBOMs', () => {
  it('reads SPDX 2.3 purls from externalRefs', () => {
    const sbom = parseSpdx(spdxDocument([log4j]));
    expect(sbom).toEqual({
      format: 'SPDX-2.3',
      packages: [log4jPackage],
    });
  });

  it.each(['1.5', '1.6', '1.7'])('reads CycloneDX %s', (v) => {
    expect(parseCycloneDx(cycloneDxBom([log4j], v)).packages).toEqual([log4jPackage]);
  });

  it('splits purls once: qualifiers, subpath and percent-encoded versions', () => {
    expect(purlParts('pkg:deb/debian/xz-utils@5.6.0-0.1?arch=amd64&distro=debian-12#src')).toEqual({
      base: 'pkg:deb/debian/xz-utils',
      version: '5.6.0-0.1',
    });
    expect(purlParts('pkg:npm/%40scope/name@1.0.0%2Bbuild')).toEqual({
      base: 'pkg:npm/%40scope/name',
      version: '1.0.0+build',
    });
    expect(purlParts('pkg:golang/example.com/mod?x=y@z')).toEqual({
      base: 'pkg:golang/example.com/mod',
      version: undefined,
    });
    // A malformed escape keeps the version as written (a range then cannot compare it).
    expect(purlParts('pkg:npm/a@1.0%zz')).toEqual({ base: 'pkg:npm/a', version: '1.0%zz' });
  });

  it('refuses a document that is not SPDX or CycloneDX', () => {
    expect(() => parseSpdx({ bomFormat: 'CycloneDX' })).toThrow(/report format not understood/);
    expect(() => parseCycloneDx({ spdxVersion: 'SPDX-2.3' })).toThrow(/report format not understood/);
  });
});

describe('provenance', () => {
  it('reads SLSA v1 builder, build type and workflow source', () => {
    expect(parseSlsaV1(slsaV1({ repository: 'https://github.com/acme/app', ref: 'refs/tags/v1' }))).toEqual({
      slsaVersion: 'v1',
      builderId: 'https://github.com/actions/runner/github-hosted',
      buildType: 'https://actions.github.io/buildtypes/workflow/v1',
      source: { repository: 'https://github.com/acme/app', ref: 'refs/tags/v1' },
    });
  });

  it('reads SLSA v0.2 invocation.configSource', () => {
    const p = parseSlsaV02(slsaV02({ uri: 'git+https://github.com/acme/app@refs/heads/main' }));
    expect(p.source).toEqual({ repository: 'https://github.com/acme/app', ref: 'refs/heads/main' });
    expect(p.builderId).toMatch(/slsa-github-generator/);
  });

  it('splits source URIs only at a ref separator after the path', () => {
    expect(sourceFromUri('git+https://user@github.com/acme/app')).toEqual({
      repository: 'https://user@github.com/acme/app',
      ref: undefined,
    });
  });
});

describe('OpenVEX', () => {
  it('reads v0.2.0 and v0.0.1 statements', () => {
    const product = `pkg:oci/app@sha256%3A${'a'.repeat(64)}`;
    expect(
      parseOpenVex(openVex([{ id: 'CVE-1', status: 'not_affected', product }])).statements[0],
    ).toMatchObject({
      vulnerability: 'CVE-1',
      status: 'not_affected',
      products: [product],
    });
    const old = parseOpenVex(openVexV001([{ id: 'CVE-2', status: 'fixed', product }]));
    expect(old.format).toBe('openvex-v0.0.1');
    expect(old.statements[0]).toMatchObject({ vulnerability: 'CVE-2', status: 'fixed', products: [product] });
  });
});
