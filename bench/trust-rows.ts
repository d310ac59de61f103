/**
 * Rows g, h and i: the cost of the trust decision on the pull path.
 *
 * - g: warm manifest HEAD by tag through a pullwarden with a `verify` policy (key-based classic
 *   signature of `bench/small`) against the same measurement on the allow-all pullwarden of row a,
 *   alternated in rounds so that drift of the shared 2-core machine hits both alike.
 * - h: time to the first decision for a keyless classic signature (test Sigstore world, `.sig` with a
 *   Rekor bundle annotation): wall time of the first HEAD by tag on a fresh process, the process's own
 *   `pullwarden_verification_duration_seconds` (discovery I/O + verification) and its CPU time for
 *   that request (all threads, /proc), and the CPU-only part measured in this process with
 *   `TrustMaterialStore.verify` (thread CPU after a full GC: first call, and warm median past the memo).
 * - i: the upstream requests that first decision made, from the upstream registry's request log.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { digestOf } from '../src/oci/index.ts';
import type { Digest } from '../src/oci/index.ts';
import { classicSignatureToBundle, TrustMaterialStore } from '../src/trust/index.ts';
import type { Attestor, FoundSignature } from '../src/trust/index.ts';
import type { Registry, RegistryRequest } from '../test/support/registry.ts';
import {
  createKeyPair,
  createTestSigstore,
  GITHUB_ISSUER,
  pushClassicSignature,
  pushTestImage,
  signClassic,
} from '../test/support/signer.ts';
import type { ClassicSignature } from '../test/support/signer.ts';
import { processCpuMs, threadCpu } from './cpu.ts';
import { hey } from './hey.ts';
import { startPullwarden } from './pullwarden-process.ts';
import type { PullwardenProcess } from './pullwarden-process.ts';
import { fmt, ratio } from './report.ts';
import type { Row } from './report.ts';

export interface TrustBenchContext {
  /** Temp dir for key and trust root files. */
  work: string;
  upstream: Registry;
  /** The upstream's name in pullwarden (`upstream.test`). */
  upstreamName: string;
  accept: string;
  loadSeconds: number;
  quick: boolean;
  nodeArgs: string[];
  log: (msg: string) => void;
}

const KEYLESS_SUBJECT = 'https://github.com/acme/bench/.github/workflows/release.yml@refs/tags/v1';
const KEYLESS_SUBJECT_GLOB = 'https://github.com/acme/bench/.github/workflows/release.yml@refs/tags/*';
const CPU_TARGET_MS = 20;
const WARM_RUNS = 50;

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

const ms = (n: number): string => `${fmt(n, n < 10 ? 2 : 1)} ms`;

/** A request to a manifest of `repo`; fails with the error body unless the status is 200. */
export async function mustManifest(
  base: string,
  reference: string,
  accept: string,
  method: 'GET' | 'HEAD',
): Promise<void> {
  const res = await fetch(`${base}/manifests/${reference}`, {
    method,
    headers: { Accept: accept },
    signal: AbortSignal.timeout(60_000),
  });
  const body = await res.text();
  if (res.status === 200) return;
  // A HEAD has no body: ask again with GET for the error the registry gives.
  const why =
    method === 'HEAD'
      ? await fetch(`${base}/manifests/${reference}`, { headers: { Accept: accept } }).then((r) => r.text())
      : body;
  throw new Error(`${method} ${base}/manifests/${reference}: ${res.status} ${why}`);
}

/** `/metrics` of a pullwarden, as `name{labels}` → value (unlabelled: `name`). */
export async function scrape(pw: PullwardenProcess): Promise<Map<string, number>> {
  const res = await fetch(`${pw.url}/metrics`, { signal: AbortSignal.timeout(10_000) });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`GET ${pw.url}/metrics: ${res.status}`);
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || line.trim() === '') continue;
    const m = /^(\S+?(?:\{[^}]*\})?)\s+(\S+)$/.exec(line);
    if (m !== null) out.set(m[1]!, Number(m[2]));
  }
  return out;
}

