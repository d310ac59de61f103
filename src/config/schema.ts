import { auditSchema } from '../audit/index.ts';
import { decisionsSchema, defaultPolicyInput, policiesSchema, trustSchema } from '../policy/index.ts';
import { z } from 'zod';
import { isRegistryHost } from '../oci/index.ts';
import { crossCheck } from './cross-check.ts';
import { duration, parseSize, size, SIZE_PATTERN, unitSchema } from '../shared/index.ts';

const httpUrl = z.url({ protocol: /^https?$/, error: 'expected an http:// or https:// URL' });

// A host glob of redirects.allow / auth.realms: a DNS name with `*` wildcards or an IP literal
// (IPv6 in brackets), with an optional port. Matched by the upstream module's host matcher.
const hostGlob = z
  .string()
  .regex(
    /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9*._-]+)(:\d{1,5})?$/,
    'expected a host glob such as "*.cloudfront.net", "cdn.example.com:8443" or "10.0.0.5" (no scheme, no path)',
  );

const LISTEN_RE = /^(\[[0-9a-fA-F:.]+\]|[^:\s[\]]+):(\d{1,5})$/;

export const upstreamSchema = z.strictObject({
  url: httpUrl
    .optional()
    .describe(
      'Base URL of the registry API; defaults to https://<host> (docker.io: https://registry-1.docker.io)',
    ),
  username: z
    .string()
    .min(1)
    .optional()
    .describe('User for basic auth or the token service; needs password, passwordFile or passwordEnv'),
  password: z.string().min(1).optional().describe('Secret inline (prefer passwordFile or passwordEnv)'),
  passwordFile: z
    .string()
    .min(1)
    .optional()
    .describe('File that holds the password or token (a trailing newline is removed)'),
  passwordEnv: z
    .string()
    .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'expected an environment variable name such as "GHCR_TOKEN"')
    .optional()
    .describe('Environment variable that holds the password or token'),
  tagTTL: duration('30s', 'How long a tag -> digest answer is reused without asking upstream'),
  staleIfError: duration(
    '24h',
    'How long the last verified digest of a tag may be served while upstream fails',
  ),
  connectTimeout: duration('10s', 'TCP + TLS connect timeout'),
  headersTimeout: duration('30s', 'Time to wait for response headers'),
  bodyTimeout: duration('60s', 'Longest pause between two body chunks'),
  retries: z
    .number()
    .int()
    .min(0)
    .max(10)
    .default(2)
    .describe('Retries of idempotent requests on connection errors'),
  connections: z.number().int().min(1).max(1024).default(32).describe('Pooled connections per origin'),
  insecureSkipTLSVerify: z
    .boolean()
    .default(false)
    .describe('Accept any TLS certificate (testing only; digests are still checked)'),
  caFile: z.string().min(1).optional().describe('PEM CA bundle for a private registry'),
  redirects: z
    .strictObject({
      allow: z
        .array(hostGlob)
        .default([])
        .describe(
          'Hosts a redirect (blob to CDN) may lead to even when they resolve to a loopback, link-local or private address; any public address is allowed without being listed',
        ),
      allowHttp: z
        .boolean()
        .default(false)
        .describe(
          'Follow a redirect from an https:// upstream to a plain http:// URL (refused by default: the blob would cross the network in clear text)',
        ),
    })
    .prefault({})
    .describe('Where redirects from this upstream may lead (checked against the address connected to)'),
  auth: z
    .strictObject({
      realms: z
        .array(hostGlob)
        .default([])
        .describe(
          "Token realm hosts besides the upstream's own host (docker.io's auth.docker.io is built in); credentials go to no other realm",
        ),
    })
    .prefault({})
    .describe('Token service of this upstream'),
  aliases: z
    .array(
      z
        .string()
        .regex(
          /^[a-z0-9]+(?:[._-][a-z0-9]+)*$/,
          'expected a name such as "corp-registry" (lower case, digits, ".", "_", "-"; no port)',
        ),
    )
    .default([])
    .describe(
      'Other names clients may use for this upstream in ns= or a /v2/<name>/ path prefix (containers/image cannot put host:port into a registries.conf location)',
    ),
});

