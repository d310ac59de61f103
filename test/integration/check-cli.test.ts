import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { startFakeUpstream } from '../support/fake-upstream.ts';
import type { FakeUpstream } from '../support/fake-upstream.ts';
import {
  createKeyPair,
  fakeRegistryWriter,
  pushClassicSignature,
  pushTestImage,
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
});
