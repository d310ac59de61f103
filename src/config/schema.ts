import { z } from 'zod';
import { isRegistryHost } from '../oci/index.ts';
import { parseDuration, parseSize } from './units.ts';

const duration = (example: string) =>
  z
    .union([z.string(), z.number()])
    .transform((v, ctx) => {
      const ms = parseDuration(v);
      if (ms === undefined) {
        ctx.addIssue({
          code: 'custom',
          message: `expected a duration such as "${example}" (ms, s, m, h, d)`,
        });
        return z.NEVER;
      }
      return ms;
    })
    .meta({ type: 'string', description: `duration, e.g. "${example}"` });

const size = (example: string) =>
  z
    .union([z.string(), z.number()])
    .transform((v, ctx) => {
      const bytes = parseSize(v);
      if (bytes === undefined) {
        ctx.addIssue({
          code: 'custom',
          message: `expected a size such as "${example}" (B, KB, MB, GB, KiB, MiB, GiB, TiB)`,
        });
        return z.NEVER;
      }
      return bytes;
    })
    .meta({ type: 'string', description: `size, e.g. "${example}"` });

const httpUrl = z.url({ protocol: /^https?$/, error: 'expected an http:// or https:// URL' });

export const upstreamSchema = z.strictObject({
  url: httpUrl.optional().describe('Base URL of the registry; defaults to https://<host>'),
  username: z.string().min(1).optional().describe('User for basic auth or the token service'),
  password: z.string().optional().describe('Secret inline (prefer passwordFile or passwordEnv)'),
  passwordFile: z.string().min(1).optional().describe('File that holds the password or token'),
  passwordEnv: z.string().min(1).optional().describe('Environment variable that holds the password'),
  tagTTL: duration('30s')
    .default(30_000)
    .describe('How long a tag -> digest answer is reused without asking upstream'),
  staleIfError: duration('24h')
    .default(86_400_000)
    .describe('How long the last known digest may be served while the upstream fails'),
  connectTimeout: duration('10s').default(10_000),
  headersTimeout: duration('30s').default(30_000),
  bodyTimeout: duration('60s').default(60_000).describe('Longest pause between two body chunks'),
  retries: z
    .number()
    .int()
    .min(0)
    .max(10)
    .default(2)
    .describe('Retries of idempotent requests on connection errors'),
  connections: z.number().int().min(1).max(1024).default(32).describe('Pooled connections per origin'),
  insecureSkipTLSVerify: z.boolean().default(false),
  caFile: z.string().min(1).optional().describe('PEM CA bundle for a private registry'),
});

export const configSchema = z.strictObject({
  listen: z
    .string()
    .regex(
      /^(\[[0-9a-fA-F:.]+\]|[^:\s]+):\d{1,5}$/,
      'expected "host:port", e.g. "127.0.0.1:5050" or "[::1]:5050"',
    )
    .default('127.0.0.1:5050'),
  storage: z
    .strictObject({
      dir: z
        .string()
        .min(1)
        .default('./pullwarden-data')
        .describe('Blob cache (and the embedded metadata database)'),
      maxBytes: size('50GiB')
        .default(50 * 1024 ** 3)
        .describe('Least-recently-used eviction beyond this'),
    })
    .prefault({}),
  metadata: z
    .strictObject({
      url: z
        .string()
        .regex(/^(sqlite:\/\/.+|redis:\/\/.+|rediss:\/\/.+)$/, 'expected sqlite://PATH or redis://HOST:PORT')
        .optional()
        .describe('sqlite://PATH (default: <storage.dir>/meta.sqlite) or redis://HOST:PORT'),
      passwordFile: z.string().min(1).optional().describe('Redis password file'),
      namespace: z.string().min(1).default('pullwarden').describe('Key prefix, to share one Redis'),
    })
    .prefault({}),
  upstreams: z
    .record(
      z
        .string()
        .refine((h) => isRegistryHost(h), 'expected a registry host such as "ghcr.io" or "127.0.0.1:5000"'),
      upstreamSchema.prefault({}),
    )
    .refine((u) => Object.keys(u).length > 0, 'at least one upstream is required'),
  defaultUpstream: z.string().optional().describe('For requests that carry neither ns= nor a host prefix'),
  log: z
    .strictObject({
      level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    })
    .prefault({}),
  server: z
    .strictObject({
      shutdownGrace: duration('30s')
        .default(30_000)
        .describe('How long graceful shutdown waits for requests'),
      trustProxy: z.boolean().default(false).describe('Take the client address from X-Forwarded-For'),
      maxManifestBytes: size('4MiB').default(4 * 1024 * 1024),
    })
    .prefault({}),
});

export type ConfigInput = z.input<typeof configSchema>;
export type Config = z.output<typeof configSchema>;
export type UpstreamConfig = z.output<typeof upstreamSchema>;

/** Embedded defaults: the public registries most clusters pull from, on the local disk. */
export const defaultConfigInput: ConfigInput = {
  listen: '127.0.0.1:5050',
  storage: { dir: './pullwarden-data', maxBytes: '50GiB' },
  upstreams: {
    'docker.io': { url: 'https://registry-1.docker.io' },
    'ghcr.io': {},
    'quay.io': {},
    'registry.k8s.io': {},
    'gcr.io': {},
    'public.ecr.aws': {},
  },
  defaultUpstream: 'docker.io',
};
