/**
 * Pull authentication with real clients: containerd (`ctr --user`) and podman (an auth file) answer
 * pullwarden's Basic challenge with the credentials they were given, and are refused without them.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import bcrypt from 'bcryptjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestProxy } from '../support/app.ts';
import { startE2e } from '../support/e2e.ts';
import type { E2e } from '../support/e2e.ts';
import { writeHostsToml } from '../support/containerd.ts';
import type { Containerd } from '../support/containerd.ts';
import { images } from '../support/oci-layout.ts';
import type { WrittenLayout } from '../support/oci-layout.ts';
import { podman } from '../support/podman.ts';
import type { PodmanStore } from '../support/podman.ts';
import { CommandError } from '../support/proc.ts';
import type { Registry } from '../support/registry.ts';
import { pushLayout } from '../support/skopeo.ts';

const UP = 'upstream.test';

describe('pull authentication with real clients', () => {
  let e2e: E2e;
  let work: string;
  let registry: Registry;
  let proxy: TestProxy;
  let containerd: Containerd;
  let store: PodmanStore;
  let image: WrittenLayout;
  let hostsDir: string;
  let registriesConf: string;

  beforeAll(async () => {
    e2e = await startE2e({ prefix: 'pw-auth-e2e-', containerd: true, podman: true });
    work = e2e.work;
    ({ registry, containerd } = e2e);
    image = await e2e.layout('img', images.singleArch('auth-e2e'));
    await pushLayout(image, registry.host, 'team/app:v1');
    await writeFile(join(work, 'htpasswd'), `node:${bcrypt.hashSync('n0de-pass', 10)}\n`);
    proxy = await e2e.proxy({
      upstreams: { [UP]: { url: registry.url } },
      policies: [{ name: 'allow-all', match: ['**'], action: 'allow' }],
      auth: { htpasswd: join(work, 'htpasswd'), users: { node: [`${UP}/team/**`] } },
    });
    hostsDir = join(work, 'certs.d');
    await writeHostsToml(hostsDir, UP, proxy.url);
    registriesConf = await e2e.registriesConf([
      { prefix: UP, location: `${proxy.host}/${UP}`, insecure: true },
    ]);
    store = await e2e.podman(registriesConf);
  }, 180_000);

  afterAll(async () => {
    await e2e?.close();
  });

  it('containerd pulls with --user after the challenge, and fails without credentials', async () => {
    await expect(containerd.pull(`${UP}/team/app:v1`, { hostsDir })).rejects.toBeInstanceOf(CommandError);
    await expect(
      containerd.pull(`${UP}/team/app:v1`, { hostsDir, user: 'node:wrong' }),
    ).rejects.toBeInstanceOf(CommandError);
    const pulled = await containerd.pull(`${UP}/team/app:v1`, { hostsDir, user: 'node:n0de-pass' });
    expect(pulled.digest).toBe(image.digest);
    await containerd.removeImages();
  });

  it('podman pulls with the credentials `podman login <proxy>` stores, and fails without them', async () => {
    await expect(store.pull(`${UP}/team/app:v1`)).rejects.toBeInstanceOf(CommandError);
    // containers/image looks credentials up by the location it pulls from (the proxy), not by the
    // registry named in the reference; `--creds` is not sent to a rewritten location (podman 4.3).
    const authfile = join(work, 'auth.json');
    const auth = Buffer.from('node:n0de-pass').toString('base64');
    await writeFile(authfile, JSON.stringify({ auths: { [proxy.host]: { auth } } }));
    const opts = { root: store.root, runroot: store.runroot, registriesConf };
    await podman(['pull', '--tls-verify=false', '--authfile', authfile, `${UP}/team/app:v1`], opts);
    const { stdout } = await podman(['image', 'inspect', `${UP}/team/app:v1`], opts);
    expect((JSON.parse(stdout) as { Digest: string }[])[0]!.Digest).toBe(image.digest);
  });
});
