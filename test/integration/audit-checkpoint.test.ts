import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeLine } from '../../src/audit/chain.ts';
import { startTestProxy } from '../support/app.ts';
import type { TestProxy } from '../support/app.ts';
import { makeImage, startFakeUpstream } from '../support/fake-upstream.ts';
import type { FakeUpstream } from '../support/fake-upstream.ts';
import { runCli } from '../support/cli.ts';

const ACCEPT = 'application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json';

describe('signed audit checkpoints from the config', () => {
  let fake: FakeUpstream;
  let proxy: TestProxy;
  let dir: string;

  beforeAll(async () => {
    fake = await startFakeUpstream();
    makeImage(fake, 'acme/app', 'v1');
    dir = await mkdtemp(join(tmpdir(), 'pw-checkpoint-'));
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    await writeFile(join(dir, 'audit-key.pem'), privateKey.export({ type: 'pkcs8', format: 'pem' }));
    await writeFile(join(dir, 'audit-key.pub'), publicKey.export({ type: 'spki', format: 'pem' }));
    proxy = await startTestProxy({
      upstreams: { [fake.host]: { url: fake.url } },
      defaultUpstream: fake.host,
      policies: [{ name: 'allow-all', match: ['**'], action: 'allow' }],
      audit: { checkpoint: { keyFile: join(dir, 'audit-key.pem'), every: 3 } },
    });
  });
  afterAll(async () => {
    await fake?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('signs checkpoints with the configured key; audit verify --key accepts them and catches a forged tail', async () => {
    for (let i = 0; i < 7; i++) {
      const res = await fetch(`${proxy.url}/v2/acme/app/manifests/v1`, {
        method: 'HEAD',
        headers: { accept: ACCEPT },
      });
      expect(res.status).toBe(200);
    }
    const config = join(proxy.dir, 'pullwarden.yaml');
    await proxy.close({ keepData: true });

    const head = await runCli(['audit', 'head', '--config', config], dir);
    expect(head.code).toBe(0);
    const ok = await runCli(
      ['audit', 'verify', '--config', config, '--key', 'audit-key.pub', '--expect-head', head.stdout.trim()],
      dir,
    );
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toContain('newest signed checkpoint');
    expect(ok.stdout).toContain('0 line(s) after it'); // the shutdown checkpoint closes the trail

    // A forger with write access but without the key: edit the first event, recompute every hash.
    const auditDir = join(proxy.dir, 'data', 'audit');
    const [name] = (await readdir(auditDir)).filter((n) => n.endsWith('.jsonl'));
    const lines = (await readFile(join(auditDir, name!), 'utf8')).trimEnd().split('\n');
    let prev = '0'.repeat(64);
    const forged = lines.map((line, i) => {
      const r = JSON.parse(line) as Record<string, unknown> & { seq: number; time: string; type: string };
      if (i === 0) r['status'] = 404;
      const { seq } = r;
      delete r['prev'];
      delete r['hash'];
      delete (r as Partial<typeof r>).seq;
      const enc = encodeLine(r, seq, prev);
      prev = enc.hash;
      return enc.line;
    });
    await writeFile(join(auditDir, name!), `${forged.join('\n')}\n`);
    expect((await runCli(['audit', 'verify', '--config', config], dir)).code).toBe(0);
    const bad = await runCli(['audit', 'verify', '--config', config, '--key', 'audit-key.pub'], dir);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('signature does not verify');
    await rm(proxy.dir, { recursive: true, force: true });
  });
});
