/**
 * Attestation gates through the real policy engine and the real verifier: statements signed with a
 * test key (test/support/signer.ts), verified by TrustMaterialStore (signature + subject binding),
 * parsed by CachingAttestationReader.
 */
import { createHash } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Digest } from '../../../src/oci/index.ts';
import {
  decisionDetail,
  formatDenyMessage,
  PolicyEngine,
  policiesSchema,
  trustSchema,
} from '../../../src/policy/index.ts';
import type { Decision, GateResult, PoliciesInput } from '../../../src/policy/index.ts';
import { CachingAttestationReader, parseBundle, TrustMaterialStore } from '../../../src/trust/index.ts';
import type { FoundSignature, ImageFacts, KnownExploitedCatalog } from '../../../src/trust/index.ts';
import {
  COSIGN_VULN,
  CYCLONEDX,
  cosignVulnPredicate,
  cycloneDxBom,
  grypeReport,
  openVex,
  OPENVEX,
  SLSA_V02,
  SLSA_V1,
  slsaV02,
  slsaV1,
  SPDX,
  spdxDocument,
  trivyReport,
} from '../../support/reports.ts';
import type { Finding } from '../../support/reports.ts';
import { createKeyPair, signBundle } from '../../support/signer.ts';
import type { TestKeyPair } from '../../support/signer.ts';

const DIGEST = `sha256:${'a'.repeat(64)}` as Digest;
const OTHER = `sha256:${'b'.repeat(64)}` as Digest;
const DAY = 86_400_000;
const NOW = Date.parse('2026-06-15T12:00:00Z');
const scanner = [{ key: 'scanner' }];

let scannerKey: TestKeyPair;
let rogueKey: TestKeyPair;
let store: TrustMaterialStore;

beforeAll(async () => {
  scannerKey = createKeyPair();
  rogueKey = createKeyPair();
  store = await TrustMaterialStore.load({
    keys: { scanner: { pem: scannerKey.publicKeyPem }, rogue: { pem: rogueKey.publicKeyPem } },
  });
});

let n = 0;
/** A signed attestation as discovery reports a referrer bundle. */
function attest(
  predicateType: string,
  predicate: unknown,
  opts: { key?: TestKeyPair; subject?: Digest } = {},
): FoundSignature {
  const bundle = signBundle({
    key: opts.key ?? scannerKey,
    subject: opts.subject ?? DIGEST,
    predicateType,
    predicate,
  });
  const bytes = Buffer.from(JSON.stringify(bundle));
  return {
    source: 'referrers',
    kind: 'attestation',
    manifestDigest: `sha256:${(++n).toString(16).padStart(64, '0')}` as Digest,
    layerDigest: `sha256:${createHash('sha256').update(bytes).digest('hex')}` as Digest,
    bundle: parseBundle(bytes),
    predicateType,
    size: bytes.length,
  };
}

const kev = (ids: string[], problem?: string): KnownExploitedCatalog => ({
  version: ids.join(','),
  problem,
  has: (id) => ids.includes(id),
});

function engine(gates: unknown[], extra: Record<string, unknown> = {}): PolicyEngine {
  const input = [{ name: 'gated', match: ['**'], action: 'verify', gates, ...extra }] as PoliciesInput;
  return new PolicyEngine(
    policiesSchema.parse(input),
    trustSchema.parse({
      keys: { scanner: { pem: scannerKey.publicKeyPem }, rogue: { pem: rogueKey.publicKeyPem } },
    }),
  );
}

function decide(
  e: PolicyEngine,
  items: FoundSignature[],
  opts: {
    reader?: CachingAttestationReader;
    kev?: KnownExploitedCatalog;
    images?: ImageFacts[];
    now?: number;
    problems?: string[];
  } = {},
): Decision {
  return e.decide({
    upstream: 'registry.test',
    repository: 'acme/app',
    digest: DIGEST,
    evidence: { subject: DIGEST, items, roundTrips: 0, problems: opts.problems ?? [] },
    verifier: store,
    reader: opts.reader ?? new CachingAttestationReader(),
    ...(opts.kev !== undefined ? { kev: opts.kev } : {}),
    ...(opts.images !== undefined ? { images: opts.images } : {}),
    now: opts.now ?? NOW,
  });
}

const gate = (d: Decision, name: string): GateResult => {
  const g = d.gates?.find((x) => x.gate === name);
  if (g === undefined) throw new Error(`no gate ${name}`);
  return g;
};

