import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  classicAttestationToBundle,
  classicSignatureToBundle,
  inTotoStatement,
  parseBundle,
} from '../../../src/trust/index.ts';
import type { FoundSignature } from '../../../src/trust/index.ts';
import type { Digest } from '../../../src/oci/index.ts';
import type { ClassicSignature } from '../../support/signer.ts';

const HERE = 'sha256:0000000000000000000000000000000000000000000000000000000000000000' as Digest;

/** A `.sig` layer as discovery would report it. */
export function foundClassic(sig: ClassicSignature): FoundSignature {
  return {
    source: 'cosign-sig',
    kind: 'signature',
    manifestDigest: HERE,
    layerDigest: HERE,
    bundle: classicSignatureToBundle(sig.payload, sig.annotations),
    artifact: sig.payload,
  };
}

/** A `.att` layer as discovery would report it. */
export function foundClassicAttestation(att: ClassicSignature): FoundSignature {
  const bundle = classicAttestationToBundle(att.payload, att.annotations);
  return {
    source: 'cosign-att',
    kind: 'attestation',
    manifestDigest: HERE,
    layerDigest: HERE,
    bundle,
    predicateType: inTotoStatement(bundle)?.predicateType ?? '',
  };
}

/** A referrer bundle as discovery would report it. */
export function foundBundle(json: Record<string, unknown>): FoundSignature {
  const bundle = parseBundle(Buffer.from(JSON.stringify(json)));
  const predicateType = inTotoStatement(bundle)?.predicateType ?? '';
  return {
    source: 'referrers',
    kind: predicateType === 'https://sigstore.dev/cosign/sign/v1' ? 'signature' : 'attestation',
    manifestDigest: HERE,
    layerDigest: HERE,
    bundle,
    predicateType,
  };
}

/** A temp dir removed by the returned cleanup. */
export async function tempDir(): Promise<{
  dir: string;
  write(name: string, data: unknown): Promise<string>;
  cleanup: () => Promise<void>;
}> {
  const dir = await mkdtemp(join(tmpdir(), 'pw-trust-'));
  return {
    dir,
    async write(name, data) {
      const path = join(dir, name);
      await writeFile(path, typeof data === 'string' ? data : JSON.stringify(data));
      return path;
    },
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
}
