/**
 * Where the proxy may connect when an upstream tells it to go somewhere else (a blob redirect): never
 * to loopback, link-local (cloud metadata at 169.254.169.254), private, shared, multicast or reserved
 * addresses, unless the operator allowed the host.
 *
 * The decision is made on the address the socket is about to connect to, inside the connector (the
 * DNS lookup of that very connection), never on the spelling of a URL: `2130706433`, `0x7f.1`,
 * `[::ffff:127.0.0.1]`, `localhost` and a name whose DNS answer changed since it was last looked at
 * all end up as the same 127.0.0.1 here. A name that resolves to several addresses keeps only the
 * public ones (a rebinding answer mixing a public and a private address cannot steer the connection).
 */
import { lookup as dnsLookup } from 'node:dns';
import type { LookupAddress, LookupAllOptions, LookupOneOptions } from 'node:dns';
import { BlockList, isIP } from 'node:net';
import { buildConnector } from 'undici';

/** An IPv4 or IPv6 range no redirect may reach, with the name an operator recognises. */
const RANGES: [address: string, prefix: number, family: 'ipv4' | 'ipv6', name: string][] = [
  ['0.0.0.0', 8, 'ipv4', 'this-network'],
  ['10.0.0.0', 8, 'ipv4', 'private (RFC 1918)'],
  ['100.64.0.0', 10, 'ipv4', 'shared (CGNAT, RFC 6598)'],
  ['127.0.0.0', 8, 'ipv4', 'loopback'],
  ['169.254.0.0', 16, 'ipv4', 'link-local (cloud metadata)'],
  ['172.16.0.0', 12, 'ipv4', 'private (RFC 1918)'],
  ['192.0.0.0', 24, 'ipv4', 'IETF protocol assignments'],
  ['192.0.2.0', 24, 'ipv4', 'documentation'],
  ['192.88.99.0', 24, 'ipv4', '6to4 relay'],
  ['192.168.0.0', 16, 'ipv4', 'private (RFC 1918)'],
  ['198.18.0.0', 15, 'ipv4', 'benchmarking'],
  ['198.51.100.0', 24, 'ipv4', 'documentation'],
  ['203.0.113.0', 24, 'ipv4', 'documentation'],
  ['224.0.0.0', 4, 'ipv4', 'multicast'],
  ['240.0.0.0', 4, 'ipv4', 'reserved'],
  ['::', 128, 'ipv6', 'unspecified'],
  ['::1', 128, 'ipv6', 'loopback'],
  ['100::', 64, 'ipv6', 'discard'],
  ['2001::', 32, 'ipv6', 'Teredo'],
  ['2001:db8::', 32, 'ipv6', 'documentation'],
  ['fc00::', 7, 'ipv6', 'unique local (private)'],
  ['fe80::', 10, 'ipv6', 'link-local'],
  ['fec0::', 10, 'ipv6', 'site-local'],
  ['ff00::', 8, 'ipv6', 'multicast'],
];

const blocks = RANGES.map(([address, prefix, family, name]) => {
  const list = new BlockList();
  list.addSubnet(address, prefix, family);
  return { list, family, name };
});

