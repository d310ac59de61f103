/**
 * Attestation gates end to end: a real distribution 2.8 registry (no referrers API: bundles are found
 * through the referrers tag schema), realistic Trivy / SPDX / SLSA / OpenVEX documents signed as
 * attestations by the offline test signer (key-based, and keyless for provenance), pushed the way
 * cosign pushes them, pullwarden in between, and real clients (containerd through a hosts.toml whose
 * server is the proxy; skopeo through a path-prefix location).
 *
 * Policies (first match wins), one repository per case:
 *   upstream.test/vuln/**   scanned      the cookbook rule: CRITICAL + fix + KEV → deny; CRITICAL without fix → warn
 *   upstream.test/sbom/**   sbom         SBOM required; log4j-core <2.17.1 and xz-utils 5.6.0/5.6.1 banned
 *   upstream.test/prov/**   provenance   SLSA from the GitHub runner, acme repository, refs/tags/v*
 *   upstream.test/age/**    fresh        config created within 30 days
 *   everything else         deny-rest
 * Decisions and evidence are re-read after 1s, so a re-scan is seen at the next evaluation.
 */
import { createHash } from 'node:crypto';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryAuditDir } from '../../src/audit/index.ts';
import type { TestProxy } from '../support/app.ts';
import { startE2e } from '../support/e2e.ts';
import type { E2e } from '../support/e2e.ts';
import { writeHostsToml } from '../support/containerd.ts';
import type { Containerd } from '../support/containerd.ts';
import { images } from '../support/oci-layout.ts';
import type { WrittenLayout } from '../support/oci-layout.ts';
import { CommandError } from '../support/proc.ts';
import { blobGets } from '../support/registry.ts';
import type { Registry } from '../support/registry.ts';
import {
  COSIGN_VULN,
  cosignVulnPredicate,
  kevCatalog,
  openVex,
  OPENVEX,
  SLSA_V1,
  slsaV1,
  SPDX,
  spdxDocument,
  trivyReport,
} from '../support/reports.ts';
import type { Finding, Pkg } from '../support/reports.ts';
import {
  BUNDLE_MEDIA_TYPE,
  createKeyPair,
  createTestSigstore,
  GITHUB_ISSUER,
  httpRegistryWriter,
  pushBundleReferrer,
  pushTestImage,
  signBundle,
} from '../support/signer.ts';
import type { SubjectDescriptor, TestKeyPair, TestLeaf, TestSigstore } from '../support/signer.ts';
import { pushLayout, skopeoCopy } from '../support/skopeo.ts';

const UPSTREAM = 'upstream.test';
const IDENTITY = 'https://github.com/acme/app/.github/workflows/release.yml@refs/tags/v1.0.0';
const ACCEPT = 'application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json';
const MiB = 1024 * 1024;
const scanner = [{ key: 'scanner' }];

