import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { KevCatalog } from '../../../src/trust/index.ts';
import { kevCatalog } from '../../support/reports.ts';

describe('KevCatalog', () => {
  const cleanup: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const fn of cleanup.splice(0)) await fn();
  });

  async function catalogFile(ids: string[]): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), 'pw-kev-'));
    cleanup.push(() => rm(dir, { recursive: true, force: true }));
    const file = join(dir, 'kev.json');
    await writeFile(file, JSON.stringify(kevCatalog(ids)));
    return file;
  }

  it('reloads the file when it changes, and changes its version', async () => {
    const file = await catalogFile(['CVE-2021-44228']);
    const kev = new KevCatalog(file, { intervalMs: 20 });
    cleanup.push(() => Promise.resolve(kev.close()));
    expect(kev.has('cve-2021-44228')).toBe(true);
    expect(kev.has('CVE-2024-3094')).toBe(false);
    const before = kev.version;
    // Replaced the way a mirror job writes it: a sibling file renamed over it.
    await writeFile(`${file}.tmp`, JSON.stringify(kevCatalog(['CVE-2021-44228', 'CVE-2024-3094'])));
    await rename(`${file}.tmp`, file);
    for (let i = 0; i < 100 && !kev.has('CVE-2024-3094'); i++) await sleep(20);
    expect(kev.has('CVE-2024-3094')).toBe(true);
    expect(kev.version).not.toBe(before);
  });

  it('fails closed on an unreadable catalog: nothing listed, and a problem to report', async () => {
    const file = await catalogFile([]);
    await writeFile(file, 'not json');
    const kev = new KevCatalog(file, { intervalMs: 20 });
    cleanup.push(() => Promise.resolve(kev.close()));
    expect(kev.problem).toMatch(/KEV catalog .*not valid JSON/);
    const missing = new KevCatalog(join(tmpdir(), 'pw-kev-does-not-exist.json'));
    cleanup.push(() => Promise.resolve(missing.close()));
    expect(missing.problem).toMatch(/ENOENT|no such file/);
  });
});
