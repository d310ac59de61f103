import { describe, expect, it } from 'vitest';
import { addressRefusal, compileHostMatcher } from '../../../src/upstream/address-guard.ts';

describe('addressRefusal', () => {
  it.each([
    ['127.0.0.1', 'loopback'],
    ['127.255.255.254', 'loopback'],
    ['::1', 'loopback'],
    ['[::1]', 'loopback'],
    ['0.0.0.0', 'this-network'],
    ['::', 'unspecified'],
    ['10.1.2.3', 'private (RFC 1918)'],
    ['172.31.255.255', 'private (RFC 1918)'],
    ['192.168.0.1', 'private (RFC 1918)'],
    ['100.64.0.1', 'shared (CGNAT, RFC 6598)'],
    ['169.254.169.254', 'link-local (cloud metadata)'],
    ['fe80::1', 'link-local'],
    ['fe80::1%eth0', 'link-local'],
    ['fd00:ec2::254', 'unique local (private)'],
    ['224.0.0.1', 'multicast'],
    ['ff02::1', 'multicast'],
    ['255.255.255.255', 'reserved'],
    ['::ffff:127.0.0.1', 'loopback (IPv4 embedded in IPv6)'],
    ['::ffff:7f00:1', 'loopback (IPv4 embedded in IPv6)'],
    ['::ffff:a9fe:a9fe', 'link-local (cloud metadata) (IPv4 embedded in IPv6)'],
    ['64:ff9b::10.0.0.1', 'private (RFC 1918) (IPv4 embedded in IPv6)'],
    ['2002:c0a8:101::1', 'private (RFC 1918) (IPv4 embedded in IPv6)'],
  ])('refuses %s (%s)', (address, reason) => {
    expect(addressRefusal(address)).toBe(reason);
  });

  it.each(['1.1.1.1', '104.16.0.1', '2606:4700:4700::1111', '::ffff:8.8.8.8', '172.32.0.1', '100.128.0.1'])(
    'allows the public address %s',
    (address) => {
      expect(addressRefusal(address)).toBeUndefined();
    },
  );

  it('does not take a host name for an address', () => {
    expect(addressRefusal('localhost')).toBe('not an IP address');
  });
});

describe('compileHostMatcher', () => {
  const allowed = compileHostMatcher(['*.cloudfront.net', 'minio.storage.svc:9000', '[fd00::5]', '10.0.0.7']);

  it('matches names with wildcards, any port unless one is given', () => {
    expect(allowed('d111.cloudfront.net', 443)).toBe(true);
    expect(allowed('a.b.CloudFront.net', 443)).toBe(true);
    expect(allowed('cloudfront.net', 443)).toBe(false);
    expect(allowed('evilcloudfront.net', 443)).toBe(false);
    expect(allowed('minio.storage.svc', 9000)).toBe(true);
    expect(allowed('minio.storage.svc', 9001)).toBe(false);
    expect(allowed('fd00::5', 80)).toBe(true);
    expect(allowed('10.0.0.7', 8080)).toBe(true);
    expect(allowed('10.0.0.70', 8080)).toBe(false);
  });

  it('matches nothing without globs', () => {
    expect(compileHostMatcher([])('anything', 1)).toBe(false);
  });
});