/** The series of `name`, with their labels parsed. */
function series(all: Map<string, number>, name: string): { labels: Record<string, string>; value: number }[] {
  const out = [];
  for (const [key, value] of all) {
    const brace = key.indexOf('{');
    if ((brace === -1 ? key : key.slice(0, brace)) !== name) continue;
    const labels: Record<string, string> = {};
    for (const m of key.slice(brace + 1).matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[m[1]!] = m[2]!;
    out.push({ labels, value });
  }
  return out;
}

/** Upstream requests pullwarden counted between two scrapes, by `method kind status`. */
function upstreamDelta(before: Map<string, number>, after: Map<string, number>): Map<string, number> {
  const key = (l: Record<string, string>): string => `${l.method} ${l.kind} ${l.status}`;
  const out = new Map<string, number>();
  for (const s of series(after, 'pullwarden_upstream_requests_total'))
    out.set(key(s.labels), (out.get(key(s.labels)) ?? 0) + s.value);
  for (const s of series(before, 'pullwarden_upstream_requests_total'))
    out.set(key(s.labels), (out.get(key(s.labels)) ?? 0) - s.value);
  for (const [k, n] of out) if (n === 0) out.delete(k);
  return out;
}

/** Sum of the series of `name` whose labels include every `labels` pair. */
export function metric(all: Map<string, number>, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const [key, value] of all) {
    const brace = key.indexOf('{');
    if ((brace === -1 ? key : key.slice(0, brace)) !== name) continue;
    if (Object.entries(labels).every(([k, v]) => key.includes(`${k}="${v}"`))) sum += value;
  }
  return sum;
}

const pwRepo = (ctx: TrustBenchContext, pw: PullwardenProcess, repo: string): string =>
  `${pw.url}/v2/${ctx.upstreamName}/${repo}`;

/**
 * g: warm HEAD by tag with a `verify` policy vs the allow-all pullwarden `baseline` (row a's),
 * same hey parameters as row a, alternated over rounds; ratio = verify / allow-all.
 */
export async function verifyPolicyRate(
  ctx: TrustBenchContext,
  baseline: PullwardenProcess,
  repo: string,
  digest: string,
): Promise<Row> {
  const key = createKeyPair();
  const keyFile = join(ctx.work, 'cosign.pub');
  await writeFile(keyFile, key.publicKeyPem);
  await pushClassicSignature(ctx.upstream.url, repo, digest, [
    signClassic({ key, subject: digest, dockerReference: `${ctx.upstreamName}/${repo}` }),
  ]);
  const pw = await startPullwarden(ctx.upstreamName, ctx.upstream.url, {
    nodeArgs: ctx.nodeArgs,
    trust: { keys: { release: { file: keyFile } } },
    policies: [
      {
        name: 'bench-signed',
        match: [`${ctx.upstreamName}/bench/**`],
        action: 'verify',
        signatures: { attestors: [{ key: 'release' }] },
      },
    ],
  });
  try {
    const targets = [
      { who: 'allow-all', pw: baseline },
      { who: 'verify', pw },
    ] as const;
    for (const t of targets) {
      // Warm-up as in row a (one GET: the decision is made and cached), then one discarded load of the
      // same length for each (JIT, heap sizing): the first loaded seconds of a process run well below
      // its steady rate, and row a already warmed the baseline while the verify process is new.
      await mustManifest(pwRepo(ctx, t.pw, repo), 'v1', ctx.accept, 'GET');
      await hey(`${pwRepo(ctx, t.pw, repo)}/manifests/v1`, {
        method: 'HEAD',
        headers: { Accept: ctx.accept },
        concurrency: 32,
        duration: ctx.loadSeconds,
      });
    }
    const before = await scrape(pw);
    const allowed = metric(before, 'pullwarden_decisions_total', { policy: 'bench-signed', result: 'allow' });
    if (allowed !== 1) {
      throw new Error(
        `verify pullwarden: expected 1 evaluated allow decision by bench-signed, got ${allowed}`,
      );
    }
    await ctx.upstream.clearRequests();
    const rounds = ctx.quick ? 1 : 4;
    const rates: Record<'allow-all' | 'verify', number[]> = { 'allow-all': [], verify: [] };
    let requests = 0;
    for (let round = 0; round < rounds; round++) {
      // Alternate which one goes first.
      const order = round % 2 === 0 ? targets : ([targets[1], targets[0]] as const);
      for (const t of order) {
        const r = await hey(`${pwRepo(ctx, t.pw, repo)}/manifests/v1`, {
          method: 'HEAD',
          headers: { Accept: ctx.accept },
          concurrency: 32,
          duration: ctx.loadSeconds,
        });
        rates[t.who].push(r.requestsPerSec);
        if (t.who === 'verify') requests += r.statuses.get(200) ?? 0;
        ctx.log(`HEAD manifest by tag, ${t.who} (round ${round + 1}): ${fmt(r.requestsPerSec)} req/s`);
      }
    }
    const after = await scrape(pw);
    const evaluated =
      metric(after, 'pullwarden_decisions_total') - metric(before, 'pullwarden_decisions_total');
    const hits =
      metric(after, 'pullwarden_cache_requests_total', { kind: 'decision', result: 'hit' }) -
      metric(before, 'pullwarden_cache_requests_total', { kind: 'decision', result: 'hit' });
    const upstreamCalls = (await ctx.upstream.requests()).length;
    ctx.log(
      `verify pullwarden under load: ${fmt(requests)} HEADs answered 200, ${fmt(hits)} decision cache hits, ` +
        `${evaluated} decisions evaluated, ${upstreamCalls} upstream requests`,
    );
    if (evaluated !== 0 || upstreamCalls !== 0) {
      ctx.log('warning: the warm HEADs were not all answered from the caches');
    }
    const v = median(rates.verify);
    const b = median(rates['allow-all']);
    // The ratio is the median of the per-round ratios: each pair ran back to back, so drift of the
    // shared machine between rounds (it moves the absolute rates by ±30 %) cancels out.
    const perRound = rates.verify.map((x, i) => x / rates['allow-all'][i]!);
    const r = median(perRound);
    ctx.log(`verify / allow-all per round: ${perRound.map((x) => x.toFixed(2)).join(', ')}`);
    return {
      measurement: `g. warm manifest HEAD by tag, verify policy (c=32, ${rounds} paired rounds)`,
      pullwarden: `${fmt(v)} req/s`,
      reference: `allow-all ${fmt(b)} req/s`,
      ratio: `${fmt(r, 2)}x`,
      target: '>= 0.90x allow-all',
      result: r >= 0.9 ? 'pass' : 'MISSED',
    };
  } finally {
    await pw.stop();
  }
}

