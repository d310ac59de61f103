/**
 * The gate's evidence memo (what discovery found for a digest: signature and attestation layers) is
 * bounded by bytes, not only by entries: a deployment deciding many images with large SBOMs must not
 * grow without limit. A re-decision inside the evidence TTL reuses the memo (no upstream request).
 */
import { setTimeout } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import type { TrustGate } from '../../../src/service/index.ts';
import { gateManifest, SIGNED, worldPerTest } from './helpers.ts';
import type { World } from './helpers.ts';

const start = worldPerTest({ policies: SIGNED, decisions: { allow: 50, evidence: 600_000 } });

function gateOf(w: World): TrustGate {
  if (w.gate === undefined) throw new Error('no gate');
  return w.gate;
}

/** Upstream calls a second decision of `repository:tag` makes once its decision TTL ran out. */
async function redecisionCalls(w: World, repository: string): Promise<number> {
  const image = await w.signed(repository, 'v1');
  const gate = gateOf(w);
  expect((await gate.decide(w.upstream, w.target(repository), gateManifest(image, 'v1'))).result).toBe(
    'allow',
  );
  // Past allowTTL, inside evidenceTTL: the gate's clock, and the metadata store's (real time).
  w.clock.t += 2_000;
  await setTimeout(120);
  const before = w.upstream.calls.length;
  expect((await gate.decide(w.upstream, w.target(repository), gateManifest(image, 'v1'))).result).toBe(
    'allow',
  );
  return w.upstream.calls.length - before;
}

describe('TrustGate evidence memo', () => {
  it('reuses what discovery found for a re-decision inside the evidence TTL', async () => {
    const w = await start();
    expect(await redecisionCalls(w, 'acme/app')).toBe(0);
    expect(gateOf(w).evidenceMemoBytes).toBeGreaterThan(0);
  });

  it('keeps no more layer bytes than its bound, evicting the oldest', async () => {
    const probe = await start();
    await redecisionCalls(probe, 'acme/probe');
    const one = gateOf(probe).evidenceMemoBytes; // one image's signature layer
    const bound = Math.floor(one * 2.5);
    const w = await start({ evidenceMemoMaxBytes: bound });
    const gate = gateOf(w);
    for (let i = 0; i < 8; i++) {
      const image = await w.signed(`acme/app${i}`, 'v1');
      await gate.decide(w.upstream, w.target(`acme/app${i}`), gateManifest(image, 'v1'));
      expect(gate.evidenceMemoBytes).toBeLessThanOrEqual(bound);
    }
    expect(gate.evidenceMemoBytes).toBeGreaterThan(0);
  });

  it('does not keep evidence larger than the whole bound, and discovers it again', async () => {
    const w = await start({ evidenceMemoMaxBytes: 1 });
    expect(await redecisionCalls(w, 'acme/app')).toBeGreaterThan(0);
    expect(gateOf(w).evidenceMemoBytes).toBe(0);
  });
});
