import type { ChildProcess } from 'node:child_process';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { makeImage, sha256, startFakeUpstream } from '../support/fake-upstream.ts';
import type { FakeImage, FakeUpstream } from '../support/fake-upstream.ts';
import { freePort } from '../support/ports.ts';
import { startServeProcess } from '../support/serve-process.ts';

let fake: FakeUpstream | undefined;
let dir: string | undefined;
const children: ChildProcess[] = [];

afterEach(async () => {
  for (const c of children.splice(0)) c.kill('SIGKILL');
  await fake?.close();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

/** Two independent `serve` processes in shared mode on one storage directory; their base URLs. */
async function twoReplicas(): Promise<{ a: string; b: string; procA: ChildProcess; data: string }> {
  dir = await mkdtemp(join(tmpdir(), 'pw-shared-'));
  const data = join(dir, 'data');
  const urls: string[] = [];
  const procs: ChildProcess[] = [];
  for (const replica of ['a', 'b']) {
    const port = await freePort();
    const config = join(dir, `${replica}.yaml`);
    await writeFile(
      config,
      stringify({
        listen: `127.0.0.1:${port}`,
        storage: { dir: data, shared: true, replica },
        log: { level: 'silent' },
        upstreams: { [fake!.host]: { url: fake!.url } },
        defaultUpstream: fake!.host,
        trust: { refresh: '0s' },
        policies: [{ name: 'allow-all', match: ['**'], action: 'allow' }],
      }),
    );
    const proc = await startServeProcess(config, port);
    children.push(proc);
    procs.push(proc);
    urls.push(`http://127.0.0.1:${port}/v2/acme/app`);
  }
  return { a: urls[0]!, b: urls[1]!, procA: procs[0]!, data };
}

/** GET a blob to the end: its status and body digest, or the error that cut it. */
async function pull(
  url: string,
): Promise<{ status: number; digest?: string; bytes?: number; error?: string }> {
  try {
    const res = await fetch(url);
    const body = Buffer.from(await res.arrayBuffer());
    return { status: res.status, digest: sha256(body), bytes: body.length };
  } catch (err) {
    return { status: 0, error: err instanceof Error ? err.message : String(err) };
  }
}

async function admit(img: FakeImage, ...bases: string[]): Promise<void> {
  for (const base of bases) expect((await fetch(`${base}/manifests/${img.manifestDigest}`)).status).toBe(200);
}

async function waitForFillLock(data: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const names = await readdir(join(data, 'fills')).catch(() => []);
    if (names.some((n) => n.endsWith('.lock'))) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error('no fill lock appeared');
}

describe('one fill per blob across processes sharing a storage directory', () => {
  it('makes one upstream GET for 16 cold GETs of one blob spread over two serve processes', async () => {
    fake = await startFakeUpstream();
    const img = makeImage(fake, 'acme/app', '1.0', { layerSize: 8 * 1024 * 1024 });
    const layer = img.layerDigests[0]!;
    const { a, b } = await twoReplicas();
    await admit(img, a, b);
    fake.resetCounts();
    // A slow body, so that every request arrives while the fill runs.
    fake.fault({ kind: 'blob', method: 'GET' }, { delayBodyMs: 10, chunkBytes: 256 * 1024 });
    const results = await Promise.all(
      Array.from({ length: 16 }, (_, i) => pull(`${i % 2 === 0 ? a : b}/blobs/${layer}`)),
    );
    for (const r of results) expect(r).toEqual({ status: 200, digest: layer, bytes: 8 * 1024 * 1024 });
    expect(fake.count({ kind: 'blob', method: 'GET' })).toBe(1);
    // Both serve it from the one cached copy afterwards.
    fake.clearFaults();
    for (const base of [a, b]) {
      const res = await fetch(`${base}/blobs/${layer}`);
      expect(res.headers.get('x-pullwarden-cache')).toBe('hit');
      expect(sha256(Buffer.from(await res.arrayBuffer()))).toBe(layer);
    }
    expect(fake.count({ kind: 'blob', method: 'GET' })).toBe(1);
  });

  it('takes over the fill of a SIGKILLed filler: waiters get the verified blob', async () => {
    fake = await startFakeUpstream();
    const img = makeImage(fake, 'acme/app', '1.0', { layerSize: 2 * 1024 * 1024 });
    const layer = img.layerDigests[0]!;
    const { a, b, procA, data } = await twoReplicas();
    await admit(img, a, b);
    fake.resetCounts();
    // A's upstream answers late: A holds the fill lock, B's requests wait for it to start.
    fake.fault({ kind: 'blob', method: 'GET' }, { delayHeadersMs: 60_000 }, { times: 1 });
    const first = pull(`${a}/blobs/${layer}`);
    await waitForFillLock(data);
    const waiters = Array.from({ length: 4 }, () => pull(`${b}/blobs/${layer}`));
    await new Promise((r) => setTimeout(r, 200));
    procA.kill('SIGKILL');
    expect((await first).status).toBe(0);
    for (const r of await Promise.all(waiters)) {
      expect(r).toEqual({ status: 200, digest: layer, bytes: 2 * 1024 * 1024 });
    }
    expect(fake.count({ kind: 'blob', method: 'GET' })).toBe(2);
  });

  it('aborts, never ends short, the responses that followed a filler killed mid-body', async () => {
    fake = await startFakeUpstream();
    const size = 4 * 1024 * 1024;
    const img = makeImage(fake, 'acme/app', '1.0', { layerSize: size });
    const layer = img.layerDigests[0]!;
    const { a, b, procA, data } = await twoReplicas();
    await admit(img, a, b);
    fake.resetCounts();
    fake.fault({ kind: 'blob', method: 'GET' }, { delayBodyMs: 20, chunkBytes: 64 * 1024 }, { times: 1 });
    const first = pull(`${a}/blobs/${layer}`);
    await waitForFillLock(data);
    await new Promise((r) => setTimeout(r, 300));
    const followers = Array.from({ length: 4 }, () => pull(`${b}/blobs/${layer}`));
    await new Promise((r) => setTimeout(r, 300));
    procA.kill('SIGKILL');
    await first;
    for (const r of await Promise.all(followers)) {
      // Either the whole verified blob (a follower that asked again) or a cut connection.
      if (r.status === 200 && r.error === undefined)
        expect(r).toEqual({ status: 200, digest: layer, bytes: size });
      else expect(r.status).toBe(0);
    }
    // B took the stale fill over: the blob is served whole, from one more upstream GET.
    const again = await pull(`${b}/blobs/${layer}`);
    expect(again).toEqual({ status: 200, digest: layer, bytes: size });
    expect(fake.count({ kind: 'blob', method: 'GET' })).toBe(2);
  });
});