/** What an upstream request was, for row i: `.sig manifest`, `.att 404`, `image: HEAD tag v1`… */
function describeRequest(r: RegistryRequest, names: Map<string, string>): string {
  const ref = r.reference ?? '';
  let what: string;
  const named = names.get(ref);
  if (named !== undefined) what = named;
  else if (r.kind === 'manifest' && ref.endsWith('.sig')) what = '.sig manifest';
  else if (r.kind === 'manifest' && ref.endsWith('.att')) what = '.att manifest';
  else if (r.kind === 'manifest' && /^sha256-[0-9a-f]{64}$/.test(ref)) what = 'tag-schema index';
  else if (r.kind === 'manifest' || r.kind === 'blob') what = `${r.kind} ${ref.slice(0, 19)}…`;
  else what = r.path;
  return r.status === 200 ? what : `${what} ${r.status}`;
}

/** Discovery requests in the order discovery makes them (as far as concurrency allows). */
const DISCOVERY_ORDER = ['referrers', 'tag-schema', '.sig manifest', '.sig layer', '.att'];
const discoveryRank = (text: string): number => {
  const i = DISCOVERY_ORDER.findIndex((p) => text.startsWith(p));
  return i === -1 ? DISCOVERY_ORDER.length : i;
};

/** h + i: first decision for a keyless classic signature on a fresh pullwarden, and its round trips. */
export async function keylessFirstDecision(ctx: TrustBenchContext): Promise<Row[]> {
  const repo = 'bench/keyless';
  const world = await createTestSigstore({ name: 'bench.local' });
  const rootFile = join(ctx.work, 'trusted_root.json');
  await writeFile(rootFile, JSON.stringify(world.trustedRootJSON));
  const leaf = await world.issueLeaf({ subject: KEYLESS_SUBJECT, issuer: GITHUB_ISSUER });
  // Two images signed alike: v1 is the first decision of a fresh process, v2 a cold decision in a
  // process that has decided once (discovery and verification code already compiled).
  const signed: { tag: string; digest: string; sig: ClassicSignature; sigDigest: string }[] = [];
  for (const tag of ['v1', 'v2']) {
    const image = await pushTestImage(ctx.upstream.url, repo, tag, `pullwarden bench keyless ${tag}`);
    const sig = signClassic({ leaf, subject: image.digest, dockerReference: `${ctx.upstreamName}/${repo}` });
    const sigDigest = await pushClassicSignature(ctx.upstream.url, repo, image.digest, [sig]);
    signed.push({ tag, digest: image.digest, sig, sigDigest });
  }
  const attestor: Attestor = {
    keyless: { root: 'bench', issuer: GITHUB_ISSUER, subject: KEYLESS_SUBJECT_GLOB },
  };

  // The CPU-only part, in this process: the same TrustMaterialStore the service builds from the same
  // trust root, verifying what discovery hands it (the .sig layer converted to a bundle).
  const loadStart = performance.now();
  const store = await TrustMaterialStore.load({ roots: { bench: { file: rootFile } } });
  const loadMs = performance.now() - loadStart;
  const first = signed[0]!;
  const convertStart = performance.now();
  const found: FoundSignature = {
    source: 'cosign-sig',
    kind: 'signature',
    manifestDigest: first.sigDigest as Digest,
    layerDigest: first.sigDigest as Digest,
    bundle: classicSignatureToBundle(first.sig.payload, first.sig.annotations),
    artifact: first.sig.payload,
  };
  const convertMs = performance.now() - convertStart;
  // CPU time of this thread, the first call after a full GC (wall time here moves with the rest of
  // the machine and with the garbage earlier rows left in this process). Each call verifies a fresh
  // copy of the found object: the store keeps outcomes per found object, and a memo hit is not a
  // verification.
  const verifyOnce = (collect = false): number => {
    const { value: outcome, cpuMs } = threadCpu(
      () => store.verify({ ...found }, attestor, first.digest as Digest),
      collect,
    );
    if (!outcome.ok) throw new Error(`in-process verify failed: ${outcome.code}: ${outcome.reason}`);
    return cpuMs;
  };
  const cpuFirst = verifyOnce(true);
  verifyOnce(); // warm-up
  const warm = Array.from({ length: WARM_RUNS }, () => verifyOnce());
  const cpuWarm = median(warm);
  ctx.log(
    `keyless verify in-process: store load ${ms(loadMs)}, convert ${ms(convertMs)}, ` +
      `first verify ${ms(cpuFirst)} CPU, warm median ${ms(cpuWarm)} CPU (${WARM_RUNS} runs, max ${ms(Math.max(...warm))})`,
  );

  const pw = await startPullwarden(ctx.upstreamName, ctx.upstream.url, {
    nodeArgs: ctx.nodeArgs,
    trust: { roots: { bench: { file: rootFile } } },
    policies: [
      {
        name: 'bench-keyless',
        match: [`${ctx.upstreamName}/${repo}`],
        action: 'verify',
        signatures: { attestors: [attestor] },
      },
    ],
  });
  let wall: number[];
  let metricMs: number[];
  let processMs: number[];
  let trips: RegistryRequest[];
  let counted: Map<string, number>;
  try {
    const base = pwRepo(ctx, pw, repo);
    wall = [];
    metricMs = [];
    processMs = [];
    trips = [];
    counted = new Map();
    for (const [i, s] of signed.entries()) {
      const before = await scrape(pw);
      await ctx.upstream.clearRequests();
      const cpu0 = processCpuMs(pw.pid);
      const t0 = performance.now();
      await mustManifest(base, s.tag, ctx.accept, 'HEAD');
      wall.push(performance.now() - t0);
      const cpu1 = processCpuMs(pw.pid);
      if (cpu0 === undefined || cpu1 === undefined) throw new Error(`pullwarden ${pw.pid} is gone`);
      processMs.push(cpu1 - cpu0);
      const requests = await ctx.upstream.requests();
      const after = await scrape(pw);
      if (i === 0) {
        trips = requests;
        counted = upstreamDelta(before, after);
      }
      const name = 'pullwarden_verification_duration_seconds';
      const count = metric(after, `${name}_count`) - metric(before, `${name}_count`);
      const sum = metric(after, `${name}_sum`) - metric(before, `${name}_sum`);
      if (count !== 1) throw new Error(`${s.tag}: expected 1 verification, the metric counted ${count}`);
      metricMs.push(sum * 1000);
      const allowed = metric(after, 'pullwarden_decisions_total', {
        policy: 'bench-keyless',
        result: 'allow',
      });
      if (allowed !== i + 1) throw new Error(`${s.tag}: expected ${i + 1} allow decisions, got ${allowed}`);
      ctx.log(
        `keyless ${s.tag} (${i === 0 ? 'fresh process' : 'warm process, cold decision'}): HEAD ${ms(wall[i]!)} wall, ` +
          `${ms(processMs[i]!)} process CPU, verification metric ${ms(metricMs[i]!)}, ${requests.length} upstream requests`,
      );
    }
    const t0 = performance.now();
    await mustManifest(base, 'v1', ctx.accept, 'HEAD');
    ctx.log(`keyless v1 again (decision cached): HEAD ${ms(performance.now() - t0)} wall`);
  } finally {
    await pw.stop();
  }

  const names = new Map<string, string>();
  const image = new Set<string>();
  for (const s of signed) {
    names.set(s.tag, `HEAD tag ${s.tag}`);
    names.set(s.digest, 'GET manifest');
    image.add(s.tag).add(s.digest);
    names.set(digestOf(s.sig.payload, 'sha256'), '.sig layer');
  }
  const described = trips.map((r) => ({ r, text: describeRequest(r, names) }));
  const imageTrips = described.filter(({ r }) => r.kind === 'manifest' && image.has(r.reference ?? ''));
  const discovery = described.filter((d) => !imageTrips.includes(d)).map((d) => d.text);
  for (const d of described) ctx.log(`  upstream log: ${d.r.method} ${d.r.uri} ${d.r.status} -> ${d.text}`);
  // distribution logs only requests to its routes: the referrers API probe (a route it does not have)
  // is answered 404 without a log line. pullwarden's own upstream request counter sees it.
  const total = [...counted.values()].reduce((a, b) => a + b, 0);
  ctx.log(
    `  pullwarden counted ${total} upstream requests: ${[...counted].map(([k, n]) => `${k} x${n}`).join(', ')}`,
  );
  for (const [k, n] of counted) {
    const [method, kind, status] = k.split(' ');
    if (kind !== 'referrers') continue;
    for (let j = 0; j < n; j++)
      discovery.push(`referrers API${method === 'GET' ? '' : ` ${method}`} ${status}`);
  }
  discovery.sort((a, b) => discoveryRank(a) - discoveryRank(b));
  if (imageTrips.length + discovery.length !== total) {
    ctx.log(
      `warning: the upstream log (${trips.length} + referrers) and pullwarden's counter (${total}) disagree`,
    );
  }
  // distribution 2.8 has no referrers API: probe it, fall back to the tag schema, then .sig (manifest +
  // one layer) and .att. Five requests, all started at once except the .sig layer (after its manifest).
  const expected = 5;
  const cpuPass = cpuFirst <= CPU_TARGET_MS;
  return [
    {
      measurement: 'h. first decision, keyless classic .sig (fresh process)',
      pullwarden: `verify CPU ${ms(cpuFirst)} first, ${ms(cpuWarm)} warm`,
      reference: `fresh process: first HEAD ${ms(wall[0]!)} wall, ${ms(processMs[0]!)} CPU (metric ${ms(metricMs[0]!)}); 2nd image ${ms(wall[1]!)}, ${ms(processMs[1]!)} CPU (metric ${ms(metricMs[1]!)})`,
      ratio: ratio(cpuFirst, CPU_TARGET_MS),
      target: `CPU <= ${CPU_TARGET_MS} ms`,
      result: cpuPass ? 'pass' : 'MISSED',
    },
    {
      measurement: 'i. discovery round trips of that decision',
      pullwarden: String(discovery.length),
      reference: `${discovery.join(', ')} (+ image: ${imageTrips.map((d) => d.text).join(', ')})`,
      ratio: ratio(discovery.length, expected),
      target: `<= ${expected} (what it needs)`,
      result: discovery.length <= expected ? 'pass' : 'MISSED',
    },
  ];
}