/** The cookbook rule: CRITICAL with a known exploit AND a fix → deny; CRITICAL without a fix → warn. */
const cookbook = [
  {
    name: 'exploitable-criticals',
    attestors: scanner,
    vulnerabilities: { max: { critical: 0 }, fixAvailable: true, knownExploited: true },
  },
  {
    name: 'unfixed-criticals',
    mode: 'warn',
    attestors: scanner,
    vulnerabilities: { max: { critical: 0 }, fixAvailable: false },
  },
];

const trivy = (findings: Finding[], finishedOn = new Date(NOW - DAY).toISOString()) =>
  attest(COSIGN_VULN, cosignVulnPredicate(trivyReport(findings), { finishedOn }));

const critFixedKev: Finding = {
  id: 'CVE-2024-3094',
  pkg: 'xz-utils',
  installed: '5.6.0-0.2',
  fixed: ['5.6.1+really5.4.5-1'],
  severity: 'critical',
};
const critNoFix: Finding = { id: 'CVE-2024-9999', pkg: 'libfoo', installed: '1.0', severity: 'critical' };

describe('vulnerabilities gate', () => {
  it('denies CRITICAL with a fix and a known exploit, naming policy and gate, listing the facts', () => {
    const d = decide(engine(cookbook), [trivy([critFixedKev])], { kev: kev(['CVE-2024-3094']) });
    expect(d.result).toBe('deny');
    expect(formatDenyMessage(d)).toMatch(
      /^denied by policy "gated": gate "exploitable-criticals": 1 critical \(max 0\)/,
    );
    const g = gate(d, 'exploitable-criticals');
    expect(g.result).toBe('deny');
    expect(g.facts.failing).toEqual([
      {
        id: 'CVE-2024-3094',
        package: 'xz-utils',
        installed: '5.6.0-0.2',
        fixed: ['5.6.1+really5.4.5-1'],
        severity: 'critical',
        knownExploited: true,
      },
    ]);
    expect(g.attestation).toMatchObject({
      timeSource: 'scan',
      candidates: 1,
      signer: { kind: 'key', key: 'scanner' },
    });
    expect(decisionDetail(d).gates?.map((x) => [x.gate, x.result])).toEqual([
      ['exploitable-criticals', 'deny'],
      ['unfixed-criticals', 'pass'],
    ]);
  });

  it('serves CRITICAL without a fix with a warning (decision warn), and CRITICAL with a fix but no known exploit', () => {
    const d = decide(engine(cookbook), [trivy([critNoFix, { ...critFixedKev, id: 'CVE-2024-1111' }])], {
      kev: kev(['CVE-2024-3094']),
    });
    expect(d.result).toBe('warn');
    expect(gate(d, 'exploitable-criticals').result).toBe('pass');
    expect(gate(d, 'unfixed-criticals').result).toBe('warn');
    expect(d.reasons[0]).toMatch(/gate "unfixed-criticals" \(warn\): 1 critical/);
  });

  it('reads Grype reports and its own knownExploited marks', () => {
    const att = attest(
      COSIGN_VULN,
      cosignVulnPredicate(grypeReport([{ ...critFixedKev, id: 'CVE-2025-1', kev: true }]), {
        scanner: 'grype',
        finishedOn: new Date(NOW).toISOString(),
      }),
    );
    expect(decide(engine(cookbook), [att], { kev: kev([]) }).result).toBe('deny');
  });

  it('does not count an ignored ID until its date has passed, then lists the expired ignore', () => {
    const gates = [
      {
        name: 'crit',
        attestors: scanner,
        vulnerabilities: { max: { critical: 0 }, ignore: [{ id: 'CVE-2024-9999', until: '2026-06-15' }] },
      },
    ];
    const e = engine(gates);
    expect(decide(e, [trivy([critNoFix])]).result).toBe('allow');
    const later = decide(e, [trivy([critNoFix])], { now: Date.parse('2026-06-16T00:00:01Z') });
    expect(later.result).toBe('deny');
    expect(gate(later, 'crit').reasons).toContain('expired ignores: CVE-2024-9999 (until 2026-06-15)');
  });

  it('admits a finding an OpenVEX statement from the same attestor marks not_affected, not one from another key', () => {
    const gates = [{ name: 'crit', attestors: scanner, vulnerabilities: { max: { critical: 0 } } }];
    const product = `pkg:oci/app@sha256%3A${'a'.repeat(64)}`;
    const vex = (key?: TestKeyPair) =>
      attest(
        OPENVEX,
        openVex([{ id: 'CVE-2024-9999', status: 'not_affected', product }]),
        key ? { key } : {},
      );
    expect(decide(engine(gates), [trivy([critNoFix]), vex()]).result).toBe('allow');
    expect(decide(engine(gates), [trivy([critNoFix]), vex(rogueKey)]).result).toBe('deny');
    // A statement about another image digest does not apply here.
    const elsewhere = attest(
      OPENVEX,
      openVex([
        { id: 'CVE-2024-9999', status: 'not_affected', product: `pkg:oci/app@sha256%3A${'c'.repeat(64)}` },
      ]),
    );
    expect(decide(engine(gates), [trivy([critNoFix]), elsewhere]).result).toBe('deny');
  });

  it('fails a stale scan and a scan without finish time under maxScanAge', () => {
    const gates = [{ name: 'fresh', attestors: scanner, vulnerabilities: { max: {}, maxScanAge: '7d' } }];
    const stale = decide(engine(gates), [trivy([], new Date(NOW - 8 * DAY).toISOString())]);
    expect(stale.result).toBe('deny');
    expect(gate(stale, 'fresh').reasons[0]).toMatch(/scan is stale: finished .* 8d ago, over maxScanAge 7d/);
    expect(decide(engine(gates), [trivy([], new Date(NOW - 6 * DAY).toISOString())]).result).toBe('allow');
  });

  it('lets the newest valid scan decide, and says which one', () => {
    const old = trivy([critNoFix], new Date(NOW - 3 * DAY).toISOString());
    const rescan = trivy([], new Date(NOW - DAY).toISOString());
    const gates = [{ name: 'crit', attestors: scanner, vulnerabilities: { max: { critical: 0 } } }];
    const d = decide(engine(gates), [old, rescan]);
    expect(d.result).toBe('allow');
    expect(gate(d, 'crit').attestation).toMatchObject({
      manifestDigest: rescan.manifestDigest,
      candidates: 2,
    });
    expect(gate(d, 'crit').reasons[0]).toContain('newest of 2');
    // And the other way round: a newer scan with a finding wins over an older clean one.
    const worse = trivy([critNoFix], new Date(NOW - 1000).toISOString());
    expect(decide(engine(gates), [rescan, worse]).result).toBe('deny');
  });

  it('does not count a report bound to another digest or signed by another key', () => {
    const gates = [{ name: 'crit', attestors: scanner, vulnerabilities: { max: { critical: 0 } } }];
    const other = attest(COSIGN_VULN, cosignVulnPredicate(trivyReport([])), { subject: OTHER });
    const rogue = attest(COSIGN_VULN, cosignVulnPredicate(trivyReport([])), { key: rogueKey });
    const d = decide(engine(gates), [other, rogue]);
    expect(d.result).toBe('deny');
    const reasons = gate(d, 'crit').reasons.join('\n');
    expect(reasons).toMatch(/no valid vulnerability scan attestation/);
    expect(reasons).toMatch(/do not include sha256:a{64}/);
  });

  it('accepts key bundles without a transparency-log entry only when the attestor allows it', () => {
    const gates = (tlog: boolean) => [
      { name: 'crit', attestors: [{ key: 'scanner', tlog }], vulnerabilities: { max: { critical: 0 } } },
    ];
    expect(decide(engine(gates(false)), [trivy([])]).result).toBe('allow');
    const strict = decide(engine(gates(true)), [trivy([])]);
    expect(strict.result).toBe('deny');
    expect(gate(strict, 'crit').reasons.join('\n')).toMatch(/tlog|transparency/);
  });

  it('never takes a key carried inside the bundle as a trust anchor (GHSA-fx35-mq7g-6g98)', () => {
    const gates = [{ name: 'crit', attestors: scanner, vulnerabilities: { max: { critical: 0 } } }];
    const predicate = cosignVulnPredicate(trivyReport([]));
    // Signed by the rogue key; the bundle names the configured key's hint, and in a second variant
    // carries the rogue key itself as a (self-made) certificate.
    const bundle = signBundle({ key: rogueKey, subject: DIGEST, predicateType: COSIGN_VULN, predicate }) as {
      verificationMaterial: Record<string, unknown>;
    };
    const hinted = structuredClone(bundle);
    hinted.verificationMaterial.publicKey = {
      hint: createHash('sha256')
        .update(scannerKey.publicKey.export({ type: 'spki', format: 'der' }))
        .digest('base64'),
    };
    const asItem = (b: unknown): FoundSignature => {
      const bytes = Buffer.from(JSON.stringify(b));
      return {
        source: 'referrers',
        kind: 'attestation',
        manifestDigest: `sha256:${(++n).toString(16).padStart(64, '0')}` as Digest,
        layerDigest: `sha256:${createHash('sha256').update(bytes).digest('hex')}` as Digest,
        bundle: parseBundle(bytes),
        predicateType: COSIGN_VULN,
        size: bytes.length,
      };
    };
    const d = decide(engine(gates), [asItem(hinted)]);
    expect(d.result).toBe('deny');
    expect(gate(d, 'crit').reasons.join('\n')).toMatch(/not valid/);
    const withKey = structuredClone(bundle);
    delete withKey.verificationMaterial.publicKey;
    withKey.verificationMaterial.certificate = {
      rawBytes: rogueKey.publicKey.export({ type: 'spki', format: 'der' }).toString('base64'),
    };
    expect(decide(engine(gates), [asItem(withKey)]).result).toBe('deny');
  });

  it('fails with "report format not understood" instead of passing an unknown report', () => {
    const sarif = attest(
      COSIGN_VULN,
      cosignVulnPredicate({ $schema: 'https://json.schemastore.org/sarif-2.1.0.json', runs: [] }),
    );
    const d = decide(
      engine([{ name: 'crit', attestors: scanner, vulnerabilities: { max: { critical: 0 } } }]),
      [sarif],
    );
    expect(d.result).toBe('deny');
    expect(gate(d, 'crit').reasons[0]).toMatch(/report format not understood/);
  });

  it('fails knownExploited conditions closed when the KEV catalog cannot be read', () => {
    const d = decide(engine(cookbook), [trivy([])], { kev: kev([], 'KEV catalog /x.json: not valid JSON') });
    expect(gate(d, 'exploitable-criticals').result).toBe('deny');
    expect(gate(d, 'exploitable-criticals').reasons[0]).toMatch(/KEV catalog/);
  });

  it('refuses an attestation larger than the gate maxBytes (counted on bytes received)', () => {
    const att = trivy([]);
    const gates = [
      { name: 'crit', attestors: scanner, maxBytes: 100, vulnerabilities: { max: { critical: 0 } } },
    ];
    const d = decide(engine(gates), [att]);
    expect(d.result).toBe('deny');
    expect(gate(d, 'crit').reasons.join('\n')).toMatch(/bytes, over maxBytes 100/);
  });

  it('parses each attestation once: a re-decision reads the cache', () => {
    const reader = new CachingAttestationReader();
    const att = trivy([critNoFix]);
    const e = engine(cookbook);
    decide(e, [att], { reader, kev: kev([]) });
    const parses = reader.parses;
    decide(e, [att], { reader, kev: kev([]) });
    expect(parses).toBe(1);
    expect(reader.parses).toBe(1);
  });

  it('keeps parses within a byte budget, least recently used dropped first, and still decides', () => {
    const a = trivy([critNoFix]);
    const b = trivy([critFixedKev]);
    const size = (f: FoundSignature) =>
      f.bundle.content.$case === 'dsseEnvelope' ? f.bundle.content.dsseEnvelope.payload.length : 0;
    const reader = new CachingAttestationReader({ maxBytes: size(a) + size(b) - 1 });
    const e = engine(cookbook);
    expect(decide(e, [a], { reader, kev: kev([]) }).result).toBe('warn');
    expect(reader.keptBytes).toBe(size(a));
    // b does not fit beside a: a goes, b stays.
    expect(decide(e, [b], { reader, kev: kev([critFixedKev.id]) }).result).toBe('deny');
    expect(reader.keptBytes).toBe(size(b));
    const parses = reader.parses;
    decide(e, [b], { reader, kev: kev([critFixedKev.id]) });
    expect(reader.parses).toBe(parses);
    decide(e, [a], { reader, kev: kev([]) });
    expect(reader.parses).toBe(parses + 1);
    // One larger than the whole budget is parsed for its decision and not kept.
    const tiny = new CachingAttestationReader({ maxBytes: 10 });
    expect(decide(e, [b], { reader: tiny, kev: kev([critFixedKev.id]) }).result).toBe('deny');
    expect(tiny.keptBytes).toBe(0);
  });
});

