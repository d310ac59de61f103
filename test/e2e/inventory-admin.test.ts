/**
 * The operator's view from a real sequence of pulls: distribution 2.8 as the upstream, containerd
 * (`ctr image pull --hosts-dir`) and podman (registries.conf path-prefix location) pulling through
 * pullwarden, one pull denied by policy. Then `pullwarden inventory --json` from the trail and the
 * cache, and the admin page in a real headless Chromium (playwright-core + Debian's chromium), with a
 * screenshot in test-results/ (not committed).
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import bcrypt from 'bcryptjs';
import { chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../support/cli.ts';
import type { InventoryEntry } from '../../src/service/index.ts';
import type { TestProxy } from '../support/app.ts';
import { startE2e } from '../support/e2e.ts';
import type { E2e } from '../support/e2e.ts';
import { writeHostsToml } from '../support/containerd.ts';
import type { Containerd } from '../support/containerd.ts';
import { images } from '../support/oci-layout.ts';
import type { WrittenLayout } from '../support/oci-layout.ts';
import type { PodmanStore } from '../support/podman.ts';
import { CommandError } from '../support/proc.ts';
import type { Registry } from '../support/registry.ts';
import { pushLayout } from '../support/skopeo.ts';

const UPSTREAM = 'upstream.test';
const CHROMIUM = '/usr/bin/chromium';
const OUTPUT = fileURLToPath(new URL('../../test-results/', import.meta.url));

describe('inventory and admin page from real pulls', () => {
  let e2e: E2e;
  let work: string;
  let registry: Registry;
  let proxy: TestProxy;
  let containerd: Containerd;
  let podmanStore: PodmanStore;
  let app: WrittenLayout;
  let blocked: WrittenLayout;
  let hostsDir: string;

  beforeAll(async () => {
    e2e = await startE2e({
      prefix: 'pw-e2e-inventory-',
      containerd: true,
      podman: true,
      tools: ['chromium'],
    });
    work = e2e.work;
    await writeFile(join(work, 'admin.htpasswd'), `ops:${bcrypt.hashSync('watch', 4)}\n`);
    ({ registry, containerd } = e2e);
    proxy = await e2e.proxy({
      upstreams: { [UPSTREAM]: { url: registry.url } },
      defaultUpstream: UPSTREAM,
      policies: [
        { name: 'no-blocked', match: [`${UPSTREAM}/acme/blocked`], action: 'deny' },
        { name: 'allow-rest', match: ['**'], action: 'allow' },
      ],
      admin: { listen: '127.0.0.1:0', htpasswd: join(work, 'admin.htpasswd') },
    });
    [app, blocked] = await Promise.all([
      e2e.layout('app', images.singleArch('inventory-app')),
      e2e.layout('blocked', images.singleArch('inventory-blocked')),
    ]);
    await Promise.all([
      pushLayout(app, registry.host, 'acme/app:v1'),
      pushLayout(blocked, registry.host, 'acme/blocked:v1'),
    ]);
    hostsDir = join(work, 'certs.d');
    await writeHostsToml(hostsDir, UPSTREAM, proxy.url);
    const registriesConf = await e2e.registriesConf([
      { prefix: UPSTREAM, location: `${proxy.host}/${UPSTREAM}`, insecure: true },
    ]);
    podmanStore = await e2e.podman(registriesConf);
  }, 240_000);

  afterAll(async () => {
    await e2e?.close();
  });

  it('lists what containerd and podman pulled, and the denial, in pullwarden inventory', async () => {
    expect((await containerd.pull(`${UPSTREAM}/acme/app:v1`, { hostsDir })).digest).toBe(app.digest);
    expect((await podmanStore.pull(`${UPSTREAM}/acme/app:v1`)).digest).toBe(app.digest);
    await expect(containerd.pull(`${UPSTREAM}/acme/blocked:v1`, { hostsDir })).rejects.toBeInstanceOf(
      CommandError,
    );

    const { code, stdout: out } = await runCli(
      ['inventory', '--config', join(proxy.dir, 'pullwarden.yaml'), '--json'],
      work,
    );
    expect(code).toBe(0);
    const { entries } = JSON.parse(out) as { entries: InventoryEntry[] };
    const appEntry = entries.find((e) => e.repository === 'acme/app' && e.tag === 'v1');
    expect(appEntry).toMatchObject({
      upstream: UPSTREAM,
      digest: app.digest,
      decision: 'allow',
      policy: 'allow-rest',
      denials: 0,
      // Image age from the config blob the pull cached (the layouts are built at a fixed time).
      created: '2024-01-01T00:00:00Z',
      signers: [],
    });
    // containerd (HEAD by tag) and podman (GET by tag): at least one request each.
    expect(appEntry!.pulls).toBeGreaterThanOrEqual(2);
    expect(entries.find((e) => e.repository === 'acme/blocked')).toMatchObject({
      decision: 'deny',
      policy: 'no-blocked',
    });
    expect(entries.find((e) => e.repository === 'acme/blocked')!.denials).toBeGreaterThanOrEqual(1);

    // The filters a reviewer asks for.
    const denied = await runJson([
      'inventory',
      '--config',
      join(proxy.dir, 'pullwarden.yaml'),
      '--json',
      '--denied',
    ]);
    expect(denied.map((e) => e.repository)).toEqual(['acme/blocked']);
    const old = await runJson([
      'inventory',
      '--config',
      join(proxy.dir, 'pullwarden.yaml'),
      '--json',
      '--older-than',
      '90d',
    ]);
    expect(old.map((e) => e.repository)).toContain('acme/app');
  }, 180_000);

  it('shows that denial on the admin page in a real browser, with and without JavaScript', async () => {
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
    try {
      for (const javaScriptEnabled of [true, false]) {
        const context = await browser.newContext({
          httpCredentials: { username: 'ops', password: 'watch' },
          javaScriptEnabled,
        });
        const page = await context.newPage();
        const violations: string[] = [];
        page.on('console', (m) => {
          if (m.type() === 'error') violations.push(m.text());
        });
        const res = await page.goto(`${proxy.handle.adminAddress!}/`);
        expect(res?.status()).toBe(200);
        const denial = page.locator('#denials tbody tr', { hasText: `${UPSTREAM}/acme/blocked:v1` });
        await expect.poll(() => denial.count()).toBeGreaterThanOrEqual(1);
        expect(await denial.first().innerText()).toContain('denied by policy "no-blocked"');
        expect(
          await page.locator('#inventory tbody tr', { hasText: `${UPSTREAM}/acme/app:v1` }).count(),
        ).toBe(1);
        // The chart is drawn (inline SVG bars), and the stylesheet applied under the CSP.
        expect(await page.locator('#chart rect').count()).toBeGreaterThan(0);
        // A string expression: the test is compiled without DOM types. Needs JavaScript in the page.
        if (javaScriptEnabled) {
          const background = await page.evaluate<string>('getComputedStyle(document.body).backgroundColor');
          expect(background).toBe('rgb(250, 250, 250)');
        }
        expect(violations, violations.join('\n')).toEqual([]);
        await mkdir(OUTPUT, { recursive: true });
        await page.screenshot({
          path: join(OUTPUT, `admin-page${javaScriptEnabled ? '' : '-nojs'}.png`),
          fullPage: true,
        });
        await context.close();
      }
      // Without credentials: 401 (Chromium's own fetch stack, without the page's auth prompt).
      const anonymous = await browser.newContext();
      expect((await anonymous.request.get(`${proxy.handle.adminAddress!}/`)).status()).toBe(401);
      await anonymous.close();
    } finally {
      await browser.close();
    }
  }, 120_000);

  async function runJson(argv: string[]): Promise<InventoryEntry[]> {
    const { code, stdout: out } = await runCli(argv, work);
    expect(code).toBe(0);
    return (JSON.parse(out) as { entries: InventoryEntry[] }).entries;
  }
});
