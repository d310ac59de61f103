import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { openMetadataStore } from '../../src/metadata/index.ts';
import type { Digest } from '../../src/oci/index.ts';

const METADATA = pathToFileURL(join(import.meta.dirname, '../../src/metadata/index.ts')).href;

/**
 * One worker process: opens the shared SQLite file as a worker does and, as fast as it can, records
 * decisions for its own digests and for digests every worker decides, plus admitted blob links.
 */
const CHILD = `
const { openMetadataStore } = await import(${JSON.stringify(METADATA)});
const [url, worker, count] = process.argv.slice(1);
const store = await openMetadataStore({ url, namespace: 'pw' });
const hex = (n) => n.toString(16).padStart(64, '0');
await Promise.all(Array.from({ length: Number(count) }, async (_, i) => {
  await store.set('decision', 'own-' + worker + '-' + i, { worker, i });
  await store.set('decision', 'same-' + i, { worker, i });
  await store.addBlobLinks('docker.io', 'library/app', ['sha256:' + hex(Number(worker) * 100000 + i)]);
}));
await store.close();
`;

let dir: string | undefined;
afterEach(async () => {
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

function runWorker(url: string, worker: number, count: number): Promise<number | null> {
  const child = spawn(
    process.execPath,
    ['--input-type=module', '-e', CHILD, url, String(worker), String(count)],
    {
      stdio: ['ignore', 'ignore', 'inherit'],
    },
  );
  return new Promise((resolve) => child.once('exit', resolve));
}

describe('SQLite metadata shared by worker processes', () => {
  it('loses no write when several processes decide the same and different digests at once', async () => {
    dir = await mkdtemp(join(tmpdir(), 'pw-sqlite-workers-'));
    const url = `sqlite://${join(dir, 'meta.sqlite')}`;
    const workers = 4;
    const count = 300;
    const codes = await Promise.all(Array.from({ length: workers }, (_, w) => runWorker(url, w, count)));
    expect(codes).toEqual(Array.from({ length: workers }, () => 0));

    const store = await openMetadataStore({ url, namespace: 'pw' });
    try {
      const hex = (n: number) => n.toString(16).padStart(64, '0');
      for (let w = 0; w < workers; w++) {
        for (let i = 0; i < count; i++) {
          expect(await store.get('decision', `own-${w}-${i}`)).toEqual({ worker: String(w), i });
          expect(
            await store.hasBlobLink('docker.io', 'library/app', `sha256:${hex(w * 100000 + i)}` as Digest),
          ).toBe(true);
        }
      }
      for (let i = 0; i < count; i++) {
        const same = await store.get<{ worker: string; i: number }>('decision', `same-${i}`);
        expect(same?.i).toBe(i);
      }
    } finally {
      await store.close();
    }
  });
});
