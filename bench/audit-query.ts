/**
 * `node bench/audit-query.ts [DIR]`: `audit query` and `audit verify` on a 1 GB audit directory.
 *
 * Generates (once; reused when DIR already holds it) ~1 GiB of realistic chained audit lines in 64 MiB
 * files over 30 days, then times each query against a reference measured in the same run: reading every
 * byte of the directory and counting lines (the floor for anything that looks at every line), and
 * `grep -c` where available. Prints a Markdown table. A report, not a test: it never fails on a figure.
 *
 * Knobs (environment): PW_AUDIT_BENCH_BYTES (default 1 GiB), PW_AUDIT_BENCH_KEEP=1 keeps a generated
 * temporary directory.
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, open, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';
import { GENESIS, auditFileName, encodeRecord, queryAuditDir, verifyAuditDir } from '../src/audit/index.ts';
import type { AuditEvent, AuditQuery, AuditQueryOptions } from '../src/audit/index.ts';
import { forEachLine, lineChunks } from '../src/audit/lines.ts';

const TARGET = Number(process.env['PW_AUDIT_BENCH_BYTES'] ?? 1024 ** 3);
const FILE_BYTES = 64 * 1024 * 1024;
const DAYS = 30;
const END = Date.parse('2025-11-30T00:00:00Z');

/** Deterministic pseudo-random numbers (mulberry32), so that runs generate the same directory. */
function rng(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const hex = (r: () => number, n: number) =>
  Array.from({ length: n }, () => Math.floor(r() * 16).toString(16)).join('');

const RARE_DIGEST = `sha256:${'d'.repeat(64)}`;

async function generate(dir: string): Promise<number> {
  await mkdir(dir, { recursive: true });
  const r = rng(42);
  const upstreams = ['docker.io', 'ghcr.io', 'quay.io', 'registry.k8s.io', 'registry.example.com:5000'];
  const repos = Array.from({ length: 2000 }, (_, i) =>
    i % 3 === 0 ? `library/app${i}` : `team${i % 40}/svc${i}`,
  );
  const digests = Array.from({ length: 5000 }, () => `sha256:${hex(r, 64)}`);
  let seq = 0;
  let prev = GENESIS;
  let total = 0;
  let lines = 0;
  const start = END - DAYS * 86_400_000;
  // Time advances with the bytes written: the trail spans DAYS whatever the line size.
  const at = (written: number) => new Date(start + (written / TARGET) * (END - start));
  while (total < TARGET) {
    const fileStart = at(total);
    const handle = await open(join(dir, auditFileName(fileStart, seq + 1)), 'wx');
    let size = 0;
    let parts: string[] = [];
    let partBytes = 0;
    while (size < FILE_BYTES && total + size < TARGET) {
      const t = at(total + size);
      const blob = r() < 0.6;
      const deny = r() < 0.05;
      const d =
        lines === 500_000 || lines === 5_000 ? RARE_DIGEST : digests[Math.floor(r() * digests.length)]!;
      const tag = `v${Math.floor(r() * 20)}.${Math.floor(r() * 10)}`;
      const e: AuditEvent = {
        type: blob ? 'blob' : 'manifest',
        time: t.toISOString(),
        requestId: `req-${hex(r, 12)}`,
        client: `10.${Math.floor(r() * 4)}.${Math.floor(r() * 256)}.${Math.floor(r() * 256)}`,
        identity: r() < 0.3 ? `node-${Math.floor(r() * 300)}` : undefined,
        userAgent: r() < 0.5 ? 'containerd/v1.7.24' : 'cri-o/1.30.4 go/go1.22.5 os/linux arch/amd64',
        method: blob ? 'GET' : r() < 0.5 ? 'HEAD' : 'GET',
        upstream: upstreams[Math.floor(r() * upstreams.length)]!,
        repository: repos[Math.floor(r() * repos.length)]!,
        reference: blob || r() < 0.5 ? d : tag,
        tag,
        digest: d,
        mediaType: blob
          ? 'application/vnd.oci.image.layer.v1.tar+gzip'
          : 'application/vnd.oci.image.index.v1+json',
        decision: deny ? 'deny' : r() < 0.05 ? 'warn' : 'allow',
        policy: deny ? 'require-signed' : 'default',
        reasons: deny
          ? ['no signature verified for the digest by any attestor of policy require-signed']
          : [],
        signers: deny
          ? []
          : [
              {
                kind: 'keyless',
                issuer: 'https://token.actions.githubusercontent.com',
                subject: 'https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main',
              },
            ],
        cache: r() < 0.9 ? 'hit' : 'miss',
        bytes: blob ? Math.floor(r() * 50_000_000) : 1800,
        durationMs: Math.round(r() * 5000) / 10,
        status: deny ? 403 : 200,
      };
      seq += 1;
      const enc = encodeRecord(e, seq, prev);
      prev = enc.hash;
      const line = `${enc.line}\n`;
      const bytes = Buffer.byteLength(line);
      parts.push(line);
      partBytes += bytes;
      size += bytes;
      lines += 1;
      if (partBytes > 4 * 1024 * 1024) {
        await handle.write(parts.join(''));
        parts = [];
        partBytes = 0;
      }
    }
    if (parts.length > 0) await handle.write(parts.join(''));
    await handle.close();
    total += size;
  }
  return lines;
}

async function dirBytes(dir: string): Promise<{ bytes: number; files: number }> {
  let bytes = 0;
  const names = (await readdir(dir)).filter((n) => n.endsWith('.jsonl'));
  for (const n of names) bytes += (await stat(join(dir, n))).size;
  return { bytes, files: names.length };
}

async function time<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const t0 = performance.now();
  const value = await fn();
  return { ms: performance.now() - t0, value };
}

