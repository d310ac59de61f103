import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { RegistryError } from '../../../src/oci/index.ts';
import type { Digest } from '../../../src/oci/index.ts';
import { discoverEvidence } from '../../../src/trust/index.ts';
import type { FetchedManifest, Upstream, UpstreamBlob } from '../../../src/upstream/index.ts';
import { createKeyPair, signClassic } from '../../support/signer.ts';

const digest = (b: Buffer | string): Digest =>
  `sha256:${createHash('sha256').update(b).digest('hex')}` as Digest;
const SUBJECT = digest('subject');
const TAG = SUBJECT.replace(':', '-');

/** An Upstream over in-memory maps; anything missing is a 404. */
function stubUpstream(
  manifests: Record<string, Buffer>,
  blobs: Record<string, Buffer>,
  lie = false,
): Upstream {
  const unknown = (code: 'MANIFEST_UNKNOWN' | 'BLOB_UNKNOWN'): never => {
    throw new RegistryError(code, 'unknown');
  };
  return {
    host: 'stub',
    headManifest: () => Promise.reject(new Error('unused')),
    headBlob: () => Promise.reject(new Error('unused')),
    listTags: () => Promise.reject(new Error('unused')),
    getReferrers: () => Promise.resolve(undefined),
    close: () => Promise.resolve(),
    getManifest(_repo, ref): Promise<FetchedManifest> {
      const bytes = manifests[ref] ?? unknown('MANIFEST_UNKNOWN');
      return Promise.resolve({
        bytes,
        digest: digest(bytes),
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        size: bytes.length,
      });
    },
    getBlob(_repo, d): Promise<UpstreamBlob> {
      const bytes = blobs[d] ?? unknown('BLOB_UNKNOWN');
      const served = lie ? Buffer.from(bytes.toString().replace('sha256', 'sha257')) : bytes;
      return Promise.resolve({ body: Readable.from([served]), size: served.length });
    },
  };
}

function sigManifest(
  layers: { bytes: Buffer; annotations: Record<string, string>; size?: number }[],
): Buffer {
  return Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: digest('{}'), size: 2 },
      layers: layers.map((l) => ({
        mediaType: 'application/vnd.dev.cosign.simplesigning.v1+json',
        digest: digest(l.bytes),
        size: l.size ?? l.bytes.length,
        annotations: l.annotations,
      })),
    }),
  );
}

describe('discoverEvidence', () => {
  const sig = signClassic({ subject: SUBJECT, dockerReference: 'r/x', key: createKeyPair() });

  it('reads classic signatures and counts every upstream call', async () => {
    const upstream = stubUpstream(
      { [`${TAG}.sig`]: sigManifest([{ bytes: sig.payload, annotations: sig.annotations }]) },
      { [digest(sig.payload)]: sig.payload },
    );
    const evidence = await discoverEvidence(upstream, 'r/x', SUBJECT);
    expect(evidence.items).toHaveLength(1);
    expect(evidence.items[0]).toMatchObject({
      source: 'cosign-sig',
      kind: 'signature',
      artifact: sig.payload,
    });
    // referrers (none) + tag schema (404) + .sig + payload + .att (404)
    expect(evidence.roundTrips).toBe(5);
  });

  it('refuses a blob whose bytes do not match its digest', async () => {
    const upstream = stubUpstream(
      { [`${TAG}.sig`]: sigManifest([{ bytes: sig.payload, annotations: sig.annotations }]) },
      { [digest(sig.payload)]: sig.payload },
      true,
    );
    await expect(discoverEvidence(upstream, 'r/x', SUBJECT)).rejects.toMatchObject({ code: 'UNAVAILABLE' });
  });

  it('does not fetch a layer that announces more than the size cap', async () => {
    const upstream = stubUpstream(
      {
        [`${TAG}.sig`]: sigManifest([
          { bytes: sig.payload, annotations: sig.annotations, size: 2 * 1024 * 1024 },
        ]),
      },
      { [digest(sig.payload)]: sig.payload },
    );
    const evidence = await discoverEvidence(upstream, 'r/x', SUBJECT);
    expect(evidence.items).toEqual([]);
    expect(evidence.problems.join()).toMatch(/over 1048576/);
    expect(evidence.roundTrips).toBe(4);
  });

  it('answers an empty evidence for an unsigned digest', async () => {
    const evidence = await discoverEvidence(stubUpstream({}, {}), 'r/x', SUBJECT);
    expect(evidence).toEqual({ subject: SUBJECT, items: [], roundTrips: 4, problems: [] });
  });
});
