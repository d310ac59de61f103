/**
 * TrustGate through its public methods: real cosign signatures on a counting in-memory upstream,
 * verified by the real verifier behind a counter. What a decision costs (upstream calls,
 * verifications), when it is reused, and what a deny tells the client.
 */
import { describe, expect, it } from 'vitest';
import { errorStatus } from '../../../src/oci/index.ts';
import type { Digest } from '../../../src/oci/index.ts';
import type { MemoryImage } from '../../support/fake-ports.ts';
import type { TrustGate } from '../../../src/service/index.ts';
import { gateManifest, rejection, SIGNED, worldPerTest } from './helpers.ts';
import type { World, WorldOptions } from './helpers.ts';

const newWorld = worldPerTest({ policies: SIGNED });

async function start(options: WorldOptions = {}): Promise<World & { gate: TrustGate }> {
  const world = await newWorld(options);
  const { gate } = world;
  if (gate === undefined) throw new Error('no gate');
  return { ...world, gate };
}

const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 50));

/** Upstream calls as `method reference` lines, for "each asked once" checks. */
const callLines = (w: World) =>
  w.upstream.calls.map((c) => `${c.method} ${c.repository} ${c.reference ?? ''}`);

describe('TrustGate decisions', () => {
  it('admits a signed manifest, verifying its signature once, and reuses the decision with no upstream call', async () => {
    const w = await start();
    const image = await w.signed('acme/app', 'v1');
    const first = await w.gate.admitManifest(w.upstream, w.target('acme/app'), gateManifest(image, 'v1'));
    expect(first).toMatchObject({ result: 'allow', policy: 'signed' });
    expect(first.signers).toEqual([{ kind: 'key', key: 'release' }]);
    expect(w.verifier.calls).toBe(1);
    const asked = w.upstream.total;
    expect(asked).toBeGreaterThan(0); // discovery read the signature from the upstream

    const again = await w.gate.admitManifest(w.upstream, w.target('acme/app'), gateManifest(image, 'v1'));
    expect(again).toEqual(first);
    expect(w.upstream.total).toBe(asked);
    expect(w.verifier.calls).toBe(1);
  });

  it('evaluates once for concurrent callers of the same digest', async () => {
    const w = await start();
    const image = await w.signed('acme/app', 'v1');
    const release = w.upstream.hold('getManifest');
    const decisions = Array.from({ length: 5 }, () =>
      w.gate.decide(w.upstream, w.target('acme/app'), gateManifest(image, 'v1')),
    );
    await settle();
    release();
    for (const d of await Promise.all(decisions)) expect(d.result).toBe('allow');
    const lines = callLines(w);
    expect(lines.length).toBeGreaterThan(0);
    expect(new Set(lines).size).toBe(lines.length);
    expect(w.verifier.calls).toBe(1);
  });

  it('refuses an unsigned manifest with a 403 DENIED naming the policy, its reasons, the digest and the tag', async () => {
    const w = await start();
    const image = w.upstream.image('acme/app', 'v1');
    const err = await rejection(
      w.gate.admitManifest(w.upstream, w.target('acme/app'), gateManifest(image, 'v1')),
    );
    expect(err.code).toBe('DENIED');
    expect(errorStatus[err.code]).toBe(403);
    expect(err.message).toContain('policy "signed"');
    expect(err.detail).toMatchObject({
      policy: 'signed',
      result: 'deny',
      upstream: w.target('acme/app').upstream,
      repository: 'acme/app',
      digest: image.digest,
      tag: 'v1',
      signatures: [],
    });
    const reasons = (err.detail as { reasons: unknown }).reasons;
    expect(Array.isArray(reasons) && reasons.length > 0).toBe(true);
    for (const r of reasons as unknown[]) expect(typeof r).toBe('string');
    // Nothing of a denied manifest becomes fetchable.
    for (const digest of [image.layer, image.config]) {
      expect((await rejection(w.gate.assertBlobAdmitted(w.target('acme/app'), digest))).detail).toMatchObject(
        {
          reason: 'blob-not-admitted',
        },
      );
    }
  });

  it('refuses a signature made for another digest (the payload names what it signs)', async () => {
    const w = await start();
    const signed = await w.signed('acme/app', 'v1');
    const other = w.upstream.image('acme/app', 'v2');
    // The signature of `signed`, copied to `other`'s cosign tag.
    const sig = await w.upstream.writer.getManifest('acme/app', `sha256-${signed.digest.slice(7)}.sig`);
    expect(sig).toBeDefined();
    w.upstream.manifest(
      'acme/app',
      `sha256-${other.digest.slice(7)}.sig`,
      sig!,
      'application/vnd.oci.image.manifest.v1+json',
    );
    const err = await rejection(
      w.gate.admitManifest(w.upstream, w.target('acme/app'), gateManifest(other, 'v2')),
    );
    expect(err.code).toBe('DENIED');
    expect(w.verifier.calls).toBeGreaterThan(0);
  });

  it('keeps a deny for denyTTL, then sees a signature pushed meanwhile', async () => {
    // The memo reads the gate's clock; the shared store expires entries by the wall clock: both move.
    const w = await start({ decisions: { deny: 1_000, missingEvidence: 1_000 } });
    const image = w.upstream.image('acme/app', 'v1');
    const target = w.target('acme/app');
    expect((await w.gate.decide(w.upstream, target, gateManifest(image, 'v1'))).result).toBe('deny');
    await w.sign('acme/app', image.digest);
    const asked = w.upstream.total;
    expect((await w.gate.decide(w.upstream, target, gateManifest(image, 'v1'))).result).toBe('deny');
    expect(w.upstream.total).toBe(asked);
    w.clock.t += 1_001;
    await new Promise((r) => setTimeout(r, 1_100));
    expect((await w.gate.decide(w.upstream, target, gateManifest(image, 'v1'))).result).toBe('allow');
  });

  it('evaluates afresh for a check (no decision cache read or written)', async () => {
    const w = await start();
    const image = await w.signed('acme/app', 'v1');
    const target = w.target('acme/app');
    expect((await w.gate.evaluate(w.upstream, target, gateManifest(image, 'v1'))).result).toBe('allow');
    expect((await w.gate.evaluate(w.upstream, target, gateManifest(image, 'v1'))).result).toBe('allow');
    const afterChecks = w.verifier.calls;
    expect(afterChecks).toBeGreaterThan(0);
    // The pull path did not find a decision the checks could have left behind.
    await w.gate.decide(w.upstream, target, gateManifest(image, 'v1'));
    expect(w.verifier.calls).toBeGreaterThan(afterChecks);
  });

  it('re-decides after a policy swap: a cached allow of the old policy does not hold', async () => {
    const w = await start();
    const image = await w.signed('acme/app', 'v1');
    const target = w.target('acme/app');
    expect((await w.gate.admitManifest(w.upstream, target, gateManifest(image, 'v1'))).result).toBe('allow');
    w.gate.swap({ ...w.gate.context, engine: w.engine([{ name: 'closed', match: ['**'], action: 'deny' }]) });
    const err = await rejection(w.gate.admitManifest(w.upstream, target, gateManifest(image, 'v1')));
    expect(err.detail).toMatchObject({ policy: 'closed', result: 'deny' });
    expect((await rejection(w.gate.assertBlobAdmitted(target, image.layer))).code).toBe('DENIED');
  });

  it('serves an unsigned manifest under a warn-mode policy, marked warn, with its blobs admitted', async () => {
    const w = await start({
      policies: [
        {
          name: 'observe',
          match: ['**'],
          action: 'verify',
          mode: 'warn',
          signatures: { attestors: [{ key: 'release' }] },
        },
      ],
    });
    const image = w.upstream.image('acme/app', 'v1');
    const decision = await w.gate.admitManifest(w.upstream, w.target('acme/app'), gateManifest(image, 'v1'));
    expect(decision).toMatchObject({ result: 'warn', policy: 'observe' });
    expect(await w.gate.assertBlobAdmitted(w.target('acme/app'), image.layer)).toEqual(
      declared(image, image.layer),
    );
  });
});

