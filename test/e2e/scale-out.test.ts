/**
 * Scale-out: two real `pullwarden serve` processes (replicas A and B) with their own listen ports and
 * storage directories share one real redis-server as their metadata store (`metadata.url: redis://…`),
 * in front of the in-process fake upstream (which counts every request it gets).
 *
 * What is checked (docs/scale-out.md describes the architecture):
 *   1. a tag pinned through one replica is enforced by the other (immutable and onMove: deny), and a
 *      pin set with `pullwarden tags pin` (a third process on the same Redis) is seen by both;
 *   2. a decision evaluated by A is reused by B: B makes no signature discovery request at all;
 *   3. SIGKILL of A loses nothing B needs: a client whose manifest came from A gets its blobs from B
 *      (the admitted closure is in Redis; B fills its own disk cache from the upstream);
 *   4. Redis down: both replicas fail closed (503 UNAVAILABLE, even for content they decided and cached
 *      a moment before; no upstream request; /readyz not ready), and serve again once Redis is back,
 *      without a restart.
 *
 * Redis here runs WITH persistence (AOF, `appendfsync always`) so that a Redis restart keeps its data,
 * as a production deployment must (see docs/scale-out.md, "Limits"); `test/support/redis.ts` starts a
 * throwaway Redis without persistence, which is right for the other suites but would make step 4 test
 * an empty Redis.
 */
