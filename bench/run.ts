/**
 * `npm run bench`: pullwarden against references measured in the same run, on 127.0.0.1 only.
 *
 * Everything is started here: distribution 2.8 as the upstream (seeded with skopeo), distribution in
 * proxy mode as the peer, and pullwarden as a child process (`node --max-semi-space-size=1
 * bin/pullwarden.js serve`, as production runs it) so that its peak RSS can be read from /proc. Prints a Markdown table of ratios and targets, writes it to
 * bench/results/latest.md, and exits 0 even when a target is missed: this is a report, not a test.
 * See docs/benchmark.md for what each row measures.
 *
 * Knobs (environment): PW_BENCH_QUICK=1 shrinks images and durations (a smoke run, figures not
 * comparable); PW_BENCH_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof" adds flags for the
 * pullwarden child (after the production flags, see PRODUCTION_NODE_ARGS).
 * Rows g, h, i (the trust decision's cost) are in trust-rows.ts; l, m, n (several workers) below.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { images, writeOciLayout } from '../test/support/oci-layout.ts';
import type { WrittenLayout } from '../test/support/oci-layout.ts';
import { run, startDaemon, waitFor } from '../test/support/proc.ts';
import { blobGets, startRegistry } from '../test/support/registry.ts';
import type { Registry } from '../test/support/registry.ts';
import { pushLayout, skopeoCopy } from '../test/support/skopeo.ts';
import { hey } from './hey.ts';
import { processCpuMs, reapedChildrenCpuMs } from './cpu.ts';
import { childPids, readVmField, sampleRssTree } from './proc-stats.ts';
import type { ProcessTreePeak } from './proc-stats.ts';
import { PRODUCTION_NODE_ARGS, startPullwarden } from './pullwarden-process.ts';
import type { PullwardenProcess } from './pullwarden-process.ts';
import { fmt, markdownTable, mib, ratio } from './report.ts';
import type { Row } from './report.ts';
import { gatedPolicyRate, largeAttestationDecision } from './gate-rows.ts';
import { keylessFirstDecision, verifyPolicyRate } from './trust-rows.ts';
import type { TrustBenchContext } from './trust-rows.ts';

const UPSTREAM = 'upstream.test';
const QUICK = process.env['PW_BENCH_QUICK'] === '1';
const NODE_ARGS = (process.env['PW_BENCH_NODE_ARGS'] ?? '').split(' ').filter((a) => a !== '');
/** Letters of the rows to run (e.g. `cf`); default all. For investigating one row. */
const ONLY = process.env['PW_BENCH_ONLY'] ?? 'abcdefghijklmn';
const want = (letters: string): boolean => Array.from(letters).some((l) => ONLY.includes(l));
const MiB = 1024 * 1024;
const SIZES = {
  /** The "~64–100 MB image": cached-blob throughput and cold whole-image pulls. */
  big: (QUICK ? 16 : 80) * MiB,
  /** The herd blob (16 concurrent cold GETs). */
  herd: (QUICK ? 4 : 16) * MiB,
  /** The RSS test blob: 1 GiB. */
  huge: (QUICK ? 128 : 1024) * MiB,
};
const LOAD_SECONDS = QUICK ? 2 : 5;
const COLD_PULL_REPEATS = QUICK ? 1 : 3;
const MANIFEST_ACCEPT = [
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
].join(', ');
const RSS_TARGET = 150 * 1000 * 1000;

const log = (msg: string): void => {
  process.stderr.write(`[bench ${((performance.now() - started) / 1000).toFixed(1).padStart(6)} s] ${msg}\n`);
};
const started = performance.now();

/** GETs `url` and reads the body to the end; returns status and body length. */
async function drain(
  url: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; bytes: number }> {
  const res = await fetch(url, { headers, signal: AbortSignal.timeout(300_000) });
  let bytes = 0;
  if (res.body !== null) for await (const chunk of res.body) bytes += (chunk as Uint8Array).byteLength;
  return { status: res.status, bytes };
}

