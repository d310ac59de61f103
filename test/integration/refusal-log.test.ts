import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { pino } from 'pino';
import { stringify } from 'yaml';
import { afterEach, describe, expect, it } from 'vitest';
import { startServer } from '../../src/app.ts';
import type { ServerHandle } from '../../src/app.ts';
import { loadConfig } from '../../src/config/index.ts';
import { makeImage, startFakeUpstream } from '../support/fake-upstream.ts';
import type { FakeUpstream } from '../support/fake-upstream.ts';

let dir: string | undefined;
let handle: ServerHandle | undefined;
let fake: FakeUpstream | undefined;
afterEach(async () => {
  await handle?.close();
  await fake?.close();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  handle = undefined;
  fake = undefined;
  dir = undefined;
});

describe('the access log line of a refusal', () => {
  it('names the upstream asked for (routing) and the digest decided (policy)', async () => {
    fake = await startFakeUpstream();
    const image = makeImage(fake, 'acme/secret', 'v1');
    dir = await mkdtemp(join(tmpdir(), 'pw-refusal-log-'));
    const file = join(dir, 'pullwarden.yaml');
    await writeFile(
      file,
      stringify({
        listen: '127.0.0.1:0',
        storage: { dir: join(dir, 'data') },
        upstreams: { [fake.host]: { url: fake.url } },
        defaultUpstream: fake.host,
        trust: { refresh: '0s' },
        policies: [{ name: 'no-secret', match: ['**'], action: 'deny' }],
      }),
    );
    const lines: Record<string, unknown>[] = [];
    const out = new PassThrough();
    out.on('data', (c: Buffer) => {
      for (const l of c.toString().split('\n'))
        if (l !== '') lines.push(JSON.parse(l) as Record<string, unknown>);
    });
    handle = await startServer(await loadConfig(file, {}), {
      logger: pino({ level: 'info' }, out),
      defaultMetrics: false,
    });
    const headers = { accept: 'application/vnd.oci.image.manifest.v1+json' };
    expect(
      (await fetch(`${handle.address}/v2/x/app/manifests/1?ns=evil.example.com`, { headers })).status,
    ).toBe(403);
    expect((await fetch(`${handle.address}/v2/acme/secret/manifests/v1`, { headers })).status).toBe(403);
    await new Promise((r) => setImmediate(r));
    const completed = lines.filter((l) => l.msg === 'request completed');
    expect(completed).toEqual([
      expect.objectContaining({
        route: 'manifest',
        upstream: 'evil.example.com',
        repository: 'x/app',
        status: 403,
      }),
      expect.objectContaining({
        route: 'manifest',
        repository: 'acme/secret',
        digest: image.manifestDigest,
        status: 403,
      }),
    ]);
  });
});
