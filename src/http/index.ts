export { buildHttpServer, buildMetricsServer, splitUrl } from './server.ts';
export type { HttpServerOptions, HttpTimeouts } from './server.ts';
export { parseRegistryPath, canonicalHost } from './routing.ts';
export type { RegistryRoute, RoutingConfig } from './routing.ts';
export { parseRange } from './range.ts';
export { toRegistryError } from './errors.ts';
export { PullAuth, AUTH_CHALLENGE, parseHtpasswd } from './auth.ts';
export type { AuthConfig, Identity } from './auth.ts';
