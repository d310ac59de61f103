import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { JsonlAuditSink } from '../../../src/audit/index.ts';
import type { AuditRecord } from '../../../src/audit/index.ts';
import { runCli } from '../../support/cli.ts';
import type { CliContext } from '../../../src/cli/main.ts';
import { auditFiles, event, tempDir } from './helpers.ts';

let dir: string;
let cleanup: () => Promise<void>;
let auditDir: string;
beforeEach(async () => {
  ({ dir, cleanup } = await tempDir('pw-audit-cli-'));
  auditDir = join(dir, 'data', 'audit');
  const sink = await JsonlAuditSink.open({ dir: auditDir });
  const now = Date.now();
  await sink.append(
    event({ requestId: 'old', time: new Date(now - 48 * 3_600_000).toISOString(), decision: 'allow' }),
  );
  await sink.append(
    event({
      requestId: 'denied',
      time: new Date(now - 3_600_000).toISOString(),
      upstream: 'ghcr.io',
      repository: 'acme/app',
      tag: 'v1',
      reference: 'v1',
      decision: 'deny',
      policy: 'signed-only',
      status: 403,
      bytes: 0,
    }),
  );
  await sink.append(
    event({ requestId: 'recent', time: new Date(now - 60_000).toISOString(), client: '10.9.9.9' }),
  );
  await sink.close();
});
afterEach(async () => {
  await cleanup();
});

const run = (argv: string[], overrides: Partial<CliContext> = {}) => runCli(argv, dir, overrides);

describe('pullwarden audit query', () => {
  it('prints a table of the matching events', async () => {
    const r = await run(['audit', 'query', '--dir', auditDir, '--decision', 'deny']);
    expect(r.code).toBe(0);
    const [header, row, ...rest] = r.stdout.trimEnd().split('\n');
    expect(header).toMatch(/^TIME\s+TYPE\s+DECISION\s+STATUS\s+BYTES\s+CLIENT\s+POLICY\s+IMAGE$/);
    expect(rest).toEqual([]);
    expect(row).toMatch(
      /manifest\s+deny\s+403\s+0 10\.0\.0\.1\s+signed-only\s+ghcr\.io\/acme\/app:v1@sha256:aaaaaaaaaaaa$/,
    );
  });

  it('prints JSON lines with --json and takes relative times', async () => {
    const r = await run(['audit', 'query', '--dir', auditDir, '--since', '24h', '--json']);
    expect(r.code).toBe(0);
    const rows = r.stdout
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l) as AuditRecord);
    expect(rows.map((x) => x.requestId)).toEqual(['denied', 'recent']);
    expect(rows[0]).toMatchObject({ seq: 2, hash: expect.stringMatching(/^[0-9a-f]{64}$/) as unknown });
  });

  it('combines filters, limits and orders newest first', async () => {
    const q = (...args: string[]) =>
      run(['audit', 'query', '--dir', auditDir, '--json', ...args]).then((r) =>
        r.stdout
          .trimEnd()
          .split('\n')
          .filter((l) => l !== '')
          .map((l) => (JSON.parse(l) as AuditRecord).requestId),
      );
    expect(await q('--client', '10.9.9.9')).toEqual(['recent']);
    expect(await q('--repository', 'acme/*', '--tag', 'v1', '--upstream', 'ghcr.io')).toEqual(['denied']);
    expect(await q('--policy', 'default', '--until', '2h')).toEqual(['old']);
    expect(await q('--newest', '--limit', '2')).toEqual(['recent', 'denied']);
    expect(await q('--digest', `sha256:${'a'.repeat(64)}`, '--type', 'blob')).toEqual([]);
  });

  it('reads the audit directory from the config file (<storage.dir>/audit)', async () => {
    await writeFile(join(dir, 'pullwarden.yaml'), 'storage:\n  dir: ./data\nupstreams:\n  ghcr.io: {}\n');
    const r = await run(['audit', 'query', '--config', 'pullwarden.yaml', '--json']);
    expect(r.code).toBe(0);
    expect(r.stdout.trimEnd().split('\n')).toHaveLength(3);
    const viaEnv = await run(['audit', 'verify'], {
      env: { PULLWARDEN_CONFIG: join(dir, 'pullwarden.yaml') },
    });
    expect(viaEnv.code).toBe(0);
  });

  it('rejects bad options with a usage error', async () => {
    expect((await run(['audit', 'query', '--dir', auditDir, '--decision', 'maybe'])).code).toBe(2);
    expect((await run(['audit', 'query', '--dir', auditDir, '--since', 'yesterday'])).code).toBe(2);
    expect((await run(['audit', 'query', '--dir', auditDir, '--limit', '0'])).code).toBe(2);
    expect((await run(['audit', 'query', '--dir', auditDir, '--config', 'x'])).code).toBe(2);
  });

  it('reports a missing directory as an error', async () => {
    const r = await run(['audit', 'query', '--dir', join(dir, 'nope')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('ENOENT');
  });
});