const policies = [
  {
    name: 'scanned',
    match: [`${UPSTREAM}/vuln/**`],
    action: 'verify',
    gates: [
      {
        name: 'exploitable-criticals',
        attestors: scanner,
        vulnerabilities: { max: { critical: 0 }, fixAvailable: true, knownExploited: true, maxScanAge: '7d' },
      },
      {
        name: 'unfixed-criticals',
        mode: 'warn',
        attestors: scanner,
        vulnerabilities: {
          max: { critical: 0 },
          fixAvailable: false,
          ignore: [{ id: 'CVE-2024-7777', until: '2099-12-31' }],
        },
      },
    ],
  },
  {
    name: 'sbom',
    match: [`${UPSTREAM}/sbom/**`],
    action: 'verify',
    gates: [
      {
        name: 'sbom',
        attestors: scanner,
        sbom: {
          deny: [
            { purl: 'pkg:maven/org.apache.logging.log4j/log4j-core', versions: '<2.17.1' },
            { purl: 'pkg:deb/*/xz-utils', versions: ['5.6.0', '5.6.1'] },
          ],
        },
      },
    ],
  },
  {
    name: 'provenance',
    match: [`${UPSTREAM}/prov/**`],
    action: 'verify',
    gates: [
      {
        name: 'built-by-release',
        attestors: [
          { keyless: { root: 'test', issuer: GITHUB_ISSUER, subject: 'https://github.com/acme/*' } },
        ],
        provenance: {
          builderId: 'https://github.com/actions/runner/*',
          sourceRepository: 'https://github.com/acme/*',
          sourceRef: 'refs/tags/v*',
        },
      },
    ],
  },
  {
    name: 'fresh',
    match: [`${UPSTREAM}/age/**`],
    action: 'verify',
    gates: [{ name: 'fresh-base', age: { maxAge: '30d' } }],
  },
  {
    name: 'cel',
    match: [`${UPSTREAM}/cel/**`],
    action: 'verify',
    gates: [
      {
        name: 'github-built',
        attestors: [
          { keyless: { root: 'test', issuer: GITHUB_ISSUER, subject: 'https://github.com/acme/*' } },
        ],
        predicateTypes: [SLSA_V1],
        cel: {
          expression:
            'predicate.buildDefinition.buildType == "https://actions.github.io/buildtypes/workflow/v1" && signer.identity.endsWith("@refs/tags/v1.0.0") && image.os == "linux"',
          message: 'built by GitHub Actions from tag v1.0.0',
        },
      },
    ],
  },
  {
    name: 'separate',
    match: [`${UPSTREAM}/separate/**`],
    action: 'verify',
    signatureRepository: 'signatures/store',
    gates: [{ name: 'criticals', attestors: scanner, vulnerabilities: { max: { critical: 0 } } }],
  },
  { name: 'deny-rest', match: ['**'], action: 'deny' },
];

interface GateJSON {
  gate: string;
  result: string;
  reasons: string[];
  facts: Record<string, unknown>;
  attestation?: { manifestDigest: string; time?: string; candidates: number };
}
interface DeniedBody {
  errors: { code: string; message: string; detail: { policy: string; result: string; gates?: GateJSON[] } }[];
}

const sha256 = (b: Buffer | string) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

