import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runCli } from '../../support/cli.ts';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pw-cli-tags-'));
  await writeFile(
    join(dir, 'pw.yaml'),
    [
      'upstreams:',
      '  127.0.0.1:5999:',
      '    aliases: [corp]',
      `storage:\n  dir: ${join(dir, 'storage')}`,
      `metadata:\n  url: sqlite://${join(dir, 'meta.db')}`,
      '',
    ].join('\n'),
  );
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const tags = (...argv: string[]) => runCli(['tags', ...argv, '--config', 'pw.yaml'], dir);

const digest = `sha256:${'d'.repeat(64)}`;

describe('pullwarden tags (through the app, on the configured metadata store)', () => {
  it('pins through an alias, shows the pin in the history, and unpins, in text or JSON as asked', async () => {
    const pinned = await tags('pin', 'corp/acme/app:1.0', digest, '--force');
    expect(pinned).toMatchObject({ code: 0, stderr: '' });
    expect(pinned.stdout).toBe(
      `127.0.0.1:5999/acme/app:1.0 pinned to ${digest} (--force: not checked against the upstream)\n`,
    );
    const history = await tags('history', '127.0.0.1:5999/acme/app:1.0', '--json');
    expect(JSON.parse(history.stdout)).toMatchObject({ ref: '127.0.0.1:5999/acme/app:1.0', pin: { digest } });

    expect(await tags('unpin', 'corp/acme/app:1.0')).toMatchObject({
      code: 0,
      stdout: '127.0.0.1:5999/acme/app:1.0 unpinned\n',
    });
    expect((await tags('unpin', 'corp/acme/app:1.0', '--json')).stdout).toBe(
      '{"ref":"127.0.0.1:5999/acme/app:1.0","pin":null}\n',
    );
  });

  it('refuses a reference on an upstream that is not configured, naming it', async () => {
    const r = await tags('unpin', 'evil.example.com/acme/app:1.0');
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(
      'pullwarden: upstream registry "evil.example.com" is not configured on this proxy\n',
    );
  });
});
