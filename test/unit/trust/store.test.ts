import { TrustedRoot } from '@sigstore/protobuf-specs';
import { afterEach, describe, expect, it } from 'vitest';
import {
  identityGlob as globToRegExp,
  anchoredRegExp,
  publicGoodTrustedRoot,
  TrustMaterialStore,
} from '../../../src/trust/index.ts';
import { createKeyPair, createTestSigstore } from '../../support/signer.ts';
import { tempDir } from './helpers.ts';

const stores: TrustMaterialStore[] = [];
afterEach(() => {
  for (const s of stores.splice(0)) s.close();
});

async function track(p: Promise<TrustMaterialStore>): Promise<TrustMaterialStore> {
  const s = await p;
  stores.push(s);
  return s;
}

describe('trust roots', () => {
  it('reads the public-good root embedded in @sigstore/tuf without any network', async () => {
    const root = await publicGoodTrustedRoot();
    expect(root.tlogs.length).toBeGreaterThan(0);
    expect(root.certificateAuthorities.length).toBeGreaterThan(0);
    expect(root.ctlogs.length).toBeGreaterThan(0);
    const a = await track(TrustMaterialStore.load({ roots: { sigstore: { sigstore: 'public-good' } } }));
    const b = await track(TrustMaterialStore.load({ roots: { sigstore: { sigstore: 'public-good' } } }));
    expect(a.version).toBe(b.version);
    expect(a.names).toEqual({ roots: ['sigstore'], keys: [] });
  });

  it('refuses a file that is not a trusted root, naming it', async () => {
    const tmp = await tempDir();
    try {
      const file = await tmp.write('bad.json', { hello: 'world' });
      await expect(TrustMaterialStore.load({ roots: { corp: { file } } })).rejects.toThrow(
        /trust root corp: .*not a Sigstore trusted root/,
      );
      await expect(
        TrustMaterialStore.load({ roots: { corp: { file: `${tmp.dir}/missing.json` } } }),
      ).rejects.toThrow(/trust root corp/);
    } finally {
      await tmp.cleanup();
    }
  });

  it('refuses an unknown keyTlogRoot', async () => {
    await expect(TrustMaterialStore.load({ keyTlogRoot: 'nope' })).rejects.toThrow(/keyTlogRoot nope/);
  });

  it('refuses malformed keys at load', async () => {
    await expect(TrustMaterialStore.load({ keys: { k: { pem: 'not a key' } } })).rejects.toThrow(
      /key k: not a PEM public key/,
    );
  });

  it('reads keys from files', async () => {
    const tmp = await tempDir();
    try {
      const key = createKeyPair();
      const file = await tmp.write('cosign.pub', key.publicKeyPem);
      const fromFile = await track(TrustMaterialStore.load({ keys: { k: { file } } }));
      const inline = await track(TrustMaterialStore.load({ keys: { k: { pem: key.publicKeyPem } } }));
      expect(fromFile.version).toBe(inline.version);
    } finally {
      await tmp.cleanup();
    }
  });
});

describe('TUF refresh', () => {
  it('is off unless configured', async () => {
    const store = await track(TrustMaterialStore.load({ roots: { pg: { sigstore: 'public-good' } } }));
    expect(await store.refresh()).toBe(false);
  });

  it('swaps in a fresh root and changes version; keeps the last good root when a refresh fails', async () => {
    const world = await createTestSigstore();
    const fresh = TrustedRoot.fromJSON(world.trustedRootJSON);
    let fail = false;
    const errors: { reason: string; using: string }[] = [];
    const versions: string[] = [];
    const baseline = await track(TrustMaterialStore.load({ roots: { pg: { sigstore: 'public-good' } } }));
    const store = await track(
      TrustMaterialStore.load(
        { roots: { pg: { sigstore: 'public-good' } } },
        {
          refresh: {
            cachePath: '/nonexistent',
            intervalMs: 3_600_000,
            fetch: () => (fail ? Promise.reject(new Error('tuf down')) : Promise.resolve(fresh)),
          },
          onRefreshError: (_err, info) => errors.push(info),
          onRefreshed: (v) => versions.push(v),
        },
      ),
    );
    expect(baseline.publicGoodOrigin).toMatch(/^the root embedded in @sigstore\/tuf \d+\.\d+\.\d+ /);
    await store.refresh(); // joins the refresh started at load
    expect(store.publicGoodOrigin).toMatch(/^TUF https:\/\/tuf-repo-cdn\.sigstore\.dev, refreshed \d{4}-/);
    expect(store.version).not.toBe(baseline.version);
    expect(versions).toEqual([store.version]);
    const good = store.version;
    expect(await store.refresh()).toBe(false); // same root again: no change
    fail = true;
    expect(await store.refresh()).toBe(false);
    expect(store.version).toBe(good);
    expect(errors).toEqual([expect.objectContaining({ reason: 'tuf down', using: store.publicGoodOrigin })]);
  });
});

describe('identity patterns', () => {
  it('compiles globs anchored, with * over any run of characters', () => {
    const re = globToRegExp('https://github.com/acme/*/.github/workflows/release.yml@refs/tags/v*');
    expect(re.test('https://github.com/acme/app/.github/workflows/release.yml@refs/tags/v1.0')).toBe(true);
    expect(re.test('https://github.com/acme/a/b/.github/workflows/release.yml@refs/tags/v1')).toBe(true);
    expect(re.test('xhttps://github.com/acme/app/.github/workflows/release.yml@refs/tags/v1')).toBe(false);
    expect(re.test('https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main')).toBe(false);
    expect(globToRegExp('a.b').test('axb')).toBe(false);
    expect(globToRegExp('a+(b)?').test('a+(b)?')).toBe(true);
  });

  it('anchors user regular expressions, even with alternation', () => {
    const re = anchoredRegExp('good|https://evil');
    expect(re.test('good')).toBe(true);
    expect(re.test('https://evil.example/good')).toBe(false);
    expect(re.test('https://evil')).toBe(true);
  });
});