describe('pullwarden audit verify', () => {
  it('exits 0 and prints the head of an intact chain', async () => {
    const r = await run(['audit', 'verify', '--dir', auditDir]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(
      /1 file, 3 lines checked\nok: head seq 3 [0-9a-f]{64} \(audit-.*\.jsonl line 3\)\n$/,
    );
  });

  it('exits 1 and prints the first break', async () => {
    const [name] = await auditFiles(auditDir);
    const path = join(auditDir, name!);
    await writeFile(path, (await readFile(path, 'utf8')).replace('"decision":"deny"', '"decision":"allow"'));
    const r = await run(['audit', 'verify', '--dir', auditDir]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`BROKEN at ${name} line 2: the content does not match its hash`);
    const json = await run(['audit', 'verify', '--dir', auditDir, '--json']);
    expect(json.code).toBe(1);
    expect(JSON.parse(json.stdout)).toMatchObject({ ok: false, firstBreak: { file: name, line: 2 } });
  });

  it('verifies an empty directory', async () => {
    await mkdir(join(dir, 'empty'));
    const r = await run(['audit', 'verify', '--dir', join(dir, 'empty')]);
    expect(r).toMatchObject({ code: 0 });
    expect(r.stdout).toContain('ok: empty');
  });
});

describe('pullwarden audit head, verify --key and --expect-head', () => {
  it('prints the head, which verify --expect-head then finds; signed checkpoints verify with --key', async () => {
    const { generateKeyPairSync } = await import('node:crypto');
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    const keyed = join(dir, 'keyed');
    const sink = await JsonlAuditSink.open({
      dir: keyed,
      checkpoint: { key: privateKey, everyEvents: 2, intervalMs: 3_600_000 },
    });
    for (let i = 0; i < 5; i++) await sink.append(event({ requestId: `k${i}` }));
    await sink.close();
    const pub = join(dir, 'audit-key.pub');
    await writeFile(pub, publicKey.export({ type: 'spki', format: 'pem' }));

    const head = await run(['audit', 'head', '--dir', keyed]);
    expect(head.code).toBe(0);
    expect(head.stdout).toMatch(/^\d+:[0-9a-f]{64}\n$/);
    const ok = await run([
      'audit',
      'verify',
      '--dir',
      keyed,
      '--key',
      pub,
      '--expect-head',
      head.stdout.trim(),
    ]);
    expect(ok).toMatchObject({ code: 0 });
    expect(ok.stdout).toContain('newest signed checkpoint');

    // Without checkpoints, --key fails: nothing anchors the chain.
    const bare = await run(['audit', 'verify', '--dir', auditDir, '--key', pub]);
    expect(bare.code).toBe(1);
    expect(bare.stderr).toContain('no checkpoint signed');
    const wrong = await run(['audit', 'verify', '--dir', auditDir, '--expect-head', head.stdout.trim()]);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toContain('is not in the trail');
    const bad = await run(['audit', 'verify', '--dir', keyed, '--expect-head', 'nope']);
    expect(bad.code).toBe(2);
    const notKey = await run(['audit', 'verify', '--dir', keyed, '--key', join(dir, 'missing.pub')]);
    expect(notKey.code).toBe(2);
  });
});

describe('a trail of several chains (replicas on a shared volume)', () => {
  /** Two replicas' chains under one base, their events interleaved in time. */
  async function twoReplicas(): Promise<string> {
    const base = join(dir, 'shared', 'audit');
    const t0 = Date.now() - 600_000;
    for (const [replica, offsets] of [
      ['replica-a', [0, 2, 4]],
      ['replica-b', [1, 3]],
    ] as const) {
      const sink = await JsonlAuditSink.open({ dir: join(base, replica) });
      for (const o of offsets) {
        await sink.append(
          event({ requestId: `${replica}-${o}`, time: new Date(t0 + o * 1000).toISOString() }),
        );
      }
      await sink.close();
    }
    return base;
  }

  it('audit verify checks every chain, not an empty base', async () => {
    const base = await twoReplicas();
    const ok = await run(['audit', 'verify', '--dir', base]);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toContain(`${join(base, 'replica-a')}: 1 file, 3 lines checked`);
    expect(ok.stdout).toContain(`${join(base, 'replica-b')}: 1 file, 2 lines checked`);
    expect(ok.stdout).toMatch(/ok: 2 chains\n$/);
    expect(ok.stdout).not.toContain('ok: empty');

    // One replica's chain edited: the whole trail fails and names that chain.
    const [file] = await auditFiles(join(base, 'replica-b'));
    const path = join(base, 'replica-b', file!);
    await writeFile(path, (await readFile(path, 'utf8')).replace('replica-b-3', 'replica-b-9'));
    const broken = await run(['audit', 'verify', '--dir', base]);
    expect(broken.code).toBe(1);
    expect(broken.stderr).toContain('BROKEN at');
    expect(broken.stderr).toMatch(/BROKEN: 1 of 2 chains \(replica-b\)\n$/);
    const json = await run(['audit', 'verify', '--dir', base, '--json']);
    expect(json.code).toBe(1);
    const parsed = JSON.parse(json.stdout) as { ok: boolean; chains: Array<{ dir: string; ok: boolean }> };
    expect(parsed.chains.map((c) => [c.dir, c.ok])).toEqual([
      [join(base, 'replica-a'), true],
      [join(base, 'replica-b'), false],
    ]);
    // A head names one chain: with several, say so instead of checking one of them.
    const head = await run(['audit', 'verify', '--dir', base, '--expect-head', 'a'.repeat(64)]);
    expect(head.code).toBe(2);
    expect(head.stderr).toContain('holds 2 chains (replica-a, replica-b)');
  });

  it('audit query merges the chains in time order, newest first and with a limit too', async () => {
    const base = await twoReplicas();
    const ids = async (...args: string[]) =>
      (await run(['audit', 'query', '--dir', base, '--json', ...args])).stdout
        .trimEnd()
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => (JSON.parse(l) as AuditRecord).requestId);
    expect(await ids()).toEqual(['replica-a-0', 'replica-b-1', 'replica-a-2', 'replica-b-3', 'replica-a-4']);
    expect(await ids('--newest', '--limit', '3')).toEqual(['replica-a-4', 'replica-b-3', 'replica-a-2']);
    expect(await ids('--limit', '2')).toEqual(['replica-a-0', 'replica-b-1']);
  });

  it('audit head prints one head per chain', async () => {
    const base = await twoReplicas();
    const r = await run(['audit', 'head', '--dir', base]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^replica-a 3:[0-9a-f]{64}\nreplica-b 2:[0-9a-f]{64}\n$/);
  });

  it('with --config and storage.shared, verify and query read every replica of the volume', async () => {
    const base = await twoReplicas();
    const config = join(dir, 'shared.yaml');
    await writeFile(
      config,
      [
        `storage: { dir: ${join(dir, 'shared')}, shared: true, replica: replica-a }`,
        'upstreams: { r.example: { url: "https://r.example" } }',
        '',
      ].join('\n'),
    );
    const v = await run(['audit', 'verify', '--config', config]);
    expect(v.code).toBe(0);
    expect(v.stdout).toMatch(/ok: 2 chains\n$/);
    const q = await run(['audit', 'query', '--config', config, '--json']);
    expect(q.stdout.trimEnd().split('\n')).toHaveLength(5);
    // head stays this replica's own, the one to ship elsewhere.
    const h = await run(['audit', 'head', '--config', config]);
    expect(h.stdout).toMatch(/^3:[0-9a-f]{64}\n$/);
    expect(base).toBe(join(dir, 'shared', 'audit'));
  });
});
