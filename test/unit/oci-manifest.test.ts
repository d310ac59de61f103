import { describe, expect, it } from 'vitest';
import {
  acceptsManifest,
  cosignTag,
  jsonDeeperThan,
  MediaType,
  parseDigest,
  parseManifest,
  referrersTag,
  RegistryError,
  subjectTagKind,
} from '../../src/oci/index.ts';

const d = (c: string): string => `sha256:${c.repeat(64)}`;
const desc = (c: string, mediaType = 'application/octet-stream') => ({ mediaType, digest: d(c), size: 1 });
const bytes = (v: unknown): Buffer => Buffer.from(JSON.stringify(v));

function reason(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(RegistryError);
    expect((err as RegistryError).code).toBe('MANIFEST_INVALID');
    return ((err as RegistryError).detail as { reason?: string }).reason;
  }
  return undefined;
}

describe('parseManifest: Content-Type, mediaType and shape must agree', () => {
  const image = {
    schemaVersion: 2,
    mediaType: MediaType.ociManifest,
    config: desc('a'),
    layers: [desc('b')],
  };
  const index = {
    schemaVersion: 2,
    mediaType: MediaType.ociIndex,
    manifests: [desc('c', MediaType.ociManifest)],
  };

  it('parses an image manifest and an index of the type they are served as', () => {
    expect(parseManifest(bytes(image), MediaType.ociManifest)).toMatchObject({
      kind: 'manifest',
      config: { digest: d('a') },
      layers: [{ digest: d('b') }],
    });
    expect(parseManifest(bytes(index), MediaType.ociIndex)).toMatchObject({ kind: 'index' });
    // An OCI manifest may omit mediaType: the Content-Type then says what it is.
    expect(parseManifest(bytes({ ...image, mediaType: undefined }), MediaType.ociManifest).kind).toBe(
      'manifest',
    );
  });

  it('refuses an image manifest that also carries "manifests" (CVE-2021-41190 class)', () => {
    expect(reason(() => parseManifest(bytes({ ...image, manifests: [] }), MediaType.ociManifest))).toBe(
      'shape-mismatch',
    );
    expect(reason(() => parseManifest(bytes({ ...index, config: desc('a') }), MediaType.ociIndex))).toBe(
      'shape-mismatch',
    );
    expect(reason(() => parseManifest(bytes({ ...index, layers: [] }), MediaType.ociIndex))).toBe(
      'shape-mismatch',
    );
  });

  it('refuses a body whose mediaType is not the Content-Type', () => {
    expect(reason(() => parseManifest(bytes(image), MediaType.ociIndex))).toBe('media-type-mismatch');
    expect(reason(() => parseManifest(bytes(image), MediaType.dockerManifest))).toBe('media-type-mismatch');
  });

  it('refuses a Content-Type that is not a manifest media type', () => {
    for (const type of ['text/html', 'application/json', '', 'application/vnd.oci.image.config.v1+json']) {
      expect(
        reason(() => parseManifest(bytes(image), type)),
        type,
      ).toBe('not-a-manifest-media-type');
    }
  });

  it('refuses a wrong schemaVersion and schema1 without fsLayers', () => {
    expect(reason(() => parseManifest(bytes({ ...image, schemaVersion: 1 }), MediaType.ociManifest))).toBe(
      'shape-mismatch',
    );
    expect(reason(() => parseManifest(bytes({ schemaVersion: 1 }), MediaType.dockerManifestV1Signed))).toBe(
      'shape-mismatch',
    );
    const v1 = { schemaVersion: 1, fsLayers: [{ blobSum: d('e') }] };
    expect(parseManifest(bytes(v1), MediaType.dockerManifestV1Signed).layers[0]?.digest).toBe(d('e'));
  });
});