import { execFile, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { makeImage, sha256, startFakeUpstream } from '../support/fake-upstream.ts';
import type { FakeImage, FakeUpstream, RecordedRequest } from '../support/fake-upstream.ts';
import { freePort } from '../support/ports.ts';
import { answersPing, redisCommand } from '../support/redis.ts';
import { createKeyPair, fakeRegistryWriter, pushClassicSignature, signClassic } from '../support/signer.ts';
import type { TestKeyPair } from '../support/signer.ts';

const CLI = join(import.meta.dirname, '../../src/cli/run.ts');
const ACCEPT = ['application/vnd.oci.image.index.v1+json', 'application/vnd.oci.image.manifest.v1+json'].join(
  ', ',
);
const REDIS_SERVER = process.env['REDIS_SERVER'] ?? 'redis-server';
const TAG_TTL_MS = 200;
const ALLOW_TTL_MS = 5000;
const execAsync = promisify(execFile);

// ------------------------------------------------------------------------------------------ Redis

interface PersistentRedis {
  url: string;
  stop(): Promise<void>;
  start(): Promise<void>;
}

/** A real redis-server with AOF persistence in `dir`, on a fixed port, that can be stopped and restarted. */
function persistentRedis(dir: string, port: number): PersistentRedis {
  let child: ChildProcess | undefined;
  let stderr = '';
  return {
    url: `redis://127.0.0.1:${port}`,
    async start() {
      const args = ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', ''];
      args.push(
        '--appendonly',
        'yes',
        '--appendfsync',
        'always',
        '--daemonize',
        'no',
        '--loglevel',
        'warning',
      );
      const proc = spawn(REDIS_SERVER, args, { stdio: ['ignore', 'ignore', 'pipe'] });
      child = proc;
      proc.stderr?.setEncoding('utf8');
      proc.stderr?.on('data', (chunk: string) => (stderr += chunk));
      const failed = new Promise<never>((_, reject) => {
        proc.once('error', (err: NodeJS.ErrnoException) =>
          reject(
            err.code === 'ENOENT'
              ? new Error(
                  `redis-server not found ("${REDIS_SERVER}"): install it (apt-get install redis-server)`,
                )
              : err,
          ),
        );
        proc.once('exit', (code) =>
          reject(new Error(`redis-server exited (code ${code}): ${stderr.trim()}`)),
        );
      });
      failed.catch(() => undefined);
      const deadline = Date.now() + 10_000;
      for (;;) {
        if (await Promise.race([answersPing(port), failed])) return;
        if (Date.now() > deadline) throw new Error(`redis-server on ${port} did not answer PING`);
        await sleep(25);
      }
    },
    async stop() {
      const proc = child;
      child = undefined;
      if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
      const exited = new Promise((resolve) => proc.once('exit', resolve));
      proc.kill('SIGTERM'); // redis flushes the AOF and exits
      const timer = setTimeout(() => proc.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
}

// ------------------------------------------------------------------------------------- replicas

interface Replica {
  name: string;
  url: string;
  config: string;
  proc: ChildProcess;
  output: () => string;
}

/** Start `pullwarden serve --config FILE` as a real process and wait until /healthz answers. */
async function serve(name: string, config: string, port: number): Promise<Replica> {
  const proc = spawn(process.execPath, [CLI, 'serve', '--config', config], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout?.setEncoding('utf8');
  proc.stderr?.setEncoding('utf8');
  proc.stdout?.on('data', (c: string) => (out = (out + c).slice(-20_000)));
  proc.stderr?.on('data', (c: string) => (out = (out + c).slice(-20_000)));
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 400; i++) {
    if (proc.exitCode !== null) break;
    try {
      if ((await fetch(`${url}/healthz`)).ok) return { name, url, config, proc, output: () => out };
    } catch {
      // not listening yet
    }
    await sleep(50);
  }
  proc.kill('SIGKILL');
  throw new Error(`pullwarden ${name} did not start:\n${out}`);
}

async function stopReplica(replica: Replica | undefined, signal: NodeJS.Signals): Promise<void> {
  const proc = replica?.proc;
  if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise((resolve) => proc.once('exit', resolve));
  proc.kill(signal);
  const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

async function get(
  replica: Replica,
  repo: string,
  what: 'manifests' | 'blobs',
  ref: string,
): Promise<{ status: number; digest: string | null; cache: string | null; body: Buffer }> {
  const res = await fetch(`${replica.url}/v2/${repo}/${what}/${ref}`, { headers: { accept: ACCEPT } });
  return {
    status: res.status,
    digest: res.headers.get('docker-content-digest'),
    cache: res.headers.get('x-pullwarden-cache'),
    body: Buffer.from(await res.arrayBuffer()),
  };
}

function errorOf(body: Buffer): { code: string; message: string; detail?: Record<string, unknown> } {
  return (JSON.parse(body.toString('utf8')) as { errors: { code: string; message: string }[] }).errors[0]!;
}

/** Value of one Prometheus sample, e.g. metric('pullwarden_cache_requests_total', {kind: 'decision'}). */
async function metric(replica: Replica, name: string, labels: Record<string, string>): Promise<number> {
  const text = await (await fetch(`${replica.url}/metrics`)).text();
  let total = 0;
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries(
      [...(m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((l) => [l[1]!, l[2]!]),
    );
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) total += Number(m[3]);
  }
  return total;
}

/** Signature discovery: the referrers API, the referrers tag schema and cosign's `.sig`/`.att` tags. */
function isDiscovery(r: RecordedRequest): boolean {
  return r.kind === 'referrers' || (r.kind === 'manifest' && /^sha256-[0-9a-f]{64}/.test(r.ref ?? ''));
}
function isSigManifestGet(r: RecordedRequest): boolean {
  return r.kind === 'manifest' && r.method === 'GET' && /^sha256-[0-9a-f]{64}\.sig$/.test(r.ref ?? '');
}

// ---------------------------------------------------------------------------------------- suite

describe('scale-out: two pullwarden processes sharing one Redis', () => {
  let work: string;
  let fake: FakeUpstream;
  let redis: PersistentRedis;
  let key: TestKeyPair;
  let a: Replica | undefined;
  let b: Replica | undefined;
  let portA: number;
  let portB: number;
  let configA: string;
  let configB: string;
  /** The digest an operator pinned `pinned/app:v1` to in the first test. */
  let operatorPin: string | undefined;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'pw-scale-out-'));
    fake = await startFakeUpstream();
    await mkdir(join(work, 'redis'));
    redis = persistentRedis(join(work, 'redis'), await freePort());
    await redis.start();
    key = createKeyPair();
    const keyFile = join(work, 'cosign.pub');
    await writeFile(keyFile, key.publicKeyPem);

    // The same file content for both replicas except listen and storage.dir (as a Deployment's
    // ConfigMap plus a per-pod volume): same policies and keys, hence the same decision cache keys.
    const config = (port: number, storage: string) => ({
      listen: `127.0.0.1:${port}`,
      storage: { dir: storage },
      metadata: { url: redis.url, namespace: 'scale-out-test' },
      log: { level: 'warn' },
      upstreams: { [fake.host]: { url: fake.url, tagTTL: `${TAG_TTL_MS}ms`, retries: 0 } },
      defaultUpstream: fake.host,
      trust: { roots: {}, keys: { release: { file: keyFile } }, refresh: '0s' },
      // Short enough for the data-loss test to outlive it, long enough for every reuse checked here.
      decisions: { allowTTL: `${ALLOW_TTL_MS}ms` },
      policies: [
        { name: 'immutable', match: [`${fake.host}/pinned/**`], action: 'allow', tags: { immutable: true } },
        { name: 'no-moves', match: [`${fake.host}/moves/**`], action: 'allow', tags: { onMove: 'deny' } },
        { name: 'signed', match: ['**'], action: 'verify', signatures: { attestors: [{ key: 'release' }] } },
      ],
    });
    [portA, portB] = [await freePort(), await freePort()];
    configA = join(work, 'a.yaml');
    configB = join(work, 'b.yaml');
    await writeFile(configA, stringify(config(portA, join(work, 'data-a'))));
    await writeFile(configB, stringify(config(portB, join(work, 'data-b'))));
    [a, b] = await Promise.all([serve('A', configA, portA), serve('B', configB, portB)]);
  }, 120_000);

  afterAll(async () => {
    await Promise.all([stopReplica(a, 'SIGTERM'), stopReplica(b, 'SIGTERM')]);
    await redis?.stop();
    await fake?.close();
    if (work !== undefined) await rm(work, { recursive: true, force: true });
  });

  const pastTagTTL = () => sleep(TAG_TTL_MS + 50);

  async function signedImage(repo: string, tag: string): Promise<FakeImage> {
    const img = makeImage(fake, repo, tag, { layers: 2 });
    await pushClassicSignature(fakeRegistryWriter(fake), repo, img.manifestDigest, [
      signClassic({ subject: img.manifestDigest, dockerReference: `${fake.host}/${repo}`, key }),
    ]);
    return img;
  }

  const tagsCli = async (...args: string[]): Promise<string> =>
    (await execAsync(process.execPath, [CLI, 'tags', ...args, '--config', configA])).stdout;

  it('enforces on B a tag pinned through A, and a `tags pin` on both', async () => {
    // immutable: A pins X at first sight; the tag moves upstream to Y; B keeps serving X.
    const x = makeImage(fake, 'pinned/app', 'v1');
    const y = makeImage(fake, 'pinned/app', undefined);
    expect(await get(a!, 'pinned/app', 'manifests', 'v1')).toMatchObject({
      status: 200,
      digest: x.manifestDigest,
    });
    fake.tag('pinned/app', 'v1', y.manifestDigest);
    await pastTagTTL();
    fake.resetCounts();
    const viaB = await get(b!, 'pinned/app', 'manifests', 'v1');
    expect(viaB).toMatchObject({ status: 200, digest: x.manifestDigest });
    expect(sha256(viaB.body)).toBe(x.manifestDigest);
    // B did ask the upstream (its answer is Y: that is how the move is seen) and still served X.
    expect(fake.count({ kind: 'manifest', method: 'HEAD', repo: 'pinned/app', ref: 'v1' })).toBe(1);
    expect(await metric(b!, 'pullwarden_tag_moves_total', { upstream: fake.host })).toBe(1);
    // An operator pin, written by a third process into the same Redis, is used by both replicas.
    expect(await tagsCli('pin', `${fake.host}/pinned/app:v1`, y.manifestDigest)).toContain('pinned');
    operatorPin = y.manifestDigest;
    for (const replica of [a!, b!]) {
      expect(await get(replica, 'pinned/app', 'manifests', 'v1'), replica.name).toMatchObject({
        status: 200,
        digest: y.manifestDigest,
      });
    }

    // onMove: deny: pinned through A, moved upstream, refused by B (and by A) until pinned by hand.
    const m1 = makeImage(fake, 'moves/app', 'v1');
    const m2 = makeImage(fake, 'moves/app', undefined);
    expect(await get(a!, 'moves/app', 'manifests', 'v1')).toMatchObject({
      status: 200,
      digest: m1.manifestDigest,
    });
    fake.tag('moves/app', 'v1', m2.manifestDigest);
    await pastTagTTL();
    for (const replica of [b!, a!]) {
      const denied = await get(replica, 'moves/app', 'manifests', 'v1');
      expect(denied.status, replica.name).toBe(403);
      expect(errorOf(denied.body)).toMatchObject({
        code: 'DENIED',
        detail: {
          policy: 'no-moves',
          reason: 'tag-moved',
          pinned: m1.manifestDigest,
          digest: m2.manifestDigest,
        },
      });
    }
    const history = JSON.parse(await tagsCli('history', `${fake.host}/moves/app:v1`, '--json')) as {
      history: { digest: string }[];
    };
    expect(history.history.map((h) => h.digest)).toEqual([m1.manifestDigest, m2.manifestDigest]);
    await tagsCli('pin', `${fake.host}/moves/app:v1`, m2.manifestDigest);
    for (const replica of [b!, a!]) {
      expect(await get(replica, 'moves/app', 'manifests', 'v1'), replica.name).toMatchObject({
        status: 200,
        digest: m2.manifestDigest,
      });
    }
  });

  it('reuses on B a decision evaluated by A: B makes no signature discovery request', async () => {
    const img = await signedImage('acme/app', 'v1');
    fake.resetCounts();
    const viaA = await get(a!, 'acme/app', 'manifests', 'v1');
    expect(viaA).toMatchObject({ status: 200, digest: img.manifestDigest });
    expect(fake.count(isSigManifestGet)).toBe(1);
    expect(fake.count(isDiscovery)).toBeGreaterThan(1); // referrers tag schema, .sig, .att …
    expect(await metric(a!, 'pullwarden_decisions_total', { policy: 'signed', result: 'allow' })).toBe(1);

    await pastTagTTL(); // B resolves the tag itself too: only the decision comes from Redis
    fake.resetCounts();
    const decisionsOnB = (result: string) =>
      metric(b!, 'pullwarden_cache_requests_total', { kind: 'decision', result });
    const [hitsBefore, missesBefore] = [await decisionsOnB('hit'), await decisionsOnB('miss')];
    const evaluatedBefore = await metric(b!, 'pullwarden_decisions_total', { policy: 'signed' });
    const viaB = await get(b!, 'acme/app', 'manifests', 'v1');
    expect(viaB).toMatchObject({ status: 200, digest: img.manifestDigest });
    expect(sha256(viaB.body)).toBe(img.manifestDigest);
    expect(fake.count(isSigManifestGet)).toBe(0);
    expect(fake.requests.filter(isDiscovery)).toEqual([]);
    expect(await decisionsOnB('hit')).toBe(hitsBefore + 1);
    expect(await decisionsOnB('miss')).toBe(missesBefore);
    expect(await metric(b!, 'pullwarden_decisions_total', { policy: 'signed' })).toBe(evaluatedBefore);
    // And B's manifest bytes came from the upstream (per-replica cache), by digest.
    expect(fake.count({ kind: 'manifest', method: 'GET', ref: img.manifestDigest })).toBe(1);

    // A deny is shared the same way: an unsigned digest refused by A is refused by B without discovery.
    const unsigned = makeImage(fake, 'acme/unsigned', 'v1');
    expect((await get(a!, 'acme/unsigned', 'manifests', 'v1')).status).toBe(403);
    fake.resetCounts();
    const deniedB = await get(b!, 'acme/unsigned', 'manifests', unsigned.manifestDigest);
    expect(deniedB.status).toBe(403);
    expect(errorOf(deniedB.body)).toMatchObject({ code: 'DENIED', detail: { policy: 'signed' } });
    expect(fake.requests.filter(isDiscovery)).toEqual([]);
  });

  it('loses nothing B needs when A is SIGKILLed after admitting an image', async () => {
    const img = await signedImage('acme/failover', 'v1');
    // A client pulls the manifest through A (A decides and writes the admitted closure to Redis)…
    const manifest = await get(a!, 'acme/failover', 'manifests', 'v1');
    expect(manifest).toMatchObject({ status: 200, digest: img.manifestDigest });
    // …and A dies before the client fetched a single blob.
    await stopReplica(a, 'SIGKILL');
    expect(a!.proc.signalCode).toBe('SIGKILL');

    // The client's blob requests now land on B, which never saw this manifest: blob gating reads A's
    // admitted closure from Redis; the bytes come from the upstream into B's own disk cache.
    fake.resetCounts();
    for (const [i, digest] of [img.configDigest, ...img.layerDigests].entries()) {
      const blob = await get(b!, 'acme/failover', 'blobs', digest);
      expect(blob.status, `blob ${i}`).toBe(200);
      expect(blob.cache).toBe('miss');
      expect(sha256(blob.body)).toBe(digest);
      const again = await get(b!, 'acme/failover', 'blobs', digest);
      expect(again).toMatchObject({ status: 200, cache: 'hit' });
    }
    expect(fake.count({ kind: 'blob', method: 'GET' })).toBe(1 + img.layerDigests.length);
    // The next client resolves the tag on B: A's decision is reused, nothing is re-verified.
    const again = await get(b!, 'acme/failover', 'manifests', 'v1');
    expect(again).toMatchObject({ status: 200, digest: img.manifestDigest });
    expect(fake.requests.filter(isDiscovery)).toEqual([]);
    // Blobs outside the admitted closure are still refused by B.
    const stranger = fake.putBlob('acme/failover', Buffer.from('not part of any admitted image'));
    const refused = await get(b!, 'acme/failover', 'blobs', stranger);
    expect(refused.status).toBe(403);
    expect(errorOf(refused.body)).toMatchObject({ detail: { reason: 'blob-not-admitted' } });

    // A comes back on its own storage directory, with everything the fleet knew in the meantime.
    a = await serve('A', configA, portA);
    expect(await get(a, 'acme/failover', 'manifests', 'v1')).toMatchObject({
      status: 200,
      digest: img.manifestDigest,
    });
  });

  it('fails closed while Redis is down, and serves again once it is back, without a restart', async () => {
    const img = await signedImage('acme/outage', 'v1');
    // Warm everything A could use as "local knowledge": its decision memo, the manifest and the blobs
    // on its disk. B too, for the manifest.
    expect(await get(a!, 'acme/outage', 'manifests', 'v1')).toMatchObject({ status: 200 });
    for (const digest of [img.configDigest, ...img.layerDigests])
      expect((await get(a!, 'acme/outage', 'blobs', digest)).status).toBe(200);
    expect((await get(a!, 'acme/outage', 'blobs', img.layerDigests[0]!)).cache).toBe('hit');
    expect((await get(b!, 'acme/outage', 'manifests', 'v1')).status).toBe(200);

    await redis.stop();
    try {
      for (const replica of [a!, b!]) {
        // /readyz turns not ready (a load balancer takes the replica out), /healthz stays up (no restart).
        let ready: Response | undefined;
        for (let i = 0; i < 100; i++) {
          ready = await fetch(`${replica.url}/readyz`);
          if (ready.status === 503) break;
          await sleep(50);
        }
        expect(ready!.status, replica.name).toBe(503);
        expect(((await ready!.json()) as { reason: string }).reason).toMatch(/metadata store/);
        expect((await fetch(`${replica.url}/healthz`)).status).toBe(200);
      }
      fake.resetCounts();
      for (const replica of [a!, b!]) {
        // Within tagTTL and past it, by tag and by digest, a blob cached on disk: all 503 UNAVAILABLE.
        const refs: [string, 'manifests' | 'blobs', string][] = [
          ['acme/outage', 'manifests', 'v1'],
          ['acme/outage', 'manifests', img.manifestDigest],
          ['acme/outage', 'blobs', img.layerDigests[0]!],
          ['pinned/app', 'manifests', 'v1'],
          ['acme/never-seen', 'manifests', 'v1'],
        ];
        for (const [repo, what, ref] of refs) {
          const res = await get(replica, repo, what, ref);
          expect(res.status, `${replica.name} ${repo} ${what} ${ref}`).toBe(503);
          expect(errorOf(res.body).code).toBe('UNAVAILABLE');
          // No manifest digest is announced. (A blob answer, error or not, echoes the requested digest
          // in Docker-Content-Digest: src/http sets it before asking the service.)
          if (what === 'manifests') expect(res.digest).toBeNull();
        }
        await pastTagTTL();
        expect((await get(replica, 'acme/outage', 'manifests', 'v1')).status).toBe(503);
      }
      // Nothing unchecked was fetched either: without the store no upstream request is made.
      expect(fake.requests).toEqual([]);
    } finally {
      await redis.start();
    }

    // Same port, same (persisted) data: both replicas reconnect by themselves.
    for (const replica of [a!, b!]) {
      let status = 0;
      for (let i = 0; i < 200 && status !== 200; i++) {
        status = (await fetch(`${replica.url}/readyz`)).status;
        if (status !== 200) await sleep(50);
      }
      expect(status, `${replica.name} ready again`).toBe(200);
    }
    fake.resetCounts();
    for (const replica of [a!, b!]) {
      const manifest = await get(replica, 'acme/outage', 'manifests', 'v1');
      expect(manifest, replica.name).toMatchObject({ status: 200, digest: img.manifestDigest });
      const blob = await get(replica, 'acme/outage', 'blobs', img.layerDigests[0]!);
      expect(blob.status).toBe(200);
      expect(sha256(blob.body)).toBe(img.layerDigests[0]);
      // The operator pin of the first test survived the Redis restart (AOF) and still holds.
      expect(await get(replica, 'pinned/app', 'manifests', 'v1')).toMatchObject({
        status: 200,
        digest: operatorPin,
      });
    }
    // Decisions survived too: nothing was re-verified after the outage.
    expect(fake.requests.filter(isDiscovery)).toEqual([]);
  });
  it('after Redis lost its data (no persistence, eviction, FLUSHALL): what holds and what does not', async () => {
    // What a Redis restarted without persistence, or one evicting keys, does to the fleet. Production
    // Redis must persist and must not evict (docs/scale-out.md); this pins down the consequences.
    const img = await signedImage('acme/flushed', 'v1');
    expect((await get(a!, 'acme/flushed', 'manifests', 'v1')).status).toBe(200);
    for (const digest of [img.configDigest, ...img.layerDigests])
      expect((await get(a!, 'acme/flushed', 'blobs', digest)).status).toBe(200);
    // An immutable tag pinned at X2 that has since moved upstream to Y2: still served at X2.
    const x2 = makeImage(fake, 'pinned/app', 'v2');
    const y2 = makeImage(fake, 'pinned/app', undefined);
    expect(await get(a!, 'pinned/app', 'manifests', 'v2')).toMatchObject({ digest: x2.manifestDigest });
    fake.tag('pinned/app', 'v2', y2.manifestDigest);
    await pastTagTTL();
    expect(await get(b!, 'pinned/app', 'manifests', 'v2')).toMatchObject({ digest: x2.manifestDigest });

    expect(await redisCommand(Number(new URL(redis.url).port), 'FLUSHALL')).toBe('+OK');

    // Pins and tag history are gone: the immutable tag re-pins at its next pull, to what the upstream
    // says now. This is why the Redis of a fleet must persist its data.
    await pastTagTTL();
    expect(await get(b!, 'pinned/app', 'manifests', 'v2')).toMatchObject({
      status: 200,
      digest: y2.manifestDigest,
    });

    // A still holds its in-process decision memo (allowTTL): the manifest is served from it. The
    // admitted closure (blob gating) was flushed and A does not rewrite it while that memo holds, so
    // the blobs are refused, fail closed, for at most allowTTL after the loss…
    expect((await get(a!, 'acme/flushed', 'manifests', 'v1')).status).toBe(200);
    const refused = await get(a!, 'acme/flushed', 'blobs', img.layerDigests[0]!);
    expect(refused.status).toBe(403);
    expect(errorOf(refused.body)).toMatchObject({ detail: { reason: 'blob-not-admitted' } });
    // …then the next manifest request decides again (the stored decision is gone too), rewrites the
    // closure, and the blobs are served again, without a restart.
    await sleep(ALLOW_TTL_MS + 100);
    const evaluated = await metric(a!, 'pullwarden_decisions_total', { policy: 'signed' });
    expect((await get(a!, 'acme/flushed', 'manifests', 'v1')).status).toBe(200);
    // Evaluated again (from A's in-process evidence memo, evidenceTTL: no discovery request needed).
    expect(await metric(a!, 'pullwarden_decisions_total', { policy: 'signed' })).toBe(evaluated + 1);
    for (const replica of [a!, b!]) {
      for (const digest of [img.configDigest, ...img.layerDigests]) {
        const blob = await get(replica, 'acme/flushed', 'blobs', digest);
        expect(blob.status, `${replica.name} ${digest}`).toBe(200);
        expect(sha256(blob.body)).toBe(digest);
      }
    }
  }, 30_000);
});
