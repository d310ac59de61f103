/**
 * What the gate reads back from the metadata store is parsed, not trusted: a record under a
 * decision key that is not a decision is a miss, so the gate evaluates again — it never reads as
 * "not denied" (the store is shared by replicas and outlives versions).
 */
import { describe, expect, it } from 'vitest';
import type { GateKey } from '../../../src/metadata/index.ts';
import type { TrustGate } from '../../../src/service/index.ts';
import { gateManifest, rejection, SIGNED, worldPerTest } from './helpers.ts';
import type { World } from './helpers.ts';

const newWorld = worldPerTest({ policies: SIGNED });

async function start(): Promise<World & { gate: TrustGate }> {
  const world = await newWorld();
  if (world.gate === undefined) throw new Error('no gate');
  return { ...world, gate: world.gate };
}

/** The key the gate keeps this digest's decision under (its scope: policy hash + trust version). */
function decisionKey(gate: TrustGate, target: { upstream: string; repository: string }, digest: string) {
  const { engine, verifier } = gate.context;
  return {
    scope: `${engine.hash.slice(0, 16)}.${verifier.version.slice(0, 16)}`,
    ...target,
    digest,
  } as GateKey;
}

describe('decisions read back from the store', () => {
  it.each([
    ['an empty object', {}],
    ['a result and nothing else', { result: 'allow' }],
    ['an unknown result', { result: 'permit', policy: 'forged', reasons: [], signers: [], checks: [] }],
    ['a string', 'allow'],
  ])('re-evaluates (and denies an unsigned manifest) when the stored record is %s', async (_, record) => {
    const w = await start();
    const target = w.target('acme/app');
    const image = w.upstream.image('acme/app', 'v1');
    const key = decisionKey(w.gate, target, image.digest);

    // The key is the gate's own: a well-formed allow stored there is served as it is…
    const forged = {
      result: 'allow',
      policy: 'forged',
      reasons: ['written by hand'],
      signers: [],
      checks: [],
    };
    await w.metadata.setDecision(key, forged, 60_000);
    await expect(w.gate.admitManifest(w.upstream, target, gateManifest(image, 'v1'))).resolves.toMatchObject({
      policy: 'forged',
    });

    // …and a record that is not a decision is not one: evaluated again, the unsigned image is denied.
    w.gate.swap(w.gate.context); // forget the in-process memo, as another replica would not have it
    await w.metadata.setDecision(key, record, 60_000);
    const denied = await rejection(w.gate.admitManifest(w.upstream, target, gateManifest(image, 'v1')));
    expect(denied.code).toBe('DENIED');
    expect(denied.detail).toMatchObject({ result: 'deny', digest: image.digest });
  });
});