/** IPv6 prefixes that carry an IPv4 address in their low 32 bits (or bits 16–47 for 6to4). */
function embeddedIPv4(groups: number[]): string | undefined {
  const v4 = (hi: number, lo: number) => `${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`;
  const [g0, g1, g2, g3, g4, g5, g6, g7] = groups as [
    number,
    number,
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  const zeroTo = (n: number) => groups.slice(0, n).every((g) => g === 0);
  // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (compatible, deprecated but still routed by some stacks)
  if (zeroTo(5) && (g5 === 0xffff || g5 === 0)) return v4(g6, g7);
  // ::ffff:0:a.b.c.d (SIIT translated)
  if (zeroTo(4) && g4 === 0xffff && g5 === 0) return v4(g6, g7);
  // 64:ff9b::/96 (NAT64 well-known prefix) and 64:ff9b:1::/48 (local-use NAT64)
  if (
    g0 === 0x64 &&
    g1 === 0xff9b &&
    (g2 === 0 || g2 === 1) &&
    (g2 === 1 || (g3 === 0 && g4 === 0 && g5 === 0))
  ) {
    return v4(g6, g7);
  }
  // 2002:AABB:CCDD::/48 (6to4)
  if (g0 === 0x2002) return v4(g1, g2);
  return undefined;
}

/** The eight 16-bit groups of an IPv6 address (zone id dropped), or undefined when it is not one. */
function ipv6Groups(address: string): number[] | undefined {
  let text = address.split('%')[0] ?? '';
  if (isIP(text) !== 6) return undefined;
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (dotted) {
    const [a, b, c, d] = dotted.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, dotted.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const h = head === '' ? [] : head.split(':');
  const t = tail === undefined || tail === '' ? [] : tail.split(':');
  const fill = tail === undefined ? 0 : 8 - h.length - t.length;
  const groups = [...h, ...Array<string>(fill).fill('0'), ...t].map((g) => Number.parseInt(g, 16));
  return groups.length === 8 && groups.every((g) => Number.isInteger(g)) ? groups : undefined;
}

/**
 * Why a redirect may not connect to `address` (an IP literal), or undefined for a public address.
 * IPv4 addresses embedded in IPv6 (mapped, NAT64, 6to4) are judged as the IPv4 address they carry.
 */
export function addressRefusal(address: string): string | undefined {
  const bare = address.startsWith('[') && address.endsWith(']') ? address.slice(1, -1) : address;
  const family = isIP(bare.split('%')[0] ?? '');
  if (family === 0) return 'not an IP address';
  if (family === 6) {
    const groups = ipv6Groups(bare);
    if (groups === undefined) return 'not an IP address';
    const normalized = groups.map((g) => g.toString(16)).join(':');
    const own = blocks.find((b) => b.family === 'ipv6' && b.list.check(normalized, 'ipv6'))?.name;
    if (own !== undefined) return own;
    const v4 = embeddedIPv4(groups);
    if (v4 === undefined) return undefined;
    const inner = addressRefusal(v4);
    return inner === undefined ? undefined : `${inner} (IPv4 embedded in IPv6)`;
  }
  return blocks.find((b) => b.family === 'ipv4' && b.list.check(bare, 'ipv4'))?.name;
}

/** The error a refused connection fails with; undici hands it to the request unchanged. */
export class AddressRefusedError extends Error {
  readonly code = 'PW_ADDRESS_REFUSED';
  readonly host: string;
  readonly address: string;
  readonly reason: string;

  constructor(host: string, address: string, reason: string) {
    super(`refused to connect to ${host} (${address}): ${reason} address`);
    this.host = host;
    this.address = address;
    this.reason = reason;
  }
}

/** Resolves a host name the way `dns.lookup` does (injectable so tests can point a name at loopback). */
export type LookupFunction = (
  hostname: string,
  options: { all: true; family?: number },
  callback: (err: NodeJS.ErrnoException | null, addresses: LookupAddress[]) => void,
) => void;

const systemLookup: LookupFunction = (hostname, options, callback) => {
  dnsLookup(hostname, options, callback);
};

/**
 * A `lookup` for `net.connect`/`tls.connect` that resolves every address and keeps only the public
 * ones; with none left the connection fails with {@link AddressRefusedError} before a SYN is sent.
 */
export function guardedLookup(resolve: LookupFunction = systemLookup) {
  return (
    hostname: string,
    options: LookupOneOptions | LookupAllOptions,
    callback: (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void,
  ): void => {
    const family = typeof options.family === 'number' ? options.family : undefined;
    resolve(hostname, family === undefined ? { all: true } : { all: true, family }, (err, addresses) => {
      if (err !== null) {
        callback(err, []);
        return;
      }
      const allowed = addresses.filter((a) => addressRefusal(a.address) === undefined);
      if (allowed.length === 0) {
        const first = addresses[0];
        const reason = first === undefined ? 'no' : (addressRefusal(first.address) ?? 'no');
        callback(new AddressRefusedError(hostname, first?.address ?? '-', reason), []);
        return;
      }
      if (options.all === true) callback(null, allowed);
      else callback(null, allowed[0]?.address ?? '', allowed[0]?.family);
    });
  };
}

export interface ConnectorOptions {
  /** TLS options shared by every origin (CA bundle, verification). */
  tls: { rejectUnauthorized: boolean; ca?: string[] };
  /** `host[:port]` values connected to without a check: the configured upstream itself. */
  trustedHost: (hostname: string, port: number) => boolean;
  lookup?: LookupFunction;
  timeout: number;
}

/**
 * An undici `connect` function that applies {@link addressRefusal} to every origin that is not
 * trusted: IP literals are checked directly, names through {@link guardedLookup} at connect time.
 */
export function guardedConnector(options: ConnectorOptions): buildConnector.connector {
  const common = { ...options.tls, timeout: options.timeout };
  const plain = buildConnector(common);
  const guarded = buildConnector({
    ...common,
    lookup: guardedLookup(options.lookup),
  });
  return (opts, callback) => {
    const hostname =
      opts.hostname.startsWith('[') && opts.hostname.endsWith(']')
        ? opts.hostname.slice(1, -1)
        : opts.hostname;
    const port = Number(opts.port) || (opts.protocol === 'https:' ? 443 : 80);
    if (options.trustedHost(hostname, port)) {
      plain(opts, callback);
      return;
    }
    const shown = `${isIP(hostname) === 6 ? `[${hostname}]` : hostname}:${port}`;
    if (isIP(hostname.split('%')[0] ?? '') !== 0) {
      const reason = addressRefusal(hostname);
      if (reason !== undefined) {
        callback(new AddressRefusedError(shown, hostname, reason), null);
        return;
      }
      plain(opts, callback);
      return;
    }
    guarded(opts, (...args) => {
      const [err] = args;
      if (err instanceof AddressRefusedError) {
        callback(new AddressRefusedError(shown, err.address, err.reason), null);
        return;
      }
      callback(...args);
    });
  };
}

/**
 * Host globs of `redirects.allow` and `auth.realms`: `*` matches any run of characters except `:`
 * (so `*.cloudfront.net` matches `d1.cloudfront.net` and `a.b.cloudfront.net`); a glob without a port
 * matches every port, one with a port (`10.0.0.5:9000`) only that one. Case does not matter. IPv6
 * literals are written in brackets (`[fd00::5]`).
 */
export function compileHostMatcher(globs: readonly string[]): (hostname: string, port: number) => boolean {
  if (globs.length === 0) return () => false;
  const compiled = globs.map((glob) => {
    const m = /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(glob.trim().toLowerCase());
    const hostPart = m?.[1] ?? glob;
    const re = new RegExp(
      `^${hostPart
        .split('*')
        .map((s) => s.replace(/[\\^$.|?+()[\]{}]/g, '\\$&'))
        .join('[^:]*')}$`,
    );
    return { re, port: m?.[2] === undefined ? undefined : Number(m[2]) };
  });
  return (hostname, port) => {
    const h = hostname.toLowerCase();
    const bracketed = isIP(h) === 6 ? `[${h}]` : h;
    return compiled.some(
      (c) => (c.port === undefined || c.port === port) && (c.re.test(h) || c.re.test(bracketed)),
    );
  };
}
