/**
 * Tag drift against a real registry: a tag re-pushed with skopeo to a different image is seen moving,
 * and each policy's tag rules apply (warn, deny until pinned, immutable, cooldown, banned tags). The
 * `pullwarden tags` CLI runs as a real process on the proxy's own metadata store.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestProxy } from '../support/app.ts';
import { startE2e } from '../support/e2e.ts';
import type { E2e } from '../support/e2e.ts';
import { images } from '../support/oci-layout.ts';
import type { WrittenLayout } from '../support/oci-layout.ts';
import type { Registry } from '../support/registry.ts';
import { pushLayout } from '../support/skopeo.ts';

const UP = 'upstream.test';
const CLI = join(import.meta.dirname, '../../src/cli/run.ts');
const ACCEPT = 'application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json';
const execAsync = promisify(execFile);

describe('tag drift against a real registry', () => {
  let e2e: E2e;
  let registry: Registry;
  let proxy: TestProxy;
  let a: WrittenLayout;
  let b: WrittenLayout;

  beforeAll(async () => {
    e2e = await startE2e({ prefix: 'pw-tags-' });
    registry = e2e.registry;
    [a, b] = await Promise.all([
      e2e.layout('a', images.singleArch('tags-a')),
      e2e.layout('b', images.singleArch('tags-b')),
    ]);
    const allow = (name: string, repo: string, tags: Record<string, unknown>) => ({
      name,
      match: [`${UP}/${repo}/**`],
      action: 'allow',
      tags,
    });
    proxy = await e2e.proxy({
      upstreams: { [UP]: { url: registry.url, tagTTL: '10ms' } },
      defaultUpstream: UP,
      policies: [
        allow('drift-warn', 'warn', { onMove: 'warn' }),
        allow('drift-deny', 'deny', { onMove: 'deny' }),
        allow('pinned', 'immutable', { immutable: true }),
        allow('cooldown', 'cooldown', { minAge: '2s' }),
        allow('no-latest', 'banned', { deny: ['latest', '*-rc*'] }),
        { name: 'rest', match: ['**'], action: 'allow' },
      ],
    });
  }, 120_000);

  afterAll(async () => {
    await e2e?.close();
  });

  const pull = async (repo: string, tag = 'v1') => {
    await new Promise((r) => setTimeout(r, 20)); // past tagTTL: every pull asks the upstream
    const res = await fetch(`${proxy.url}/v2/${UP}/${repo}/manifests/${tag}`, {
      headers: { accept: ACCEPT },
    });
    const body = (await res.json()) as {
      errors?: { code: string; message: string; detail: Record<string, unknown> }[];
    };
    return { status: res.status, digest: res.headers.get('docker-content-digest'), body };
  };

  const cli = async (...args: string[]) => {
    const { stdout } = await execAsync(process.execPath, [
      CLI,
      'tags',
      ...args,
      '--config',
      proxy.config.source,
    ]);
    return stdout;
  };

  const moves = async (): Promise<number> => {
    const text = await (await fetch(`${proxy.url}/metrics`)).text();
    const m = /pullwarden_tag_moves_total\{upstream="upstream\.test"\} (\d+)/.exec(text);
    return m ? Number(m[1]) : 0;
  };

  it('detects a re-pushed tag, warns, serves the new digest and keeps the history', async () => {
    await pushLayout(a, registry.host, 'warn/app:v1');
    expect(await pull('warn/app')).toMatchObject({ status: 200, digest: a.digest });
    const before = await moves();
    await pushLayout(b, registry.host, 'warn/app:v1');
    expect(await pull('warn/app')).toMatchObject({ status: 200, digest: b.digest });
    expect(await moves()).toBe(before + 1);
    const history = JSON.parse(await cli('history', `${UP}/warn/app:v1`, '--json')) as {
      history: { digest: string }[];
    };
    expect(history.history.map((h) => h.digest)).toEqual([a.digest, b.digest]);
  });

  it('denies a moved tag under onMove: deny until an operator pins the new digest', async () => {
    await pushLayout(a, registry.host, 'deny/app:v1');
    expect(await pull('deny/app')).toMatchObject({ status: 200, digest: a.digest });
    await pushLayout(b, registry.host, 'deny/app:v1');
    const denied = await pull('deny/app');
    expect(denied.status).toBe(403);
    expect(denied.body.errors?.[0]).toMatchObject({
      code: 'DENIED',
      detail: { policy: 'drift-deny', reason: 'tag-moved', pinned: a.digest, digest: b.digest },
    });
    expect(denied.body.errors?.[0]?.message).toContain('pullwarden tags pin');
    // The previously admitted digest stays pullable by digest.
    const byDigest = await fetch(`${proxy.url}/v2/${UP}/deny/app/manifests/${a.digest}`, {
      headers: { accept: ACCEPT },
    });
    expect(byDigest.status).toBe(200);
    expect(await cli('pin', `${UP}/deny/app:v1`, b.digest)).toContain('pinned');
    expect(await pull('deny/app')).toMatchObject({ status: 200, digest: b.digest });
  });

  it('keeps an immutable tag on its pinned digest until it is unpinned', async () => {
    await pushLayout(a, registry.host, 'immutable/app:v1');
    expect(await pull('immutable/app')).toMatchObject({ status: 200, digest: a.digest });
    await pushLayout(b, registry.host, 'immutable/app:v1');
    expect(await pull('immutable/app')).toMatchObject({ status: 200, digest: a.digest });
    expect(await cli('history', `${UP}/immutable/app:v1`)).toContain(`${a.digest} (pinned)`);
    await cli('unpin', `${UP}/immutable/app:v1`);
    expect(await pull('immutable/app')).toMatchObject({ status: 200, digest: b.digest });
  });

  it('holds a newly seen digest back for tags.minAge, serving the previous one meanwhile', async () => {
    await pushLayout(a, registry.host, 'cooldown/app:v1');
    const first = await pull('cooldown/app');
    expect(first.status).toBe(403);
    expect(first.body.errors?.[0]?.detail).toMatchObject({ reason: 'tag-cooldown', digest: a.digest });
    await new Promise((r) => setTimeout(r, 2_100));
    expect(await pull('cooldown/app')).toMatchObject({ status: 200, digest: a.digest });
    await pushLayout(b, registry.host, 'cooldown/app:v1');
    expect(await pull('cooldown/app')).toMatchObject({ status: 200, digest: a.digest });
    await new Promise((r) => setTimeout(r, 2_100));
    expect(await pull('cooldown/app')).toMatchObject({ status: 200, digest: b.digest });
  });

  it('refuses banned tags and serves the others', async () => {
    await pushLayout(a, registry.host, 'banned/app:latest');
    await pushLayout(a, registry.host, 'banned/app:1.0-rc1');
    await pushLayout(a, registry.host, 'banned/app:1.0');
    for (const tag of ['latest', '1.0-rc1']) {
      const res = await pull('banned/app', tag);
      expect(res.status).toBe(403);
      expect(res.body.errors?.[0]).toMatchObject({
        code: 'DENIED',
        detail: { policy: 'no-latest', reason: 'tag-denied' },
      });
    }
    expect(await pull('banned/app', '1.0')).toMatchObject({ status: 200, digest: a.digest });
  });
});