describe('sbom gate', () => {
  const log4j = (v: string) => ({
    name: 'log4j-core',
    version: v,
    purl: `pkg:maven/org.apache.logging.log4j/log4j-core@${v}`,
  });
  const xz = (v: string) => ({
    name: 'xz-utils',
    version: v,
    purl: `pkg:deb/debian/xz-utils@${v}?arch=amd64`,
  });
  const gates = [
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
  ];

  it('denies when no SBOM was attested', () => {
    const d = decide(engine(gates), []);
    expect(d.result).toBe('deny');
    expect(gate(d, 'sbom').reasons[0]).toMatch(/no valid SBOM attestation/);
  });

  it('denies banned packages by purl glob and semver range or exact version, in SPDX and CycloneDX', () => {
    const spdx = decide(engine(gates), [attest(SPDX, spdxDocument([log4j('2.14.1')]))]);
    expect(spdx.result).toBe('deny');
    expect(gate(spdx, 'sbom').facts.banned).toEqual([
      expect.objectContaining({ purl: 'pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1' }),
    ]);
    expect(decide(engine(gates), [attest(CYCLONEDX, cycloneDxBom([xz('5.6.1-1')], '1.7'))]).result).toBe(
      'deny',
    );
    expect(
      decide(engine(gates), [attest(SPDX, spdxDocument([log4j('2.17.1'), xz('5.4.5-0.3')]))]).result,
    ).toBe('allow');
  });
});

