import type { ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { queryAuditDir, verifyAuditDir } from '../../src/audit/index.ts';
import type { AuditRecord } from '../../src/audit/index.ts';
import { startTestProxy } from '../support/app.ts';
import type { TestProxy } from '../support/app.ts';
import { makeImage, makeIndex, startFakeUpstream } from '../support/fake-upstream.ts';
import type { FakeUpstream } from '../support/fake-upstream.ts';
import { startServeProcess, writeServeConfig } from '../support/serve-process.ts';

const ACCEPT = 'application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json';

let fake: FakeUpstream | undefined;
let proxy: TestProxy | undefined;
let child: ChildProcess | undefined;
let dir: string | undefined;

afterEach(async () => {
  child?.kill('SIGKILL');
  child = undefined;
  await proxy?.close();
  proxy = undefined;
  await fake?.close();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  dir = undefined;
});

async function all(auditDir: string): Promise<AuditRecord[]> {
  const out: AuditRecord[] = [];
  for await (const r of queryAuditDir(auditDir, {})) out.push(r);
  return out;
}

describe('audit events for pulls', () => {
  it('records every manifest and blob request as one story, denials included, in a chain that verifies', async () => {
    fake = await startFakeUpstream();
    proxy = await startTestProxy({
      upstreams: { [fake.host]: { url: fake.url } },
      defaultUpstream: fake.host,
      policies: [
        { name: 'no-secret', match: [`${fake.host}/acme/secret`], action: 'deny' },
        { name: 'allow-rest', match: ['**'], action: 'allow' },
      ],
    });
    const index = makeIndex(fake, 'acme/app', 'v1');
    makeImage(fake, 'acme/secret', 'v1');
    const child0 = index.images[0]!;
    const base = `${proxy.url}/v2/acme/app`;
    const headers = { accept: ACCEPT, 'user-agent': 'containerd/1.6.20' };
    // What containerd does: HEAD the tag, GET the index and a platform manifest by digest, then blobs.
    expect((await fetch(`${base}/manifests/v1`, { method: 'HEAD', headers })).status).toBe(200);
    await (await fetch(`${base}/manifests/${index.indexDigest}`, { headers })).arrayBuffer();
    await (await fetch(`${base}/manifests/${child0.manifestDigest}`, { headers })).arrayBuffer();
    const layer = await fetch(`${base}/blobs/${child0.layerDigests[0]}`, { headers });
    const layerBytes = (await layer.arrayBuffer()).byteLength;
    const denied = await fetch(`${proxy.url}/v2/acme/secret/manifests/v1`, { headers });
    expect(denied.status).toBe(403);

    const auditDir = proxy.config.audit.dir;
    const events = await all(auditDir);
    expect(events.map((e) => [e.type, e.method, e.reference, e.status])).toEqual([
      ['manifest', 'HEAD', 'v1', 200],
      ['manifest', 'GET', index.indexDigest, 200],
      ['manifest', 'GET', child0.manifestDigest, 200],
      ['blob', 'GET', child0.layerDigests[0], 200],
      ['manifest', 'GET', 'v1', 403],
    ]);
    // The digest requests carry the tag that resolved them.
    expect(events.slice(0, 4).every((e) => e.tag === 'v1')).toBe(true);
    expect(events[0]).toMatchObject({
      upstream: fake.host,
      repository: 'acme/app',
      digest: index.indexDigest,
      decision: 'allow',
      policy: 'allow-rest',
      userAgent: 'containerd/1.6.20',
      bytes: 0,
    });
    expect(events[3]).toMatchObject({ bytes: layerBytes, cache: 'miss' });
    expect(events[4]).toMatchObject({ decision: 'deny', policy: 'no-secret', repository: 'acme/secret' });
    expect((await verifyAuditDir(auditDir)).ok).toBe(true);

    const metrics = await (await fetch(`${proxy.url}/metrics`)).text();
    expect(metrics).toContain('pullwarden_denials_total{policy="no-secret",reason="policy"} 1');
    expect(metrics).toMatch(/pullwarden_audit_write_duration_seconds_count \d+/);
  });
});

describe('audit durability', () => {
  it('after SIGKILL, every response the client received has its event, and the chain verifies', async () => {
    fake = await startFakeUpstream();
    const img = makeImage(fake, 'acme/app', 'v1', { layers: 2, layerSize: 64 * 1024 });
    dir = await mkdtemp(join(tmpdir(), 'pw-audit-kill-'));
    const { config, port } = await writeServeConfig(dir, fake);
    child = await startServeProcess(config, port);
    const base = `http://127.0.0.1:${port}/v2/acme/app`;
    await (await fetch(`${base}/manifests/v1`)).arrayBuffer();

    // Many clients, each recording the request ids of the responses it fully received.
    const received: string[] = [];
    const paths = [
      ['HEAD', 'manifests/v1'],
      ['GET', `manifests/${img.manifestDigest}`],
      ['GET', `blobs/${img.layerDigests[0]}`],
      ['GET', `blobs/${img.layerDigests[1]}`],
    ] as const;
    let stop = false;
    const workers = Array.from({ length: 16 }, async (_, w) => {
      for (let i = 0; !stop && i < 10_000; i++) {
        const [method, path] = paths[(w + i) % paths.length]!;
        const id = randomUUID();
        try {
          const res = await fetch(`${base}/${path}`, { method, headers: { 'x-request-id': id } });
          await res.arrayBuffer();
          if (res.ok) received.push(id);
        } catch {
          return; // the server is gone
        }
      }
    });
    await new Promise((r) => setTimeout(r, 700 + Math.random() * 600));
    child.kill('SIGKILL');
    stop = true;
    await Promise.all(workers);
    expect(received.length).toBeGreaterThan(50);

    const auditDir = join(dir, 'data', 'audit');
    const ids = new Set((await all(auditDir)).map((e) => e.requestId));
    const missing = received.filter((id) => !ids.has(id));
    expect(missing).toEqual([]);
    const verified = await verifyAuditDir(auditDir);
    expect(verified.firstBreak).toBeUndefined();
  });
});