export const configSchema = z
  .strictObject({
    listen: z
      .string()
      .regex(LISTEN_RE, 'expected "host:port", e.g. "127.0.0.1:5050", "0.0.0.0:5050" or "[::1]:5050"')
      .refine((v) => Number(LISTEN_RE.exec(v)?.[2] ?? 0) <= 65_535, 'expected a port between 0 and 65535')
      .default('127.0.0.1:5050')
      .describe('Address the registry API listens on'),
    storage: z
      .strictObject({
        dir: z
          .string()
          .min(1)
          .default('./pullwarden-data')
          .describe('Blob cache directory (and the embedded metadata database)'),
        maxBytes: size(
          '50GiB',
          'Least-recently-used blobs are evicted beyond this; running fills count with their Content-Length',
        ),
        maxBlobSize: size(
          '20GiB',
          'Larger blobs are refused (403) before their first byte, by Content-Length and by bytes counted',
        ),
        abandonedFillGrace: duration(
          '30s',
          'A fill whose every reader left goes on this long for others to join, then stops',
        ),
        reserve: unitSchema(z.union([z.string(), z.number().int().min(0)]), 'size-or-percent')
          .default('1GiB')
          .transform((v, ctx) => {
            const percent = typeof v === 'string' ? /^(\d+(?:\.\d+)?)%$/.exec(v.trim()) : null;
            if (percent) {
              const fraction = Number(percent[1]) / 100;
              if (fraction < 1) return { fraction };
            } else if (typeof v === 'number' || new RegExp(SIZE_PATTERN).test(v)) {
              const bytes = parseSize(v);
              if (bytes !== undefined) return { bytes };
            }
            ctx.addIssue({
              code: 'custom',
              message: 'expected a size such as "1GiB" or a percentage of the filesystem such as "5%"',
            });
            return z.NEVER;
          })
          .meta({
            description:
              'Free space to keep on the storage filesystem: below it cache fills are refused (503) so the audit trail keeps room. Size ("1GiB") or percentage ("5%")',
          }),
        shared: z
          .boolean()
          .default(false)
          .describe(
            'Several replicas (each with its own workers) share this directory, e.g. on an NFS/EFS/CephFS volume; every one of them must set it. Without it a second process on the directory refuses to start',
          ),
        replica: z
          .string()
          .regex(
            /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/,
            'expected letters, digits, ".", "_" or "-" (at most 63)',
          )
          .optional()
          .describe(
            'Id of this replica on a shared directory (default: the host name); names its lock file and its own audit chain',
          ),
      })
      .prefault({})
      .describe('Local content-addressed blob cache'),
    metadata: z
      .strictObject({
        url: z
          .string()
          .regex(
            /^(sqlite:\/\/.+|redis:\/\/.+|rediss:\/\/.+)$/,
            'expected sqlite://PATH, redis://HOST:PORT or rediss://HOST:PORT',
          )
          .optional()
          .describe(
            'sqlite://PATH (default: sqlite://<storage.dir>/meta.sqlite) or redis[s]://HOST:PORT[/DB]',
          ),
        passwordFile: z.string().min(1).optional().describe('File that holds the Redis password'),
        passwordEnv: z
          .string()
          .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'expected an environment variable name such as "REDIS_PASSWORD"')
          .optional()
          .describe('Environment variable that holds the Redis password'),
        namespace: z.string().min(1).default('pullwarden').describe('Key prefix, to share one Redis'),
      })
      .prefault({})
      .describe('Tag pins, decisions and admitted closures'),
    upstreams: z
      .record(
        z
          .string()
          .refine(
            (h) => isRegistryHost(h),
            'expected a registry host such as "ghcr.io" or "127.0.0.1:5000" (no scheme, no path)',
          ),
        upstreamSchema.prefault({}),
      )
      .refine((u) => Object.keys(u).length > 0, 'expected at least one upstream')
      .describe('The only registries the proxy connects to, keyed by the host clients name'),
    defaultUpstream: z
      .string()
      .min(1)
      .optional()
      .describe('Upstream for requests that carry neither ns= nor a host prefix'),
    log: z
      .strictObject({
        level: z
          .enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])
          .default('info')
          .describe('Log level'),
        timestamp: z
          .enum(['iso', 'epoch', 'none'])
          .default('iso')
          .describe(
            'Time of each log line: iso (ISO-8601, UTC), epoch (milliseconds since 1970), none (the collector stamps lines)',
          ),
      })
      .prefault({}),
    trust: trustSchema
      .prefault(defaultPolicyInput.trust)
      .describe('Trust roots (Sigstore instances) and public keys that policies name'),
    policies: policiesSchema
      .default(structuredClone(defaultPolicyInput.policies) as never)
      .describe('Ordered policies, first match wins; no match means deny'),
    decisions: decisionsSchema
      .prefault({})
      .describe('How long decisions and discovered signatures are reused'),
    audit: auditSchema,
    auth: z
      .strictObject({
        htpasswd: z
          .string()
          .min(1)
          .optional()
          .describe('htpasswd file with bcrypt entries (htpasswd -B); reloaded when it changes'),
        users: z
          .record(z.string().min(1), z.array(z.string().min(1)))
          .default({})
          .describe(
            'Who may pull what: user (htpasswd name, or a client certificate subject CN) -> globs over <upstream>/<repository>',
          ),
        tokens: z
          .array(
            z.strictObject({
              name: z.string().min(1).describe('Shown in audit events as the identity'),
              tokenFile: z.string().min(1).optional().describe('File holding the token'),
              tokenEnv: z.string().min(1).optional().describe('Environment variable holding the token'),
              repositories: z.array(z.string().min(1)).min(1).describe('Globs over <upstream>/<repository>'),
            }),
          )
          .default([])
          .describe('Static bearer tokens (Authorization: Bearer …, or as the password of any user name)'),
        anonymous: z
          .array(z.string().min(1))
          .optional()
          .describe(
            'Globs over <upstream>/<repository> pullable without credentials (default: everything when no users or tokens are configured, nothing otherwise)',
          ),
        verifyWorkers: z
          .number()
          .int()
          .min(1)
          .max(64)
          .optional()
          .describe('Worker threads for password checks (default: CPUs - 1, between 1 and 4)'),
        verifyQueue: z
          .number()
          .int()
          .min(1)
          .default(64)
          .describe('Password checks that may wait for a worker; beyond, requests get 503 with Retry-After'),
        maxFailures: z
          .number()
          .int()
          .min(0)
          .default(10)
          .describe('Failed logins per client address within failureWindow before 429 (0: no limit)'),
        failureWindow: duration('1m', 'The window maxFailures counts in'),
      })
      .prefault({})
      .describe('Pull authentication'),
    server: z
      .strictObject({
        tls: z
          .strictObject({
            certFile: z.string().min(1).describe('PEM certificate chain; reloaded when it changes'),
            keyFile: z.string().min(1).describe('PEM private key; reloaded when it changes'),
            clientCAFile: z
              .string()
              .min(1)
              .optional()
              .describe('CA for client certificates: a verified certificate authenticates as its subject CN'),
            requireClientCert: z
              .boolean()
              .default(false)
              .describe('Refuse TLS clients without a valid certificate'),
          })
          .optional()
          .describe('Serve HTTPS'),
        workers: z
          .union([z.literal('auto'), z.number().int().min(1).max(64)])
          .default(1)
          .describe(
            'Serving processes on the one listen address: 1 (one process), N, or "auto" (every available core, at most 16). They share the storage directory, audit trail, TUF refresh, config reload and metrics',
          ),
        balance: z
          .enum(['reuseport', 'round-robin'])
          .default('reuseport')
          .describe(
            'How connections reach the workers (workers > 1): "reuseport" (every worker listens itself with SO_REUSEPORT and the kernel spreads connections by a hash of the client address and port: no hand-off, a killed worker\'s queued connections are reset, spreading less even with few clients; Linux) or "round-robin" (the primary accepts each connection and hands it to the next worker: even, but a worker killed during a hand-off leaves that client waiting for its own timeout)',
          ),
        shutdownGrace: duration('30s', 'How long graceful shutdown waits for requests in flight'),
        trustProxy: z.boolean().default(false).describe('Take the client address from X-Forwarded-For'),
        maxManifestBytes: size('4MiB', 'Largest manifest accepted from upstream'),
        maxTrustMaterialBlobBytes: size(
          '1MiB',
          'Largest blob served because only signature or attestation manifests name it, counted as received',
        ),
        headersTimeout: duration('10s', 'A client must send its request headers within this'),
        requestTimeout: duration(
          '30s',
          'A client must send its whole request (headers and any body) within this; responses are not limited',
        ),
        keepAliveTimeout: duration('72s', 'An idle keep-alive client connection is closed after this'),
        sendTimeout: duration(
          '60s',
          'A client that takes no byte of a response for this long is cut (slow readers hold sockets and fills)',
        ),
      })
      .prefault({}),
    metrics: z
      .strictObject({
        listen: z
          .string()
          .regex(LISTEN_RE, 'expected "host:port", e.g. "127.0.0.1:9090" or "0.0.0.0:9090"')
          .refine((v) => Number(LISTEN_RE.exec(v)?.[2] ?? 0) <= 65_535, 'expected a port between 0 and 65535')
          .optional()
          .describe(
            'Serve /metrics on this separate address only (the registry port then answers 404 for it)',
          ),
        auth: z
          .boolean()
          .default(true)
          .describe(
            'On the registry port, /metrics needs credentials that /v2 accepts (when pull auth is configured)',
          ),
      })
      .prefault({})
      .describe('Prometheus metrics endpoint'),
    admin: z
      .strictObject({
        listen: z
          .string()
          .regex(LISTEN_RE, 'expected "host:port", e.g. "127.0.0.1:5052"')
          .refine((v) => Number(LISTEN_RE.exec(v)?.[2] ?? 0) <= 65_535, 'expected a port between 0 and 65535')
          .optional()
          .describe('Serve the read-only admin page on this separate address (off when unset)'),
        htpasswd: z
          .string()
          .min(1)
          .optional()
          .describe('Own credentials: htpasswd file (bcrypt); every user in it may view the page'),
        identities: z
          .array(z.string().min(1))
          .optional()
          .describe(
            "Or the API's credentials: identities (as in audit events: user:NAME, token:NAME, cert:CN) that may view the page",
          ),
        window: duration('7d', 'How far back the page looks in the audit trail'),
      })
      .prefault({})
      .describe('Read-only admin web page: inventory, recent denials, tag moves, cache, pulls over time'),
  })
  .superRefine((config, ctx) => {
    const admin = config.admin;
    if (admin?.listen !== undefined && (admin.htpasswd === undefined) === (admin.identities === undefined)) {
      ctx.addIssue({
        code: 'custom',
        path: ['admin'],
        message: "admin.listen needs exactly one of htpasswd (own credentials) or identities (the API's)",
      });
    }
    for (const problem of crossCheck(config)) ctx.addIssue({ code: 'custom', ...problem });
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
