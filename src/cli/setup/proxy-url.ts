import { UsageError } from '../types.ts';

/** pullwarden's address as node configs name it. */
export interface ProxyEndpoint {
  /** Origin without a trailing slash: `http://pullwarden.internal:5050`. */
  url: string;
  /** `host[:port]` as in a registries.conf location (no port when it is the scheme's default). */
  host: string;
  scheme: 'http' | 'https';
}

/**
 * Parse `--proxy`: an http(s) origin. pullwarden serves `/v2/` at the root, and containerd appends
 * `/v2` to a host URL itself, so a path (other than `/`), query, fragment or credentials is refused.
 */
export function parseProxyUrl(input: string): ProxyEndpoint {
  if (!URL.canParse(input)) {
    throw new UsageError(
      `--proxy: expected a URL such as "http://pullwarden.internal:5050" (got "${input}")`,
    );
  }
  const u = new URL(input);
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    throw new UsageError(`--proxy: expected an http:// or https:// URL (got "${input}")`);
  }
  if (u.username !== '' || u.password !== '')
    throw new UsageError('--proxy: expected a URL without credentials');
  if ((u.pathname !== '/' && u.pathname !== '') || u.search !== '' || u.hash !== '') {
    throw new UsageError(
      `--proxy: expected an origin without path or query, such as "${u.protocol}//${u.host}" (pullwarden serves /v2/ at the root)`,
    );
  }
  return {
    url: `${u.protocol}//${u.host}`,
    host: u.host,
    scheme: u.protocol === 'https:' ? 'https' : 'http',
  };
}