async function mustDrain(
  url: string,
  expectBytes?: number,
  headers: Record<string, string> = {},
): Promise<void> {
  const { status, bytes } = await drain(url, headers);
  if (status !== 200 || (expectBytes !== undefined && bytes !== expectBytes)) {
    throw new Error(
      `GET ${url}: status ${status}, ${bytes} bytes (expected 200, ${expectBytes ?? 'any'} bytes)`,
    );
  }
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Milliseconds `fn` took. */
async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

interface Images {
  small: WrittenLayout;
  big: WrittenLayout;
  herd: WrittenLayout;
  huge: WrittenLayout;
}

function layer(l: WrittenLayout): { digest: string; size: number } {
  return l.images[0]!.layers[0]!;
}

/** Base URLs of one repository on pullwarden (path-prefix routing) and on a plain registry. */
const pwRepo = (pw: PullwardenProcess, repo: string): string => `${pw.url}/v2/${UPSTREAM}/${repo}`;
const regRepo = (r: Registry, repo: string): string => `${r.url}/v2/${repo}`;

async function seed(work: string, upstream: Registry): Promise<Images> {
  // Written and pushed one after another: each layout dir is removed once pushed, so at most one
  // copy of the 1 GiB blob sits in the temp dir besides the upstream's storage.
  const specs = [
    ['small', images.singleArch('pw-bench-small')],
    ['big', images.big('pw-bench-big', SIZES.big)],
    ['herd', images.big('pw-bench-herd', SIZES.herd)],
    ['huge', images.big('pw-bench-huge', SIZES.huge)],
  ] as const;
  const needed = { small: want('abdgjm'), big: want('cdl'), herd: want('en'), huge: want('f') };
  const out: Partial<Images> = {};
  for (const [name, spec] of specs) {
    if (!needed[name]) continue;
    const dir = join(work, `layout-${name}`);
    const layout = await writeOciLayout(dir, spec, { tag: 'v1' });
    await pushLayout(layout, upstream.host, `bench/${name}:v1`);
    await rm(dir, { recursive: true, force: true });
    out[name] = layout;
    log(`seeded bench/${name}:v1 (${mib(layout.totalBytes)})`);
  }
  return out as Images;
}

/** a + b: warm manifest HEAD by tag and GET by digest, requests per second. */
async function manifestRates(pw: PullwardenProcess, peer: Registry, imgs: Images): Promise<Row[]> {
  const headers = { Accept: MANIFEST_ACCEPT };
  const targets = [
    { who: 'pullwarden', base: pwRepo(pw, 'bench/small') },
    { who: 'peer', base: regRepo(peer, 'bench/small') },
  ];
  const tagRate: number[] = [];
  const digestRate: number[] = [];
  for (const t of targets) {
    // One warm-up request each: afterwards pullwarden holds the tag (tagTTL 5m) and both hold the
    // manifest; distribution's proxy mode still asks upstream for every tag request.
    await mustDrain(`${t.base}/manifests/v1`, undefined, headers);
    const r = await hey(`${t.base}/manifests/v1`, {
      method: 'HEAD',
      headers,
      concurrency: 32,
      duration: LOAD_SECONDS,
    });
    tagRate.push(r.requestsPerSec);
    log(`HEAD manifest by tag, ${t.who}: ${fmt(r.requestsPerSec)} req/s (${r.errors} cut off at the end)`);
  }
  for (const t of targets) {
    const url = `${t.base}/manifests/${imgs.small.digest}`;
    await mustDrain(url, imgs.small.size, headers);
    const r = await hey(url, { headers, concurrency: 32, duration: LOAD_SECONDS });
    digestRate.push(r.requestsPerSec);
    log(`GET manifest by digest, ${t.who}: ${fmt(r.requestsPerSec)} req/s`);
  }
  const [pwTag, peerTag] = tagRate as [number, number];
  const [pwDigest, peerDigest] = digestRate as [number, number];
  return [
    {
      measurement: 'a. warm manifest HEAD by tag (c=32)',
      pullwarden: `${fmt(pwTag)} req/s`,
      reference: `peer ${fmt(peerTag)} req/s`,
      ratio: ratio(pwTag, peerTag),
      target: '>= 10x peer',
      result: pwTag >= 10 * peerTag ? 'pass' : 'MISSED',
    },
    {
      measurement: 'b. manifest GET by digest (c=32)',
      pullwarden: `${fmt(pwDigest)} req/s`,
      reference: `peer ${fmt(peerDigest)} req/s`,
      ratio: ratio(pwDigest, peerDigest),
      target: '(none)',
      result: 'info',
    },
  ];
}

/** c: cached blob GET throughput, 40 full downloads of the big layer with concurrency 4. */
async function cachedBlob(
  pw: PullwardenProcess,
  peer: Registry,
  upstream: Registry,
  imgs: Images,
  label = 'c. cached blob GET',
): Promise<Row> {
  const { digest, size } = layer(imgs.big);
  const urls = {
    pullwarden: `${pwRepo(pw, 'bench/big')}/blobs/${digest}`,
    peer: `${regRepo(peer, 'bench/big')}/blobs/${digest}`,
  };
  // Warm both caches, and let distribution finish its background store of the blob. The manifest
  // comes first, as with every client: it admits the image's blobs in the repository.
  await mustDrain(`${pwRepo(pw, 'bench/big')}/manifests/v1`, undefined, { Accept: MANIFEST_ACCEPT });
  await mustDrain(urls.pullwarden, size);
  await mustDrain(urls.peer, size);
  await upstream.clearRequests({ quietMs: 1000 });
  const rates: Record<string, number> = {};
  const cores: Record<string, string> = {};
  for (const [who, url] of Object.entries(urls)) {
    const n = QUICK ? 12 : 40;
    // With several workers the cores of each show how the kernel spread hey's 4 connections.
    const m = await underLoad(who === 'pullwarden' ? pw.pid : undefined, () =>
      hey(url, { concurrency: 4, requests: n, timeoutMs: 300_000 }),
    );
    const r = m.value;
    if (r.totalBytes !== n * size)
      throw new Error(`${who}: read ${r.totalBytes} bytes, expected ${n * size}`);
    rates[who] = r.totalBytes / MiB / r.totalSecs;
    cores[who] =
      `${who === 'pullwarden' ? `${coresText(m.serverCores)} cores, ` : ''}hey ${m.heyCores.toFixed(2)}`;
    log(`cached blob GET, ${who}: ${fmt(rates[who])} MiB/s, ${cores[who]}`);
  }
  const upstreamHits = blobGets(await upstream.requests()).filter((q) => q.reference === digest).length;
  if (upstreamHits !== 0)
    log(`warning: ${upstreamHits} upstream GETs of the cached blob during the throughput run`);
  const pwRate = rates['pullwarden']!;
  const peerRate = rates['peer']!;
  return {
    measurement: `${label}, ${mib(size)} x ${QUICK ? 12 : 40}, c=4`,
    pullwarden: `${fmt(pwRate)} MiB/s (${cores['pullwarden']!})`,
    reference: `peer ${fmt(peerRate)} MiB/s`,
    ratio: ratio(pwRate, peerRate),
    target: '>= 1.0x peer',
    result: pwRate >= peerRate ? 'pass' : 'MISSED',
  };
}

/** e: 16 concurrent cold GETs of one blob; upstream blob GETs counted from the upstream's log. */
async function herd(
  pw: PullwardenProcess,
  peer: Registry,
  upstream: Registry,
  imgs: Images,
  label = 'e. herd: 16 concurrent cold GETs',
): Promise<Row> {
  const { digest, size } = layer(imgs.herd);
  const counts: Record<string, number> = {};
  for (const [who, base] of [
    ['pullwarden', pwRepo(pw, 'bench/herd')],
    ['peer', regRepo(peer, 'bench/herd')],
  ] as const) {
    // The manifest first, as a client would (and so the repository is known); only blob GETs count.
    await mustDrain(`${base}/manifests/v1`, undefined, { Accept: MANIFEST_ACCEPT });
    await upstream.clearRequests({ quietMs: 500 });
    await Promise.all(Array.from({ length: 16 }, () => mustDrain(`${base}/blobs/${digest}`, size)));
    // quietMs: distribution's proxy mode stores the blob with a second upstream GET in the background.
    counts[who] = blobGets(await upstream.requests({ quietMs: 1000 })).filter(
      (q) => q.reference === digest,
    ).length;
    log(`herd of 16, ${who}: ${counts[who]} upstream blob GETs`);
  }
  const pwCount = counts['pullwarden']!;
  const peerCount = counts['peer']!;
  return {
    measurement: `${label} of a ${mib(size)} blob, upstream blob GETs`,
    pullwarden: String(pwCount),
    reference: `peer ${peerCount}`,
    ratio: ratio(pwCount, peerCount),
    target: 'pullwarden = 1',
    result: pwCount === 1 ? 'pass' : 'MISSED',
  };
}

/** A bare Fastify HEAD responder in its own process (bench/bare-fastify.ts): the stack's ceiling. */
async function bareFastify(): Promise<{ url: string; stop: () => Promise<void> }> {
  const script = fileURLToPath(new URL('bare-fastify.ts', import.meta.url));
  const daemon = startDaemon(process.execPath, [...PRODUCTION_NODE_ARGS, script]);
  let url = '';
  await waitFor(
    'bare Fastify',
    () => {
      url = /http:\/\/127\.0\.0\.1:\d+/.exec(daemon.stdout())?.[0] ?? '';
      return Promise.resolve(url !== '');
    },
    { daemon, timeoutMs: 30_000 },
  );
  return { url, stop: () => daemon.stop() };
}

/** HEAD by tag at c=32 for LOAD_SECONDS, after one warm-up GET; requests per second. */
async function headRate(base: string): Promise<number> {
  return (await measuredHeadRate(base)).rate;
}

/**
 * {@link headRate}, with the cores the load generator and (given its pid) the server's process tree
 * used meanwhile: on the 2-core machine they share, what hey takes the server cannot have.
 */
async function measuredHeadRate(
  base: string,
  serverPid?: number,
): Promise<{ rate: number; heyCores: number; serverCores: number[] }> {
  const headers = { Accept: MANIFEST_ACCEPT };
  await mustDrain(`${base}/manifests/v1`, undefined, headers).catch(() => undefined);
  const m = await underLoad(serverPid, () =>
    hey(`${base}/manifests/v1`, { method: 'HEAD', headers, concurrency: 32, duration: LOAD_SECONDS }),
  );
  return { rate: m.value.requestsPerSec, heyCores: m.heyCores, serverCores: m.serverCores };
}

/**
 * Run one `hey` load (`load`) and measure the cores hey and the server's process tree (the primary
 * first, then each worker) used meanwhile.
 */
async function underLoad<T>(
  serverPid: number | undefined,
  load: () => Promise<T>,
): Promise<{ value: T; heyCores: number; serverCores: number[] }> {
  const tree = serverPid === undefined ? [] : [serverPid, ...childPids(serverPid)];
  const cpu = () => tree.map((pid) => processCpuMs(pid) ?? 0);
  const before = { hey: reapedChildrenCpuMs(), tree: cpu(), at: performance.now() };
  const value = await load();
  const ms = performance.now() - before.at;
  const after = cpu();
  return {
    value,
    heyCores: (reapedChildrenCpuMs() - before.hey) / ms,
    serverCores: after.map((t, i) => (t - before.tree[i]!) / ms),
  };
}

/** `1.23 (primary 0.31, workers 0.45 + 0.47)` for a process tree's cores. */
function coresText(cores: number[]): string {
  const total = cores.reduce((a, b) => a + b, 0).toFixed(2);
  if (cores.length === 1) return total;
  const workers = cores
    .slice(1)
    .map((c) => c.toFixed(2))
    .join(' + ');
  return `${total} (primary ${cores[0]!.toFixed(2)}, workers ${workers})`;
}

/**
 * m: warm tag HEAD, c=32: pullwarden with one worker against a bare Fastify HEAD responder (the
 * ceiling of this stack), and with `workers: 2` against one worker — all in this run.
 */
async function headScaling(upstream: Registry): Promise<Row[]> {
  const bare = await bareFastify();
  let ceiling: number;
  try {
    ceiling = await headRate(`${bare.url}/v2/bench/small`);
  } finally {
    await bare.stop();
  }
  log(`HEAD, bare Fastify: ${fmt(ceiling)} req/s`);
  const rates: number[] = [];
  const cores: string[] = [];
  for (const workers of [1, 2]) {
    const pw = await startPullwarden(UPSTREAM, upstream.url, { nodeArgs: NODE_ARGS, workers });
    try {
      const m = await measuredHeadRate(pwRepo(pw, 'bench/small'), pw.pid);
      rates.push(m.rate);
      cores.push(`${coresText(m.serverCores)} cores, hey ${m.heyCores.toFixed(2)}`);
    } finally {
      await pw.stop();
    }
    log(
      `HEAD manifest by tag, pullwarden workers: ${workers}: ${fmt(rates.at(-1)!)} req/s, ${cores.at(-1)!}`,
    );
  }
  const [one, two] = rates as [number, number];
  return [
    {
      measurement: 'm1. warm tag HEAD (c=32), 1 worker vs bare Fastify HEAD',
      pullwarden: `${fmt(one)} req/s`,
      reference: `bare Fastify ${fmt(ceiling)} req/s`,
      ratio: ratio(one, ceiling),
      target: '>= 0.5x bare Fastify',
      result: one >= 0.5 * ceiling ? 'pass' : 'MISSED',
    },
    {
      measurement: 'm2. warm tag HEAD (c=32), workers: 2 vs 1 worker',
      pullwarden: `${fmt(two)} req/s (${cores[1]!})`,
      reference: `1 worker ${fmt(one)} req/s (${cores[0]!})`,
      ratio: ratio(two, one),
      target: '>= 1.5x 1 worker',
      result: two >= 1.5 * one ? 'pass' : 'MISSED',
    },
  ];
}

/** d: cold whole-image pull time with skopeo, through a fresh pullwarden vs from upstream directly. */
async function coldPulls(work: string, upstream: Registry, imgs: Images): Promise<Row> {
  const direct: number[] = [];
  const through: number[] = [];
  for (let i = 0; i < COLD_PULL_REPEATS; i++) {
    const dest = join(work, `pull-${i}`);
    direct.push(
      await timed(() => skopeoCopy(`docker://${upstream.host}/bench/big:v1`, `dir:${dest}-direct`)),
    );
    await rm(`${dest}-direct`, { recursive: true, force: true });
    // A new process with a new storage dir: nothing cached, nothing in memory.
    const pw = await startPullwarden(UPSTREAM, upstream.url, { nodeArgs: NODE_ARGS });
    try {
      // Warm the process (JIT, lazily loaded modules, upstream connection) with a pull of the small
      // image, whose blobs the big image does not share: the big image's blobs stay cold, as for a
      // proxy that has been running for a while and meets a new image.
      await skopeoCopy(`docker://${pw.host}/${UPSTREAM}/bench/small:v1`, `dir:${dest}-warm`);
      await rm(`${dest}-warm`, { recursive: true, force: true });
      through.push(
        await timed(() => skopeoCopy(`docker://${pw.host}/${UPSTREAM}/bench/big:v1`, `dir:${dest}-pw`)),
      );
    } finally {
      await pw.stop();
      await rm(`${dest}-pw`, { recursive: true, force: true });
    }
    log(
      `cold pull ${i + 1}: direct ${(direct[i]! / 1000).toFixed(2)} s, pullwarden ${(through[i]! / 1000).toFixed(2)} s`,
    );
  }
  const d = median(direct) / 1000;
  const p = median(through) / 1000;
  const runs = COLD_PULL_REPEATS > 1 ? `median of ${COLD_PULL_REPEATS}` : '1 run';
  return {
    measurement: `d. cold skopeo pull of a ${mib(imgs.big.totalBytes)} image (${runs})`,
    pullwarden: `${fmt(p, 2)} s`,
    reference: `direct ${fmt(d, 2)} s`,
    ratio: ratio(p, d),
    target: '<= 1.15x direct',
    result: p <= 1.15 * d ? 'pass' : 'MISSED',
  };
}

/**
 * GETs the 1 GiB blob from `url` with 8 concurrent curl processes while sampling the RSS of `pid`
 * and of its children (a pullwarden's workers; a registry has none).
 */
async function peakWhileStreaming(
  pid: number,
  url: string,
  size: number,
): Promise<{ before: number; peak: ProcessTreePeak; secs: number }> {
  const before = readVmField(pid, 'VmRSS') ?? 0;
  const sampler = sampleRssTree(pid, 50);
  const t0 = performance.now();
  const results = await Promise.all(
    Array.from({ length: 8 }, () =>
      run('curl', ['-sS', '--noproxy', '*', '-o', '/dev/null', '-w', '%{http_code} %{size_download}', url], {
        timeoutMs: 300_000,
      }),
    ),
  ).finally(() => sampler.stop());
  const peak = sampler.stop();
  for (const r of results) {
    if (r.stdout.trim() !== `200 ${size}`) throw new Error(`curl ${url}: ${r.stdout} ${r.stderr}`);
  }
  return { before, peak, secs: (performance.now() - t0) / 1000 };
}

/** The largest per-process peak of a sampled process tree. */
const maxPeak = (p: ProcessTreePeak): number => Math.max(...p.perProcess.map((x) => x.peak));

/** A fresh peer's peak RSS while the 1 GiB blob streams cold to 8 clients (the reference of f, f2). */
async function peerRss(upstream: Registry, imgs: Images): Promise<number> {
  const { digest, size } = layer(imgs.huge);
  // A fresh peer, so its high-water mark is this transfer's and not the earlier load's.
  const peer = await startRegistry({ proxy: { remoteurl: upstream.url } });
  let theirs;
  try {
    await mustDrain(`${regRepo(peer, 'bench/huge')}/manifests/v1`, undefined, { Accept: MANIFEST_ACCEPT });
    theirs = await peakWhileStreaming(
      peer.daemon.pid,
      `${regRepo(peer, 'bench/huge')}/blobs/${digest}`,
      size,
    );
    await peer.requests({ quietMs: 1000 }); // let the background store finish before stopping
  } finally {
    await peer.stop();
  }
  log(
    `RSS peer: ${mib(theirs.before)} before, peak ${mib(maxPeak(theirs.peak))} (${theirs.secs.toFixed(1)} s)`,
  );
  return maxPeak(theirs.peak);
}

/**
 * f (one process) and f2 (`server.workers: auto`): peak RSS while one 1 GiB blob streams cold to 8
 * concurrent clients. The target is per process; with workers the total over the primary and its
 * workers (largest sum sampled at one moment) is printed beside it.
 */
async function rss(upstream: Registry, imgs: Images): Promise<Row[]> {
  const { digest, size } = layer(imgs.huge);
  const peer = await peerRss(upstream, imgs);
  const rows: Row[] = [];
  for (const workers of [undefined, 'auto'] as const) {
    const pw = await startPullwarden(UPSTREAM, upstream.url, {
      nodeArgs: NODE_ARGS,
      ...(workers === undefined ? {} : { workers }),
    });
    let mine;
    try {
      await mustDrain(`${pwRepo(pw, 'bench/huge')}/manifests/v1`, undefined, { Accept: MANIFEST_ACCEPT });
      mine = await peakWhileStreaming(pw.pid, `${pwRepo(pw, 'bench/huge')}/blobs/${digest}`, size);
    } finally {
      await pw.stop();
    }
    const each = mine.peak.perProcess.map((x) => mib(x.peak)).join(' + ');
    const n = mine.peak.perProcess.length;
    const perProcess = maxPeak(mine.peak);
    log(
      `RSS pullwarden${workers === undefined ? '' : ` (workers: ${workers})`}: ${mib(mine.before)} before, ` +
        `peak per process ${each} (primary first), total ${mib(mine.peak.total)} (${mine.secs.toFixed(1)} s)`,
    );
    rows.push({
      measurement:
        workers === undefined
          ? `f. peak RSS, one ${mib(size)} blob cold to 8 clients`
          : `f2. peak RSS, workers: auto (${n - 1} workers), one ${mib(size)} blob cold to 8 clients`,
      pullwarden:
        n === 1
          ? `${fmt(perProcess / 1e6)} MB`
          : `${fmt(perProcess / 1e6)} MB per process (max of ${n}), total ${fmt(mine.peak.total / 1e6)} MB`,
      reference: `peer ${fmt(peer / 1e6)} MB (info)`,
      ratio: ratio(perProcess, peer),
      target: '<= 150 MB per process',
      result: perProcess <= RSS_TARGET ? 'pass' : 'MISSED',
    });
  }
  return rows;
}

async function main(): Promise<number> {
  const work = await mkdtemp(join(tmpdir(), 'pw-bench-'));
  const cleanup: (() => Promise<void>)[] = [() => rm(work, { recursive: true, force: true })];
  const rows: Row[] = [];
  let failure: unknown;
  try {
    log(`work dir ${work}${QUICK ? ' (PW_BENCH_QUICK: smoke run, figures not comparable)' : ''}`);
    const upstream = await startRegistry();
    cleanup.unshift(() => upstream.stop());
    const peer = await startRegistry({ proxy: { remoteurl: upstream.url } });
    cleanup.unshift(() => peer.stop());
    const imgs = await seed(work, upstream);

    const trustCtx: TrustBenchContext = {
      work,
      upstream,
      upstreamName: UPSTREAM,
      accept: MANIFEST_ACCEPT,
      loadSeconds: LOAD_SECONDS,
      quick: QUICK,
      nodeArgs: NODE_ARGS,
      log,
    };
    if (want('abcegj')) {
      const pw = await startPullwarden(UPSTREAM, upstream.url, { nodeArgs: NODE_ARGS });
      cleanup.unshift(() => pw.stop());
      if (want('ab')) rows.push(...(await manifestRates(pw, peer, imgs)));
      // Right after row a, on the same allow-all process: the warm tag HEAD with a verify policy.
      if (want('g')) rows.push(await verifyPolicyRate(trustCtx, pw, 'bench/small', imgs.small.digest));
      if (want('j'))
        rows.push(
          await gatedPolicyRate(trustCtx, pw, 'bench/small', {
            mediaType: 'application/vnd.oci.image.manifest.v1+json',
            digest: imgs.small.digest,
            size: imgs.small.size,
          }),
        );
      if (want('c')) rows.push(await cachedBlob(pw, peer, upstream, imgs));
      if (want('e')) rows.push(await herd(pw, peer, upstream, imgs));
      await pw.stop();
    }
    if (want('ln')) {
      // Several workers (server.workers: auto) on one address: the blob throughput row and the herd
      // spread over every worker, on a fresh (cold) storage directory.
      const multi = await startPullwarden(UPSTREAM, upstream.url, { nodeArgs: NODE_ARGS, workers: 'auto' });
      try {
        if (want('l'))
          rows.push(await cachedBlob(multi, peer, upstream, imgs, 'l. cached blob GET, workers: auto'));
        if (want('n'))
          rows.push(await herd(multi, peer, upstream, imgs, 'n. herd over workers: auto: 16 cold GETs'));
      } finally {
        await multi.stop();
      }
    }
    if (want('m')) rows.push(...(await headScaling(upstream)));
    if (want('d')) rows.push(await coldPulls(work, upstream, imgs));
    if (want('f')) rows.push(...(await rss(upstream, imgs)));
    if (want('hi')) rows.push(...(await keylessFirstDecision(trustCtx)));
    if (want('k')) rows.push(...(await largeAttestationDecision(trustCtx)));
  } catch (e) {
    failure = e;
  } finally {
    for (const fn of cleanup) await fn().catch((e: unknown) => log(`cleanup: ${String(e)}`));
  }
  rows.sort((a, b) => a.measurement.localeCompare(b.measurement));
  const total = (performance.now() - started) / 1000;
  const missed = rows.filter((r) => r.result === 'MISSED');
  const text = [
    `# pullwarden benchmark${QUICK ? ' (PW_BENCH_QUICK smoke run)' : ''}`,
    '',
    `${new Date().toISOString()} · node ${process.version} · ${String((await import('node:os')).availableParallelism())} CPUs · total ${total.toFixed(0)} s`,
    '',
    'peer = distribution 2.8 in proxy mode; direct = skopeo straight from the upstream registry.',
    '',
    markdownTable(rows),
    '',
    failure === undefined
      ? missed.length === 0
        ? 'All targets met.'
        : `MISSED: ${missed.map((r) => r.measurement).join('; ')}`
      : `INCOMPLETE: the benchmark failed: ${failure instanceof Error ? failure.message : JSON.stringify(failure)}`,
    '',
  ].join('\n');
  process.stdout.write(`\n${text}`);
  const resultsDir = fileURLToPath(new URL('results/', import.meta.url));
  await mkdir(resultsDir, { recursive: true });
  await writeFile(join(resultsDir, 'latest.md'), text);
  log(`wrote ${join(resultsDir, 'latest.md')}`);
  // A missed target is a finding, not an error; a crash of the benchmark itself is.
  return failure === undefined ? 0 : 1;
}

process.exitCode = await main();