describe('provenance gate', () => {
  const gates = [
    {
      name: 'built-by-release',
      attestors: scanner,
      provenance: {
        builderId: 'https://github.com/actions/runner/*',
        sourceRepository: 'https://github.com/acme/*',
        sourceRef: 'refs/tags/v*',
      },
    },
  ];

  it('admits SLSA v1 from the right builder, repository and ref', () => {
    expect(
      decide(engine(gates), [
        attest(SLSA_V1, slsaV1({ repository: 'https://github.com/acme/app', ref: 'refs/tags/v1.2.0' })),
      ]).result,
    ).toBe('allow');
  });

  it('denies a wrong source ref and a wrong builder, saying what was found', () => {
    const ref = decide(engine(gates), [
      attest(SLSA_V1, slsaV1({ repository: 'https://github.com/acme/app', ref: 'refs/heads/feature' })),
    ]);
    expect(ref.result).toBe('deny');
    expect(gate(ref, 'built-by-release').reasons[0]).toBe(
      'sourceRef is "refs/heads/feature", expected "refs/tags/v*"',
    );
    const builder = decide(engine(gates), [
      attest(
        SLSA_V1,
        slsaV1({
          repository: 'https://github.com/acme/app',
          ref: 'refs/tags/v1',
          builderId: 'https://evil.test/runner',
        }),
      ),
    ]);
    expect(gate(builder, 'built-by-release').facts.builderId).toBe('https://evil.test/runner');
    // Anchored: a prefix is not a match.
    const fork = decide(engine(gates), [
      attest(SLSA_V1, slsaV1({ repository: 'https://github.com/acme-evil/app', ref: 'refs/tags/v1' })),
    ]);
    expect(fork.result).toBe('deny');
  });

  it('reads SLSA v0.2 invocation.configSource', () => {
    const g = [
      {
        name: 'src',
        attestors: scanner,
        provenance: { sourceRepository: 'https://github.com/acme/app', sourceRef: 'refs/heads/main' },
      },
    ];
    expect(
      decide(engine(g), [
        attest(SLSA_V02, slsaV02({ uri: 'git+https://github.com/acme/app@refs/heads/main' })),
      ]).result,
    ).toBe('allow');
  });
});