describe('subject tags', () => {
  it('names the referrers tag schema with the hex truncated to 64 characters', () => {
    expect(referrersTag(parseDigest(d('a')))).toBe(`sha256-${'a'.repeat(64)}`);
    expect(referrersTag(parseDigest(`sha512:${'b'.repeat(128)}`))).toBe(`sha512-${'b'.repeat(64)}`);
    expect(cosignTag(parseDigest(d('a')), 'sig')).toBe(`sha256-${'a'.repeat(64)}.sig`);
  });

  it('recognises only tags that name a subject digest', () => {
    expect(subjectTagKind(`sha256-${'a'.repeat(64)}`)).toBe('referrers');
    expect(subjectTagKind(`sha512-${'a'.repeat(64)}`)).toBe('referrers');
    expect(subjectTagKind(`sha256-${'a'.repeat(64)}.sig`)).toBe('sig');
    expect(subjectTagKind(`sha256-${'a'.repeat(64)}.att`)).toBe('att');
    expect(subjectTagKind(`sha256-${'a'.repeat(64)}.sbom`)).toBe('sbom');
    for (const t of ['v1', 'latest.sig', `sha256-${'a'.repeat(63)}.sig`, `sha256-${'A'.repeat(64)}`]) {
      expect(subjectTagKind(t), t).toBeUndefined();
    }
  });
});

describe('acceptsManifest', () => {
  it('takes anything without Accept, with */* or a matching type/*', () => {
    expect(acceptsManifest([], MediaType.ociIndex)).toBe(true);
    expect(acceptsManifest(['*/*'], MediaType.dockerManifestV1Signed)).toBe(true);
    expect(acceptsManifest(['application/*'], MediaType.ociIndex)).toBe(true);
  });

  it('treats OCI and Docker schema2 as one structure, never an index as a manifest', () => {
    expect(acceptsManifest([MediaType.ociManifest], MediaType.dockerManifest)).toBe(true);
    expect(acceptsManifest([MediaType.dockerManifestList], MediaType.ociIndex)).toBe(true);
    expect(acceptsManifest([MediaType.ociManifest, MediaType.dockerManifest], MediaType.ociIndex)).toBe(
      false,
    );
    expect(acceptsManifest([MediaType.ociIndex], MediaType.ociManifest)).toBe(false);
    expect(acceptsManifest([MediaType.ociManifest], MediaType.dockerManifestV1Signed)).toBe(false);
  });
});

describe('manifest nesting and annotations', () => {
  const image = (extra: string) =>
    Buffer.from(
      `{"schemaVersion":2,"mediaType":"${MediaType.ociManifest}","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:${'a'.repeat(64)}","size":2},"layers":[]${extra}}`,
    );

  it('refuses a manifest nested deeper than MAX_MANIFEST_DEPTH, before anything walks it', () => {
    const deep = `${'['.repeat(100_000)}${']'.repeat(100_000)}`;
    expect(() =>
      parseManifest(image(`,"annotations":{"x":"y"},"extra":${deep}`), MediaType.ociManifest),
    ).toThrow(
      expect.objectContaining({
        code: 'MANIFEST_INVALID',
        detail: expect.objectContaining({ reason: 'too-deep' }),
      }),
    );
    // Brackets inside strings do not count; ordinary nesting passes.
    expect(() =>
      parseManifest(image(`,"annotations":{"x":"${'[{'.repeat(1000)}\\"]"}`), MediaType.ociManifest),
    ).not.toThrow();
    expect(jsonDeeperThan(Buffer.from('{"a":[{"b":[1]}]}'), 4)).toBe(false);
    expect(jsonDeeperThan(Buffer.from('{"a":[{"b":[1]}]}'), 3)).toBe(true);
  });

  it('refuses descriptor annotations that are not a string-to-string map', () => {
    const index = (annotations: string) =>
      Buffer.from(
        `{"schemaVersion":2,"mediaType":"${MediaType.ociIndex}","manifests":[{"mediaType":"${MediaType.ociManifest}","digest":"sha256:${'b'.repeat(64)}","size":3,"annotations":${annotations}}]}`,
      );
    expect(
      parseManifest(index('{"org.opencontainers.image.title":"x"}'), MediaType.ociIndex).manifests[0]
        ?.annotations,
    ).toEqual({
      'org.opencontainers.image.title': 'x',
    });
    for (const bad of ['{"a":{"b":"c"}}', '{"a":1}', '["a"]', '"a"']) {
      expect(() => parseManifest(index(bad), MediaType.ociIndex), bad).toThrow(
        expect.objectContaining({ code: 'MANIFEST_INVALID' }),
      );
    }
  });
});