describe('attestation gates at pull time against a real registry', () => {
  let e2e: E2e;
  let work: string;
  let registry: Registry;
  let containerd: Containerd;
  let proxy: TestProxy;
  let hostsDir: string;
  let world: TestSigstore;
  let leaf: TestLeaf;
  let key: TestKeyPair;
  let layout: WrittenLayout;

  const manifest = (repo: string, reference = 'v1', method = 'GET'): Promise<Response> =>
    fetch(`${proxy.url}/v2/${repo}/manifests/${reference}?ns=${UPSTREAM}`, {
      method,
      headers: { accept: ACCEPT },
    });

  async function denied(res: Response, policy: string): Promise<DeniedBody['errors'][0]> {
    const text = await res.text();
    expect(res.status, text).toBe(403);
    const err = (JSON.parse(text) as DeniedBody).errors[0]!;
    expect(err.code).toBe('DENIED');
    expect(err.message).toContain(`policy "${policy}"`);
    return err;
  }

  async function served(res: Response): Promise<Response> {
    const text = await res.clone().text();
    expect(res.status, text).toBe(200);
    return res;
  }

  /** Sign `predicate` as an attestation of `subject` and push it as a referrer (tag schema). */
  async function attest(
    repo: string,
    subject: SubjectDescriptor,
    predicateType: string,
    predicate: unknown,
    opts: { boundTo?: string; keyless?: boolean } = {},
  ): Promise<string> {
    const bundle = opts.keyless
      ? signBundle({ leaf, world, subject: opts.boundTo ?? subject.digest, predicateType, predicate })
      : signBundle({ key, subject: opts.boundTo ?? subject.digest, predicateType, predicate });
    return pushBundleReferrer(registry.url, repo, subject, bundle, predicateType);
  }

  const scan = (findings: Finding[], finishedOn = new Date().toISOString()) =>
    cosignVulnPredicate(trivyReport(findings), { finishedOn });

  /** A real (pullable) image in `repo:v1`. */
  async function realImage(repo: string): Promise<SubjectDescriptor> {
    await pushLayout(layout, registry.host, `${repo}:v1`);
    return {
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      digest: layout.digest,
      size: layout.size,
    };
  }

  const critFixKev: Finding = {
    id: 'CVE-2024-3094',
    pkg: 'xz-utils',
    installed: '5.6.0-0.2',
    fixed: ['5.6.1+really5.4.5-1'],
    severity: 'critical',
  };
  const critNoFix: Finding = { id: 'CVE-2024-8888', pkg: 'libfoo', installed: '1.0-1', severity: 'critical' };

  beforeAll(async () => {
    e2e = await startE2e({ prefix: 'pw-e2e-gates-', containerd: true });
    work = e2e.work;
    ({ registry, containerd } = e2e);
    [world] = await Promise.all([createTestSigstore({ name: 'gates.local' })]);
    leaf = await world.issueLeaf({ subject: IDENTITY, issuer: GITHUB_ISSUER });
    key = createKeyPair();
    const rootFile = join(work, 'trusted_root.json');
    const keyFile = join(work, 'scanner.pub');
    const kevFile = join(work, 'kev.json');
    await writeFile(rootFile, JSON.stringify(world.trustedRootJSON));
    await writeFile(keyFile, key.publicKeyPem);
    await writeFile(kevFile, JSON.stringify(kevCatalog(['CVE-2024-3094', 'CVE-2021-44228'])));
    proxy = await e2e.proxy({
      upstreams: { [UPSTREAM]: { url: registry.url, tagTTL: '1s' } },
      defaultUpstream: UPSTREAM,
      trust: {
        roots: { test: { file: rootFile } },
        keys: { scanner: { file: keyFile } },
        refresh: '0s',
        kevCatalog: kevFile,
      },
      decisions: { allowTTL: '1s', denyTTL: '1s', evidenceTTL: '1s', missingEvidenceTTL: '1s' },
      policies,
    });
    layout = await e2e.layout('img', images.singleArch('gates-image'));
    hostsDir = join(work, 'certs.d');
    await writeHostsToml(hostsDir, UPSTREAM, proxy.url);
  }, 120_000);

  afterAll(async () => {
    await e2e?.close();
  });

  it('denies CRITICAL with a fix and a known exploit: containerd and skopeo fail, the 403 lists the vulnerability, no blob is fetched', async () => {
    const image = await realImage('vuln/exploitable');
    await attest('vuln/exploitable', image, COSIGN_VULN, scan([critFixKev]));
    await registry.clearRequests();
    await expect(containerd.pull(`${UPSTREAM}/vuln/exploitable:v1`, { hostsDir })).rejects.toBeInstanceOf(
      CommandError,
    );
    await expect(
      skopeoCopy(`docker://${proxy.host}/${UPSTREAM}/vuln/exploitable:v1`, `oci:${join(work, 'sk-deny')}:v1`),
    ).rejects.toBeInstanceOf(CommandError);
    expect(
      blobGets(
        (await registry.requests()).filter(
          (r) => r.repository === 'vuln/exploitable' && r.reference === layout.digest,
        ),
      ),
    ).toEqual([]);
    const err = await denied(await manifest('vuln/exploitable'), 'scanned');
    expect(err.message).toContain('gate "exploitable-criticals"');
    const gate = err.detail.gates!.find((g) => g.gate === 'exploitable-criticals')!;
    expect(gate.result).toBe('deny');
    expect(gate.facts.failing).toEqual([
      {
        id: 'CVE-2024-3094',
        package: 'xz-utils',
        installed: '5.6.0-0.2',
        fixed: ['5.6.1+really5.4.5-1'],
        severity: 'critical',
        knownExploited: true,
      },
    ]);
  });

  it('serves CRITICAL without a fix with a warning (containerd pulls it); the audit event and the metric carry each gate', async () => {
    const image = await realImage('vuln/unfixed');
    const att = await attest(
      'vuln/unfixed',
      image,
      COSIGN_VULN,
      scan([critNoFix, { ...critNoFix, id: 'CVE-2024-7777' }]),
    );
    const pulled = await containerd.pull(`${UPSTREAM}/vuln/unfixed:v1`, { hostsDir });
    expect(pulled.digest).toBe(layout.digest);
    await containerd.removeImages();
    const res = await served(await manifest('vuln/unfixed', 'v1', 'HEAD'));
    expect(res.headers.get('x-pullwarden-decision')).toBe('warn');

    const auditDir = join(proxy.dir, 'data', 'audit');
    const lines = (
      await Promise.all(
        (await readdir(auditDir))
          .filter((f) => f.endsWith('.jsonl'))
          .map((f) => readFile(join(auditDir, f), 'utf8')),
      )
    )
      .join('\n')
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map(
        (l) =>
          JSON.parse(l) as {
            repository?: string;
            gates?: {
              gate: string;
              result: string;
              attestation?: string;
              time?: string;
              counts?: Record<string, number>;
            }[];
          },
      );
    const event = lines.find((l) => l.repository === 'vuln/unfixed' && l.gates !== undefined);
    expect(event?.gates).toEqual([
      expect.objectContaining({ gate: 'exploitable-criticals', result: 'pass', attestation: att }),
      // CVE-2024-7777 is ignored (until 2099): one counted critical.
      expect.objectContaining({
        gate: 'unfixed-criticals',
        result: 'warn',
        attestation: att,
        counts: expect.objectContaining({ critical: 1 }),
      }),
    ]);
    // Queryable: the events where this warn gate fired.
    const fired = [];
    for await (const r of queryAuditDir(auditDir, { gate: { name: 'unfixed-criticals', result: 'warn' } }))
      fired.push(r);
    expect(fired.length).toBeGreaterThan(0);
    expect(fired.every((r) => r.repository === 'vuln/unfixed')).toBe(true);
    const metrics = await (await fetch(`${proxy.url}/metrics`)).text();
    expect(metrics).toMatch(
      /pullwarden_gate_results_total\{policy="scanned",gate="unfixed-criticals",result="warn"\} [1-9]/,
    );
  });

  it('admits a finding that an OpenVEX statement from the same attestor marks not_affected (skopeo copies it)', async () => {
    const image = await realImage('vuln/vexed');
    await attest('vuln/vexed', image, COSIGN_VULN, scan([critFixKev]));
    await attest(
      'vuln/vexed',
      image,
      OPENVEX,
      openVex([
        {
          id: 'CVE-2024-3094',
          status: 'not_affected',
          product: `pkg:oci/app@${image.digest.replace(':', '%3A')}`,
        },
      ]),
    );
    await skopeoCopy(`docker://${proxy.host}/${UPSTREAM}/vuln/vexed:v1`, `oci:${join(work, 'sk-vex')}:v1`, {
      preserveDigests: true,
    });
  });

  it('denies a stale scan and a scan bound to another digest', async () => {
    const stale = await pushTestImage(registry.url, 'vuln/stale', 'v1', 'stale');
    await attest(
      'vuln/stale',
      stale,
      COSIGN_VULN,
      scan([], new Date(Date.now() - 10 * 86_400_000).toISOString()),
    );
    const e1 = await denied(await manifest('vuln/stale'), 'scanned');
    expect(e1.message).toMatch(/scan is stale/);

    const other = await pushTestImage(registry.url, 'vuln/bound', 'v1', 'bound');
    await attest('vuln/bound', other, COSIGN_VULN, scan([]), { boundTo: sha256('another image') });
    const e2 = await denied(await manifest('vuln/bound'), 'scanned');
    expect(e2.message).toMatch(/no valid vulnerability scan attestation/);
    expect(JSON.stringify(e2.detail.gates)).toMatch(/do not include sha256:/);
  });

  it('a re-scan pushed for an admitted digest changes the decision at the next evaluation', async () => {
    const image = await pushTestImage(registry.url, 'vuln/rescan', 'v1', 'rescan');
    await attest('vuln/rescan', image, COSIGN_VULN, scan([], new Date(Date.now() - 60_000).toISOString()));
    await served(await manifest('vuln/rescan'));
    // A newer scan finds an exploitable critical with a fix.
    const rescan = await attest('vuln/rescan', image, COSIGN_VULN, scan([critFixKev]));
    let last: Response | undefined;
    for (let i = 0; i < 50; i++) {
      last = await manifest('vuln/rescan', image.digest);
      if (last.status === 403) break;
      await last.arrayBuffer();
      await sleep(200);
    }
    const err = await denied(last!, 'scanned');
    const gate = err.detail.gates!.find((g) => g.gate === 'exploitable-criticals')!;
    expect(gate.attestation).toMatchObject({ manifestDigest: rescan, candidates: 2 });
  });

  it('finds a bundle listed in a GHCR-style tag-schema index whose descriptor says application/vnd.oci.empty.v1+json', async () => {
    const image = await pushTestImage(registry.url, 'vuln/ghcr', 'v1', 'ghcr');
    const bundle = signBundle({
      key,
      subject: image.digest,
      predicateType: COSIGN_VULN,
      predicate: scan([]),
    });
    const referrer = await pushBundleReferrer(registry.url, 'vuln/ghcr', image, bundle, COSIGN_VULN, {
      tagSchema: false,
    });
    const w = httpRegistryWriter(registry.url);
    const ref = (await w.getManifest('vuln/ghcr', referrer))!;
    const index = {
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [
        {
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          digest: referrer,
          size: ref.length,
          artifactType: 'application/vnd.oci.empty.v1+json',
        },
      ],
    };
    await w.putManifest(
      'vuln/ghcr',
      image.digest.replace(':', '-'),
      Buffer.from(JSON.stringify(index)),
      'application/vnd.oci.image.index.v1+json',
    );
    expect(JSON.parse(ref.toString('utf8')).artifactType).toBe(BUNDLE_MEDIA_TYPE);
    await served(await manifest('vuln/ghcr'));
  });

  it('denies a missing SBOM and a banned package; admits a clean SBOM', async () => {
    await pushTestImage(registry.url, 'sbom/none', 'v1', 'sbom-none');

    expect((await denied(await manifest('sbom/none'), 'sbom')).message).toMatch(/no valid SBOM attestation/);

    const banned = await pushTestImage(registry.url, 'sbom/banned', 'v1', 'sbom-banned');
    const log4j: Pkg = {
      name: 'log4j-core',
      version: '2.14.1',
      purl: 'pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1',
    };
    await attest('sbom/banned', banned, SPDX, spdxDocument([log4j]));
    expect((await denied(await manifest('sbom/banned'), 'sbom')).message).toMatch(
      /banned package: pkg:maven\/org\.apache\.logging\.log4j\/log4j-core@2\.14\.1/,
    );

    const clean = await realImage('sbom/clean');
    await attest(
      'sbom/clean',
      clean,
      SPDX,
      spdxDocument([{ ...log4j, version: '2.17.1', purl: log4j.purl.replace('2.14.1', '2.17.1') }]),
    );
    await skopeoCopy(`docker://${proxy.host}/${UPSTREAM}/sbom/clean:v1`, `oci:${join(work, 'sk-sbom')}:v1`, {
      preserveDigests: true,
    });
  });

  it('refuses a 40 MiB SBOM over the 32 MiB cap without downloading it', async () => {
    const image = await pushTestImage(registry.url, 'sbom/huge', 'v1', 'sbom-huge');
    const packages: Pkg[] = [];
    for (let i = 0; packages.length < 110_000; i++)
      packages.push({ name: `pkg-${i}`, version: '1.0.0', purl: `pkg:npm/pkg-${i}@1.0.0` });
    const predicate = spdxDocument(packages);
    expect(Buffer.byteLength(JSON.stringify(predicate))).toBeGreaterThan(40 * MiB);
    await attest('sbom/huge', image, SPDX, predicate);
    await registry.clearRequests();
    const err = await denied(await manifest('sbom/huge'), 'sbom');
    expect(JSON.stringify(err.detail.gates)).toMatch(/over 33554432/);
    const blobs = blobGets(await registry.requests()).filter((r) => r.repository === 'sbom/huge');
    expect(
      blobs.every((r) => r.written < MiB),
      JSON.stringify(blobs),
    ).toBe(true);
  }, 120_000);

  it('admits keyless SLSA provenance from the release workflow; denies a wrong source ref and a wrong builder', async () => {
    const good = await pushTestImage(registry.url, 'prov/good', 'v1', 'prov-good');
    await attest(
      'prov/good',
      good,
      SLSA_V1,
      slsaV1({ repository: 'https://github.com/acme/app', ref: 'refs/tags/v1.0.0' }),
      { keyless: true },
    );
    await served(await manifest('prov/good'));

    const ref = await pushTestImage(registry.url, 'prov/ref', 'v1', 'prov-ref');
    await attest(
      'prov/ref',
      ref,
      SLSA_V1,
      slsaV1({ repository: 'https://github.com/acme/app', ref: 'refs/heads/feature' }),
      { keyless: true },
    );
    expect((await denied(await manifest('prov/ref'), 'provenance')).message).toContain(
      'sourceRef is "refs/heads/feature"',
    );

    const builder = await pushTestImage(registry.url, 'prov/builder', 'v1', 'prov-builder');
    await attest(
      'prov/builder',
      builder,
      SLSA_V1,
      slsaV1({
        repository: 'https://github.com/acme/app',
        ref: 'refs/tags/v1',
        builderId: 'https://ci.evil.test/runner',
      }),
      { keyless: true },
    );
    const err = await denied(await manifest('prov/builder'), 'provenance');
    expect(err.detail.gates![0]!.facts.builderId).toBe('https://ci.evil.test/runner');
  });

  it('denies an image whose config was created more than 30 days ago, and one without created', async () => {
    await realImage('age/old');
    expect((await denied(await manifest('age/old'), 'fresh')).message).toMatch(
      /built 2024-01-01T00:00:00Z, .* over maxAge 30d/,
    );
    await pushTestImage(registry.url, 'age/none', 'v1', 'age-none');
    expect((await denied(await manifest('age/none'), 'fresh')).message).toMatch(/no valid "created"/);
  });

  it('evaluates a CEL rule over the predicate, the signer and the image config', async () => {
    const good = await realImage('cel/good');
    await attest(
      'cel/good',
      good,
      SLSA_V1,
      slsaV1({ repository: 'https://github.com/acme/app', ref: 'refs/tags/v1.0.0' }),
      { keyless: true },
    );
    const pulled = await containerd.pull(`${UPSTREAM}/cel/good:v1`, { hostsDir });
    expect(pulled.digest).toBe(layout.digest);
    await containerd.removeImages();

    const other = await pushTestImage(registry.url, 'cel/other', 'v1', 'cel-other');
    await attest(
      'cel/other',
      other,
      SLSA_V1,
      slsaV1({
        repository: 'https://github.com/acme/app',
        ref: 'refs/tags/v1.0.0',
        buildType: 'https://ci.evil.test/build',
      }),
      { keyless: true },
    );
    expect((await denied(await manifest('cel/other'), 'cel')).message).toContain(
      'expression is false: built by GitHub Actions from tag v1.0.0',
    );
  });

  it('reads attestations stored in another repository (signatureRepository, as COSIGN_REPOSITORY)', async () => {
    const clean = await pushTestImage(registry.url, 'separate/clean', 'v1', 'separate-clean');
    const dirty = await pushTestImage(registry.url, 'separate/dirty', 'v1', 'separate-dirty');
    await attest('signatures/store', clean, COSIGN_VULN, scan([]));
    await attest('signatures/store', dirty, COSIGN_VULN, scan([critNoFix]));
    // Attestations next to the image do not count for this policy.
    await attest('separate/dirty', dirty, COSIGN_VULN, scan([]));
    await served(await manifest('separate/clean'));
    expect((await denied(await manifest('separate/dirty'), 'separate')).message).toContain(
      '1 critical (max 0)',
    );
  });
});