describe('age gate', () => {
  const gates = [{ name: 'fresh-base', age: { maxAge: '90d' } }];
  const img = (created: string | undefined, platform = 'linux/amd64'): ImageFacts => ({
    digest: DIGEST,
    platform,
    created,
    os: 'linux',
    architecture: 'amd64',
    labels: {},
  });

  it('admits a recent image, denies an old one on any platform, a missing and a future created', () => {
    expect(decide(engine(gates), [], { images: [img(new Date(NOW - 10 * DAY).toISOString())] }).result).toBe(
      'allow',
    );
    const old = decide(engine(gates), [], {
      images: [
        img(new Date(NOW - DAY).toISOString()),
        img(new Date(NOW - 100 * DAY).toISOString(), 'linux/arm64'),
      ],
    });
    expect(old.result).toBe('deny');
    expect(gate(old, 'fresh-base').reasons[0]).toMatch(/^linux\/arm64 .*100d ago, over maxAge 90d/);
    expect(gate(decide(engine(gates), [], { images: [img(undefined)] }), 'fresh-base').reasons[0]).toMatch(
      /no valid "created"/,
    );
    expect(
      gate(decide(engine(gates), [], { images: [img(new Date(NOW + DAY).toISOString())] }), 'fresh-base')
        .reasons[0],
    ).toMatch(/in the future/);
  });
});

