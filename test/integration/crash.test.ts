import type { ChildProcess } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { makeImage, sha256, startFakeUpstream } from '../support/fake-upstream.ts';
import type { FakeUpstream } from '../support/fake-upstream.ts';
import { startServeProcess, writeServeConfig } from '../support/serve-process.ts';

let fake: FakeUpstream | undefined;
let child: ChildProcess | undefined;
let dir: string | undefined;

afterEach(async () => {
  child?.kill('SIGKILL');
  await fake?.close();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

describe('a process killed in the middle of a cache fill', () => {
  it('never serves the partial blob and cleans the leftovers at the next start', async () => {
    fake = await startFakeUpstream();
    const img = makeImage(fake, 'acme/app', '1.0', { layerSize: 8 * 1024 * 1024 });
    const layer = img.layerDigests[0]!;
    dir = await mkdtemp(join(tmpdir(), 'pw-crash-'));
    const { config, port } = await writeServeConfig(dir, fake);
    const base = `http://127.0.0.1:${port}/v2/acme/app`;
    child = await startServeProcess(config, port);
    expect((await fetch(`${base}/manifests/1.0`)).status).toBe(200);

    // A slow upstream body: the fill is well under way, and far from done, when the process dies.
    fake.fault({ kind: 'blob', method: 'GET' }, { delayBodyMs: 50, chunkBytes: 64 * 1024 }, { times: 1 });
    const res = await fetch(`${base}/blobs/${layer}`);
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    let received = 0;
    while (received < 256 * 1024) {
      const { value, done } = await reader.read();
      if (done) break;
      received += (value as Uint8Array).byteLength;
    }
    const tmpBefore = await readdir(join(dir, 'data', 'tmp'));
    expect(tmpBefore.length).toBe(1);
    child.kill('SIGKILL');
    await new Promise((r) => child!.once('exit', r));
    await reader.read().catch(() => undefined);

    child = await startServeProcess(config, port);
    expect(await readdir(join(dir, 'data', 'tmp'))).toEqual([]);
    fake.resetCounts();
    const again = await fetch(`${base}/blobs/${layer}`);
    expect(again.status).toBe(200);
    expect(again.headers.get('x-pullwarden-cache')).toBe('miss');
    expect(sha256(Buffer.from(await again.arrayBuffer()))).toBe(layer);
    expect(fake.count({ kind: 'blob', method: 'GET' })).toBe(1);
  });
});