/** What the admitted manifest declares for `digest`: the bound a blob download is held to. */
function declared(image: MemoryImage, digest: Digest): { size: number } {
  const manifest = JSON.parse(image.bytes.toString()) as { config: Descriptor; layers: Descriptor[] };
  const found = [manifest.config, ...manifest.layers].find((d) => d.digest === digest);
  if (found === undefined) throw new Error(`${digest} is not in the manifest`);
  return { size: found.size };
}

interface Descriptor {
  digest: string;
  size: number;
}

describe('TrustGate closures', () => {
  it('admits the blobs of an admitted manifest in that repository only', async () => {
    const w = await start();
    const image = await w.signed('acme/app', 'v1');
    await w.gate.admitManifest(w.upstream, w.target('acme/app'), gateManifest(image, 'v1'));
    for (const digest of [image.layer, image.config]) {
      expect(await w.gate.assertBlobAdmitted(w.target('acme/app'), digest)).toEqual(declared(image, digest));
      const elsewhere = await rejection(w.gate.assertBlobAdmitted(w.target('acme/copy'), digest));
      expect(elsewhere.detail).toMatchObject({ reason: 'blob-not-admitted', repository: 'acme/copy' });
    }
  });

  it('admits platform manifests through their signed index, also after a cached deny of one of them', async () => {
    const w = await start();
    const index = w.upstream.index('acme/multi', 'v1');
    await w.sign('acme/multi', index.digest);
    const child = index.children[1]!;
    const target = w.target('acme/multi');
    // Asked for directly first: not signed itself, denied (and the deny is cached)…
    expect((await w.gate.decide(w.upstream, target, gateManifest(child))).result).toBe('deny');
    // …then the index is admitted: the child's cached deny does not hold.
    await w.gate.admitManifest(w.upstream, target, gateManifest(index, 'v1'));
    const admitted = await w.gate.admitManifest(w.upstream, target, gateManifest(child));
    expect(admitted.result).toBe('allow');
    expect(admitted.reasons).toEqual([`platform manifest of admitted index ${index.digest}`]);
    expect(await w.gate.assertBlobAdmitted(target, child.layer)).toEqual(declared(child, child.layer));
    // Not in another repository holding the same bytes.
    const copy = w.target('acme/copy');
    expect((await w.gate.decide(w.upstream, copy, gateManifest(child))).result).toBe('deny');
  });
});