describe('cel gate', () => {
  const gates = (expression: string) => [
    { name: 'trivy-only', attestors: scanner, predicateTypes: [COSIGN_VULN], cel: { expression } },
  ];

  it('evaluates an expression over predicate, predicateType, signer and image', () => {
    const att = trivy([]);
    const images: ImageFacts[] = [
      {
        digest: DIGEST,
        platform: 'linux/amd64',
        created: '2026-06-01T00:00:00Z',
        os: 'linux',
        architecture: 'amd64',
        labels: { team: 'payments' },
      },
    ];
    const ok = decide(
      engine(
        gates(
          'predicate.scanner.uri.startsWith("pkg:github/aquasecurity/trivy") && signer.key == "scanner" && image.labels.team == "payments"',
        ),
      ),
      [att],
      { images },
    );
    expect(ok.result).toBe('allow');
    const no = decide(engine(gates('predicate.scanner.uri.startsWith("pkg:github/anchore/grype")')), [att], {
      images,
    });
    expect(no.result).toBe('deny');
    expect(gate(no, 'trivy-only').reasons[0]).toMatch(/expression is false/);
    // A runtime error (a key the predicate lacks) fails the gate.
    const err = decide(engine(gates('predicate.nothing.here == "x"')), [att], { images });
    expect(gate(err, 'trivy-only').reasons[0]).toMatch(/expression error/);
  });

  it('rejects a bad expression at config load with its position', () => {
    const parse = (expression: string) =>
      policiesSchema.safeParse([{ name: 'p', match: ['**'], action: 'verify', gates: gates(expression) }])
        .error?.message;
    expect(parse('predicate.x ==')).toMatch(/CEL syntax error at 1:13/);
    expect(parse('predicat.x == 1')).toMatch(/unknown variable predicat/);
    expect(parse('nosuch(predicate)')).toMatch(/CEL error at 1:1: unknown function nosuch/);
    expect(parse('predicateType')).toMatch(/must be a bool/);
  });
});

describe('gate config', () => {
  it('rejects a gate with two kinds, a gate without attestors, a bad range and duplicate names', () => {
    const parse = (gates: unknown[]) =>
      policiesSchema.safeParse([{ name: 'p', match: ['**'], action: 'verify', gates }]);
    expect(
      parse([{ name: 'a', attestors: scanner, sbom: {}, age: { maxAge: '1d' } }]).error?.message,
    ).toMatch(/exactly one of vulnerabilities, sbom, provenance, age/);
    expect(parse([{ name: 'a', sbom: {} }]).error?.message).toMatch(/expected the attestors/);
    expect(
      parse([
        { name: 'a', attestors: scanner, sbom: { deny: [{ purl: 'pkg:npm/x', versions: 'not a range' }] } },
      ]).error?.message,
    ).toMatch(/semver range/);
    expect(
      parse([
        { name: 'a', age: { maxAge: '1d' } },
        { name: 'a', age: { maxAge: '2d' } },
      ]).error?.message,
    ).toMatch(/duplicate gate name/);
    expect(
      policiesSchema.safeParse([
        { name: 'p', match: ['**'], action: 'allow', gates: [{ name: 'a', age: { maxAge: '1d' } }] },
      ]).error?.message,
    ).toMatch(/gates apply only to action verify/);
  });

  it('checks that gate attestors name configured keys', () => {
    expect(() => engine([{ name: 'a', attestors: [{ key: 'nope' }], sbom: {} }])).toThrow(
      /policies.0.gates.0.attestors.0.key: unknown key "nope"/,
    );
  });
});
