/**
 * Upstream registries: the {@link Upstream} port and its undici implementation. This barrel is the
 * module's only public surface.
 */
export type * from './types.ts';
export { UndiciUpstream } from './undici-upstream.ts';
export type {
  UndiciUpstreamConfig,
  UndiciUpstreamOptions,
  UpstreamLogger,
  UpstreamRefusal,
  UpstreamRequestInfo,
  UpstreamRequestKind,
} from './options.ts';
export { parseWwwAuthenticate } from './www-authenticate.ts';
export type { AuthChallenge } from './www-authenticate.ts';
export { parseRetryAfter } from './http-util.ts';
