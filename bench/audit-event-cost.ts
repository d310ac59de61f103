/**
 * `node bench/audit-event-cost.ts [N]`: what one audit event costs on the warm path.
 *
 * Starts the real app (in process, port 0) in front of an in-process upstream holding one image, pulls
 * it once, then sends N (default 5000) warm manifest HEADs by tag as containerd does (cached tag,
 * cached decision: no upstream request). Prints the bytes the audit trail grew by per event and the
 * process CPU time per HEAD (server and client share the process: an upper bound for the server), and
 * the same N events appended to a bare JSONL sink (the audit share of that CPU). A report, not a test.
 * For README's retention sizing.
 */
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { JsonlAuditSink } from '../src/audit/index.ts';
import type { AuditEvent } from '../src/audit/index.ts';
import { startTestProxy } from '../test/support/app.ts';
import { makeImage, startFakeUpstream } from '../test/support/fake-upstream.ts';

const N = Number(process.argv[2] ?? 5000);
const ACCEPT = 'application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json';

async function dirBytes(dir: string): Promise<number> {
  let total = 0;
  for (const name of await readdir(dir))
    if (name.endsWith('.jsonl')) total += (await stat(join(dir, name))).size;
  return total;
}

const fake = await startFakeUpstream();
const proxy = await startTestProxy({
  upstreams: { [fake.host]: { url: fake.url } },
  defaultUpstream: fake.host,
  policies: [{ name: 'allow-all', match: ['**'], action: 'allow' }],
});
try {
  makeImage(fake, 'library/nginx', '1.27');
  const url = `${proxy.url}/v2/library/nginx/manifests/1.27`;
  const headers = { accept: ACCEPT, 'user-agent': 'containerd/1.7.24' };
  const head = async () => {
    const res = await fetch(url, { method: 'HEAD', headers });
    await res.body?.cancel();
    if (res.status !== 200) throw new Error(`HEAD answered ${res.status}`);
  };
  for (let i = 0; i < 50; i++) await head();
  const dir = proxy.config.audit.dir;
  const bytesBefore = await dirBytes(dir);
  const upstreamBefore = fake.count();
  const cpu = process.cpuUsage();
  const started = performance.now();
  // 8 concurrent clients, like a handful of nodes.
  let next = 0;
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (next++ < N) await head();
    }),
  );
  const wall = performance.now() - started;
  const used = process.cpuUsage(cpu);
  const bytes = (await dirBytes(dir)) - bytesBefore;
  const lines = (await import('node:fs/promises')).readFile;
  const sample = (
    await lines(
      join(
        dir,
        (await readdir(dir))
          .filter((n) => n.endsWith('.jsonl'))
          .sort()
          .at(-1)!,
      ),
      'utf8',
    )
  )
    .trimEnd()
    .split('\n')
    .at(-1)!;

  // The audit share: the same events, appended serially to a bare sink (encode, hash, write, fsync).
  const event = JSON.parse(sample) as AuditEvent & { seq?: number; prev?: string; hash?: string };
  delete event.seq;
  delete event.prev;
  delete event.hash;
  const { tempDir } = await import('../test/unit/audit/helpers.ts');
  const bare = await tempDir();
  const sink = await JsonlAuditSink.open({ dir: bare.dir });
  const cpuSink = process.cpuUsage();
  await Promise.all(Array.from({ length: N }, () => sink.append(event)));
  const usedSink = process.cpuUsage(cpuSink);
  await sink.close();
  await bare.cleanup();

  const us = (u: NodeJS.CpuUsage) => ((u.user + u.system) / N).toFixed(1);
  console.log(
    `warm manifest HEADs: ${N} in ${(wall / 1000).toFixed(2)} s, upstream requests: ${fake.count() - upstreamBefore}`,
  );
  console.log(
    `audit bytes per event: ${(bytes / N).toFixed(0)} (line of this run: ${Buffer.byteLength(sample) + 1} bytes)`,
  );
  console.log(`process CPU per HEAD (server + client): ${us(used)} µs`);
  console.log(`audit sink CPU per event (encode + sha256 + write + fsync, batched): ${us(usedSink)} µs`);
  console.log(`sample line:\n${sample}`);
} finally {
  await proxy.close();
  await fake.close();
}
