import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { startFakeUpstream } from '../support/fake-upstream.ts';
import type { FakeUpstream } from '../support/fake-upstream.ts';
import { COSIGN_VULN, cosignVulnPredicate, trivyReport } from '../support/reports.ts';
import {
  createKeyPair,
  fakeRegistryWriter,
  pushBundleReferrer,
  pushClassicSignature,
  pushTestImage,
  signBundle,
  signClassic,
} from '../support/signer.ts';

const run = promisify(execFile);
const CLI = join(import.meta.dirname, '../../src/cli/run.ts');

/** Run `pullwarden check` as a real process; resolves with its exit code and output. */
async function check(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [CLI, 'check', ...args], { timeout: 60_000 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe('pullwarden check', () => {
  let fake: FakeUpstream;
  let dir: string;
  let config: string;
  let candidate: string;

  beforeAll(async () => {
    fake = await startFakeUpstream();
    dir = await mkdtemp(join(tmpdir(), 'pw-check-'));
    const key = createKeyPair();
    await writeFile(join(dir, 'cosign.pub'), key.publicKeyPem);
    const writer = fakeRegistryWriter(fake);
    const signed = await pushTestImage(writer, 'acme/signed', '1.0', 'signed content');
    await pushClassicSignature(writer, 'acme/signed', signed.digest, [
      signClassic({ key, subject: signed.digest, dockerReference: `${fake.host}/acme/signed` }),
    ]);
    await pushTestImage(writer, 'acme/unsigned', '1.0', 'unsigned content');
    // The signed image also carries a Trivy scan, signed by the same key, with one fixable critical.
    const report = trivyReport([
      {
        id: 'CVE-2024-3094',
        pkg: 'xz-utils',
        installed: '5.6.0-0.2',
        fixed: ['5.6.1+really5.4.5-1'],
        severity: 'critical',
      },
    ]);
    await pushBundleReferrer(
      writer,
      'acme/signed',
      signed,
      signBundle({
        key,
        subject: signed.digest,
        predicateType: COSIGN_VULN,
        predicate: cosignVulnPredicate(report),
      }),
      COSIGN_VULN,
    );
    candidate = join(dir, 'candidate.yaml');
    await writeFile(
      candidate,
      stringify({
        policies: [
          {
            name: 'acme-gated',
            match: [`${fake.host}/acme/**`],
            action: 'verify',
            signatures: { attestors: [{ key: 'release' }] },
            gates: [
              {
                name: 'fixable-criticals',
                attestors: [{ key: 'release' }],
                vulnerabilities: { max: { critical: 0 }, fixAvailable: true },
              },
              {
                name: 'any-high',
                mode: 'warn',
                attestors: [{ key: 'release' }],
                vulnerabilities: { max: { high: 0 } },
              },
            ],
          },
        ],
      }),
    );
    config = join(dir, 'pullwarden.yaml');
    await writeFile(
      config,
      stringify({
        storage: { dir: join(dir, 'data') },
        upstreams: { [fake.host]: { url: fake.url } },
        trust: { refresh: '0s', keys: { release: { file: './cosign.pub' } } },
        policies: [
          {
            name: 'acme',
            match: [`${fake.host}/acme/**`],
            action: 'verify',
            signatures: { attestors: [{ key: 'release' }] },
          },
        ],
      }),
    );
  });

  afterAll(async () => {
    await fake.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('exits 0 and names the policy and signer for a signed image', async () => {
    const r = await check([`${fake.host}/acme/signed:1.0`, '--config', config]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('decision: ALLOW');
    expect(r.stdout).toContain('policy:   acme (verify, enforce)');
    expect(r.stdout).toContain('key release');
  });

  it('exits 1 with every reason for an unsigned image, also as JSON', async () => {
    const r = await check([`${fake.host}/acme/unsigned:1.0`, '--config', config]);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain('decision: DENY');
    expect(r.stdout).toContain('no signature found');
    const j = await check([`${fake.host}/acme/unsigned:1.0`, '--config', config, '--json']);
    expect(j.code).toBe(1);
    const parsed = JSON.parse(j.stdout) as {
      result: string;
      decision: { policy: string; reasons: string[] };
    };
    expect(parsed.result).toBe('deny');
    expect(parsed.decision.policy).toBe('acme');
    expect(parsed.decision.reasons.join(' ')).toContain('no signature found');
  });

  it('exits 1 for an upstream that is not configured, and 2 for an error', async () => {
    const denied = await check(['evil.example/acme/app:1.0', '--config', config]);
    expect(denied.code).toBe(1);
    expect(denied.stdout).toContain('not configured');
    const missing = await check([`${fake.host}/acme/nothing:1.0`, '--config', config]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('MANIFEST_UNKNOWN');
  });

  it('evaluates a candidate policy with --policy for several images, printing every gate, without changing the config', async () => {
    const r = await check([
      `${fake.host}/acme/signed:1.0`,
      `${fake.host}/acme/unsigned:1.0`,
      '--config',
      config,
      '--policy',
      candidate,
    ]);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain('policy:   acme-gated (verify, enforce)');
    expect(r.stdout).toContain('✗ fixable-criticals (vulnerabilities, enforce): DENY');
    expect(r.stdout).toContain('✓ any-high (vulnerabilities, warn): PASS');
    expect(r.stdout).toContain('- CVE-2024-3094 critical xz-utils 5.6.0-0.2 → 5.6.1+really5.4.5-1');
    expect(r.stdout).toContain(`${fake.host}/acme/unsigned:1.0`);
    // The config's own policy still admits the signed image.
    expect((await check([`${fake.host}/acme/signed:1.0`, '--config', config])).code).toBe(0);
  });

  it('reports a bad candidate policy as a config error (exit 2)', async () => {
    const bad = join(dir, 'bad.yaml');
    await writeFile(
      bad,
      stringify([
        {
          name: 'x',
          match: ['**'],
          action: 'verify',
          gates: [{ name: 'g', attestors: [{ key: 'nope' }], sbom: {} }],
        },
      ]),
    );
    const r = await check([`${fake.host}/acme/signed:1.0`, '--config', config, '--policy', bad]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('policies.0.gates.0.attestors.0.key: unknown key "nope"');
  });
});
