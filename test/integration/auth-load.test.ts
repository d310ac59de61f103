/**
 * Hostile clients against pull authentication: bursts of wrong passwords, unknown users, and a queue
 * that must stay bounded. Proven by counting (answers, password checks done), not by timing.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import bcrypt from 'bcryptjs';
import { afterEach, describe, expect, it } from 'vitest';
import { startTestProxy } from '../support/app.ts';
import type { TestProxy } from '../support/app.ts';
import { makeImage, startFakeUpstream } from '../support/fake-upstream.ts';
import type { FakeUpstream } from '../support/fake-upstream.ts';

const basic = (user: string, password: string) =>
  `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

let fake: FakeUpstream | undefined;
let proxy: TestProxy | undefined;
let dir: string | undefined;

afterEach(async () => {
  await proxy?.close();
  await fake?.close();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  proxy = undefined;
  fake = undefined;
  dir = undefined;
});

async function start(auth: Record<string, unknown>, cost = 10): Promise<TestProxy> {
  fake = await startFakeUpstream();
  makeImage(fake, 'acme/app', 'v1');
  dir = await mkdtemp(join(tmpdir(), 'pw-auth-load-'));
  await writeFile(join(dir, 'htpasswd'), `robot:${bcrypt.hashSync('s3cret', cost)}\n`);
  await writeFile(join(dir, 'ci.token'), 'tok-123\n');
  proxy = await startTestProxy({
    upstreams: { [fake.host]: { url: fake.url } },
    defaultUpstream: fake.host,
    policies: [{ name: 'allow-all', match: ['**'], action: 'allow' }],
    auth: {
      htpasswd: join(dir, 'htpasswd'),
      users: { robot: [`${fake.host}/acme/**`] },
      tokens: [{ name: 'ci', tokenFile: join(dir, 'ci.token'), repositories: [`${fake.host}/acme/**`] }],
      ...auth,
    },
  });
  return proxy;
}

const head = (p: TestProxy, authorization: string) =>
  fetch(`${p.url}/v2/acme/app/manifests/v1`, { method: 'HEAD', headers: { authorization } });

describe('password checks under load', () => {
  it('does not lock out a client that retries one wrong password (a typo, as containerd retries), and checks it once', async () => {
    const p = await start({ maxFailures: 3 });
    const auth = p.handle.app.auth;
    for (let i = 0; i < 10; i++) expect((await head(p, basic('robot', 'typo'))).status).toBe(401);
    expect(auth.verifications().completed).toBe(1);
    expect((await head(p, basic('robot', 's3cret'))).status).toBe(200);
  });

  it('keeps answering cached pulls while wrong passwords queue up on the worker pool', async () => {
    const p = await start({ maxFailures: 0, verifyWorkers: 1, verifyQueue: 1000 }, 12);
    expect((await head(p, 'Bearer tok-123')).status).toBe(200); // warm: tag and decision cached
    const auth = p.handle.app.auth;

    const N = 16;
    let answered = 0;
    const wrong = Array.from({ length: N }, (_, i) =>
      head(p, basic('robot', `wrong-${i}`)).then((r) => {
        answered++;
        return r.status;
      }),
    );
    // Wait until the burst is queued on the pool.
    while (auth.verifications().pending < N) await new Promise((r) => setImmediate(r));

    const cached = await head(p, 'Bearer tok-123');

    // The cached pull was answered while most wrong passwords were still waiting for a worker.
    expect(cached.status).toBe(200);
    expect(cached.headers.get('x-pullwarden-cache')).toBe('hit');
    expect(answered).toBeLessThan(N / 2);
    expect(auth.verifications().pending).toBeGreaterThan(N / 2);
    expect(await Promise.all(wrong)).toEqual(Array<number>(N).fill(401));
    expect(auth.verifications().completed).toBe(N);
  }, 60_000);

  it('spends a full password check on an unknown user too', async () => {
    const p = await start({ maxFailures: 0 });
    const auth = p.handle.app.auth;
    const before = auth.verifications().completed;
    expect((await head(p, basic('nobody', 'x'))).status).toBe(401);
    expect((await head(p, basic('robot', 'wrong'))).status).toBe(401);
    // Both took a bcrypt comparison on the pool (the unknown user against a dummy hash).
    expect(auth.verifications().completed - before).toBe(2);
  });

  it('refuses password checks beyond the queue with 503 and Retry-After, not unbounded memory', async () => {
    const p = await start({ maxFailures: 0, verifyWorkers: 1, verifyQueue: 4 }, 12);
    const statuses = await Promise.all(
      Array.from({ length: 40 }, (_, i) =>
        head(p, basic('robot', `wrong-${i}`)).then((r) => ({
          status: r.status,
          retry: r.headers.get('retry-after'),
        })),
      ),
    );
    const refused = statuses.filter((s) => s.status === 503);
    expect(refused.length).toBeGreaterThan(0);
    for (const r of refused) expect(r.retry).toBe('1');
    expect(statuses.filter((s) => s.status === 401).length).toBeLessThanOrEqual(4 + 1 + 4);
    expect(statuses.every((s) => s.status === 401 || s.status === 503)).toBe(true);
  }, 60_000);

  it('limits failed attempts per client address with 429 and Retry-After; right credentials already verified still work', async () => {
    const p = await start({ maxFailures: 3, failureWindow: '1m' });
    const auth = p.handle.app.auth;
    expect((await head(p, basic('robot', 's3cret'))).status).toBe(200); // verified once, remembered
    for (let i = 0; i < 3; i++) expect((await head(p, basic('robot', `bad-${i}`))).status).toBe(401);
    const checks = auth.verifications().completed;

    const limited = await head(p, basic('robot', 'bad-again'));
    expect(limited.status).toBe(429);
    expect(Number(limited.headers.get('retry-after'))).toBeGreaterThan(0);
    const token = await head(p, 'Bearer wrong-token');
    expect(token.status).toBe(429);
    // No password check was spent on the limited client.
    expect(auth.verifications().completed).toBe(checks);
    // A valid token and already verified credentials are not guesses: they still pass.
    expect((await head(p, 'Bearer tok-123')).status).toBe(200);
    expect((await head(p, basic('robot', 's3cret'))).status).toBe(200);
  });
});
