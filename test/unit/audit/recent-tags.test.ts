import { describe, expect, it } from 'vitest';
import { RecentTags } from '../../../src/audit/index.ts';

describe('RecentTags', () => {
  it('gives a digest pull the tag that resolved it, per client first', () => {
    const tags = new RecentTags();
    tags.remember(
      'docker.io',
      'library/nginx',
      '1.27',
      ['sha256:index', 'sha256:amd64', 'sha256:layer'],
      '10.0.0.1',
    );
    tags.remember('docker.io', 'library/nginx', 'latest', ['sha256:index'], '10.0.0.2');
    expect(tags.tagFor('docker.io', 'library/nginx', 'sha256:layer', '10.0.0.1')).toBe('1.27');
    expect(tags.tagFor('docker.io', 'library/nginx', 'sha256:index', '10.0.0.1')).toBe('1.27');
    expect(tags.tagFor('docker.io', 'library/nginx', 'sha256:index', '10.0.0.9')).toBe('latest');
    expect(tags.tagFor('docker.io', 'library/redis', 'sha256:index')).toBeUndefined();
  });

  it('forgets after its TTL and beyond its size', () => {
    let now = 0;
    const tags = new RecentTags({ ttlMs: 1000, maxEntries: 2, now: () => now });
    tags.remember('ghcr.io', 'a/b', 'v1', ['sha256:1']);
    now = 1001;
    expect(tags.tagFor('ghcr.io', 'a/b', 'sha256:1')).toBeUndefined();
    tags.remember('ghcr.io', 'a/b', 'v2', ['sha256:2', 'sha256:3', 'sha256:4']);
    expect(tags.tagFor('ghcr.io', 'a/b', 'sha256:2')).toBeUndefined();
    expect(tags.tagFor('ghcr.io', 'a/b', 'sha256:4')).toBe('v2');
  });
});