async function count(dir: string, q: AuditQuery, o?: AuditQueryOptions): Promise<number> {
  let n = 0;
  const it = queryAuditDir(dir, q, o);
  while (!(await it.next()).done) n += 1;
  return n;
}

async function readAll(dir: string): Promise<number> {
  let lines = 0;
  for (const n of (await readdir(dir)).filter((x) => x.endsWith('.jsonl')).sort()) {
    for await (const part of lineChunks(join(dir, n))) {
      if (part.lines) forEachLine(part.lines, () => (lines += 1) > 0);
    }
  }
  return lines;
}

async function grepCount(dir: string, pattern: string): Promise<number | undefined> {
  const files = (await readdir(dir)).filter((x) => x.endsWith('.jsonl')).map((n) => join(dir, n));
  try {
    const { stdout } = await promisify(execFile)('grep', ['-c', '-F', pattern, ...files], {
      maxBuffer: 1 << 20,
    });
    return stdout.split('\n').reduce((s, l) => s + (Number(l.split(':').pop()) || 0), 0);
  } catch {
    return undefined;
  }
}

const argDir = process.argv[2];
const dir = argDir ?? (await mkdtemp(join(tmpdir(), 'pw-audit-bench-')));
let { bytes, files } = await dirBytes(dir).catch(() => ({ bytes: 0, files: 0 }));
if (bytes < TARGET * 0.95) {
  if (files > 0) await rm(dir, { recursive: true, force: true });
  const g = await time(() => generate(dir));
  ({ bytes, files } = await dirBytes(dir));
  console.log(
    `generated ${g.value} lines, ${(bytes / 1024 ** 3).toFixed(2)} GiB in ${files} files in ${(g.ms / 1000).toFixed(1)} s`,
  );
} else {
  console.log(`reusing ${dir}: ${(bytes / 1024 ** 3).toFixed(2)} GiB in ${files} files`);
}

// Warm the page cache once, so that every row measures the same thing (a trail that is being written is
// largely in the page cache; a cold read is bounded by the disk, which the reference row shows too).
const reference = await time(() => readAll(dir));
const ref = await time(() => readAll(dir));
const rows: [string, number, string][] = [];
const add = (name: string, ms: number, result: string) => rows.push([name, ms, result]);
add('reference: read every byte, split lines (warm cache)', ref.ms, `${ref.value} lines`);
console.log(`first (cold) read: ${(reference.ms / 1000).toFixed(2)} s`);

const since24h = new Date(END - 86_400_000);
const cases: [string, AuditQuery, AuditQueryOptions?][] = [
  ['query --digest (one event)', { digest: RARE_DIGEST }],
  ['query --decision deny', { decision: 'deny' }],
  ['query --decision deny --since 24h', { decision: 'deny', since: since24h }],
  [
    'query --upstream ghcr.io --tag v3.1 --decision deny',
    { upstream: 'ghcr.io', tag: 'v3.1', decision: 'deny' },
  ],
  ['query --client node-7', { client: 'node-7' }],
  ['query --newest --limit 50', {}, { newestFirst: true, limit: 50 }],
  ['query --since 24h (no needle: time check per line)', { since: since24h }],
  ['query --repository "team1/*" (member check per line)', { repository: 'team1/*' }],
];
for (const [name, q, o] of cases) {
  const r = await time(() => count(dir, q, o));
  add(name, r.ms, `${r.value} events`);
}
const v = await time(() => verifyAuditDir(dir));
add('verify (sha256 of every line)', v.ms, v.value.ok ? `ok, ${v.value.lines} lines` : 'BROKEN');
const g = await time(() => grepCount(dir, '"decision":"deny"'));
if (g.value !== undefined)
  add('grep -c -F \'"decision":"deny"\' (external reference)', g.ms, `${g.value} lines`);

const gib = bytes / 1024 ** 3;
console.log(`\n${gib.toFixed(2)} GiB, ${files} files, Node ${process.version}\n`);
console.log('| measurement | time | GiB/s | vs reference | result |');
console.log('|---|---:|---:|---:|---|');
for (const [name, ms, result] of rows) {
  console.log(
    `| ${name} | ${(ms / 1000).toFixed(2)} s | ${(gib / (ms / 1000)).toFixed(2)} | ${(ms / ref.ms).toFixed(2)}× | ${result} |`,
  );
}
if (argDir === undefined && process.env['PW_AUDIT_BENCH_KEEP'] !== '1')
  await rm(dir, { recursive: true, force: true });
else console.log(`\nkept ${dir}`);
