import { describe, expect, it } from 'vitest';
import { MediaType } from '../../../src/oci/index.ts';
import { isGenericContentType, manifestMediaType } from '../../../src/upstream/media-type.ts';

const json = (value: unknown) => Buffer.from(JSON.stringify(value));

describe('manifestMediaType', () => {
  it('believes a specific Content-Type over the body', () => {
    expect(
      manifestMediaType(
        `${MediaType.dockerManifest}; charset=utf-8`,
        json({ mediaType: MediaType.ociIndex }),
      ),
    ).toBe(MediaType.dockerManifest);
  });

  it('takes the JSON mediaType when the Content-Type is generic or missing', () => {
    for (const served of [undefined, 'application/json', 'text/plain', 'application/octet-stream']) {
      expect(manifestMediaType(served, json({ schemaVersion: 2, mediaType: MediaType.ociManifest }))).toBe(
        MediaType.ociManifest,
      );
    }
  });

  it('tells an OCI index and manifest without mediaType by their schemaVersion 2 shape', () => {
    expect(manifestMediaType('application/json', json({ schemaVersion: 2, manifests: [] }))).toBe(
      MediaType.ociIndex,
    );
    expect(manifestMediaType('application/json', json({ schemaVersion: 2, config: {}, layers: [] }))).toBe(
      MediaType.ociManifest,
    );
  });

  it('tells schema1, signed or not', () => {
    expect(manifestMediaType(undefined, json({ schemaVersion: 1, signatures: [] }))).toBe(
      MediaType.dockerManifestV1Signed,
    );
    expect(manifestMediaType(undefined, json({ schemaVersion: 1 }))).toBe(MediaType.dockerManifestV1);
  });

  it('does not take a config blob or other JSON for a manifest', () => {
    expect(manifestMediaType('application/json', json({ config: {}, architecture: 'amd64' }))).toBe(
      'application/json',
    );
    expect(manifestMediaType(undefined, json({ config: {} }))).toBe('application/octet-stream');
    expect(manifestMediaType(undefined, Buffer.from('not json'))).toBe('application/octet-stream');
    expect(manifestMediaType('text/plain', Buffer.from('not json'))).toBe('text/plain');
  });

  it('calls only the content types that say nothing generic', () => {
    expect(
      ['', 'application/json', 'text/plain', 'application/octet-stream'].every(isGenericContentType),
    ).toBe(true);
    expect(isGenericContentType(MediaType.ociIndex)).toBe(false);
    expect(isGenericContentType('text/html')).toBe(false);
  });
});
