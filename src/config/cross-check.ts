import { checkPolicyReferences } from '../policy/index.ts';
import type { TrustNames } from '../policy/index.ts';
import type { Config } from './schema.ts';
import { didYouMean } from '../shared/index.ts';

/**
 * The sections of a config that parsed, for {@link crossCheck}. Policies may be a sparse list (the
 * ones that failed left out, indices kept); trust may be only the names of roots and keys.
 */
export type ConfigSections = Partial<Omit<Config, 'trust'>> & { trust?: TrustNames };

/**
 * What the schema of one key cannot check alone: policies naming configured keys and roots,
 * defaultUpstream naming an upstream, aliases, password sources, timeouts that depend on each other.
 * Takes the sections that parsed (any may be missing), so that `loadConfig` can run it when other
 * sections failed and report reference problems in the same round.
 */
export function crossCheck(config: ConfigSections): { path: PropertyKey[]; message: string }[] {
  const issues: { path: PropertyKey[]; message: string }[] = [];
  const ctx = {
    addIssue: (issue: { code: 'custom'; path: PropertyKey[]; message: string }) =>
      issues.push({ path: issue.path, message: issue.message }),
  };
  if (config.trust !== undefined && config.policies !== undefined) {
    for (const problem of checkPolicyReferences(config.trust, config.policies)) {
      ctx.addIssue({
        code: 'custom',
        path: problem.path.split('.').map((p) => (/^\d+$/.test(p) ? Number(p) : p)),
        message: problem.message,
      });
    }
  }
  const server = config.server;
  if (server !== undefined && server.headersTimeout > server.requestTimeout) {
    ctx.addIssue({
      code: 'custom',
      path: ['server', 'headersTimeout'],
      message: 'expected headersTimeout no longer than requestTimeout',
    });
  }
  if (
    server !== undefined &&
    (server.headersTimeout === 0 || server.requestTimeout === 0 || server.sendTimeout === 0)
  ) {
    ctx.addIssue({
      code: 'custom',
      path: [
        'server',
        server.headersTimeout === 0
          ? 'headersTimeout'
          : server.requestTimeout === 0
            ? 'requestTimeout'
            : 'sendTimeout',
      ],
      message: 'expected a duration above 0 (0 would let a client hold a connection forever)',
    });
  }
  const hosts = Object.keys(config.upstreams ?? {});
  if (config.defaultUpstream !== undefined && !hosts.includes(config.defaultUpstream)) {
    ctx.addIssue({
      code: 'custom',
      path: ['defaultUpstream'],
      message: `expected one of the configured upstreams (${hosts.map((h) => `"${h}"`).join(', ')})${didYouMean(config.defaultUpstream, hosts)}`,
    });
  }
  const names = new Map<string, string>(hosts.map((h) => [h, h]));
  for (const [host, upstream] of Object.entries(config.upstreams ?? {})) {
    for (const [i, alias] of (upstream.aliases ?? []).entries()) {
      const taken = names.get(alias);
      if (taken !== undefined) {
        ctx.addIssue({
          code: 'custom',
          path: ['upstreams', host, 'aliases', i],
          message: `expected a name no other upstream uses ("${alias}" already names ${taken})`,
        });
      }
      names.set(alias, host);
    }
  }
  for (const [host, upstream] of Object.entries(config.upstreams ?? {})) {
    const sources = (['password', 'passwordFile', 'passwordEnv'] as const).filter(
      (k) => upstream[k] !== undefined,
    );
    if (sources.length > 1) {
      ctx.addIssue({
        code: 'custom',
        path: ['upstreams', host],
        message: `expected only one of password, passwordFile, passwordEnv (got ${sources.join(', ')})`,
      });
    }
    if (upstream.username !== undefined && sources.length === 0) {
      ctx.addIssue({
        code: 'custom',
        path: ['upstreams', host, 'username'],
        message: 'username needs password, passwordFile or passwordEnv',
      });
    }
    const [first] = sources;
    if (upstream.username === undefined && first !== undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['upstreams', host, first],
        message: `${first} needs username`,
      });
    }
    // Checks also run when other keys failed; skip what did not parse.
    if (upstream.url !== undefined && URL.canParse(upstream.url)) {
      const url = new URL(upstream.url);
      if (url.username !== '' || url.password !== '') {
        ctx.addIssue({
          code: 'custom',
          path: ['upstreams', host, 'url'],
          message: 'expected a URL without credentials (use username and passwordFile)',
        });
      }
      if (url.search !== '' || url.hash !== '') {
        ctx.addIssue({
          code: 'custom',
          path: ['upstreams', host, 'url'],
          message: 'expected a URL without query or fragment',
        });
      }
    }
  }
  const { metadata } = config;
  if (metadata === undefined) return issues;
  if (metadata.passwordFile !== undefined && metadata.passwordEnv !== undefined) {
    ctx.addIssue({
      code: 'custom',
      path: ['metadata'],
      message: 'expected only one of passwordFile, passwordEnv',
    });
  }
  if (
    (metadata.passwordFile !== undefined || metadata.passwordEnv !== undefined) &&
    !/^rediss?:\/\//.test(metadata.url ?? '')
  ) {
    ctx.addIssue({
      code: 'custom',
      path: ['metadata', metadata.passwordFile !== undefined ? 'passwordFile' : 'passwordEnv'],
      message: 'a password applies only to a redis:// or rediss:// metadata.url',
    });
  }
  return issues;
}
