import { createHash, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { TLSSocket } from 'node:tls';
import type { FastifyRequest } from 'fastify';
import { RegistryError } from '../oci/index.ts';
import type { DenyDetail } from '../service/index.ts';
import { globToRegExp, PATH_GLOB } from '../shared/index.ts';
import { FailureLimiter } from './failure-limiter.ts';
import { PasswordPool } from './password-pool.ts';

/** Parse an htpasswd file (user -> bcrypt hash); throws naming the first line that is not one. */
export function parseHtpasswd(text: string, file: string): Map<string, string> {
  const users = new Map<string, string>();
  for (const [i, raw] of text.split('\n').entries()) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const colon = line.indexOf(':');
    const hash = line.slice(colon + 1);
    if (colon <= 0 || !/^\$2[aby]\$\d\d\$/.test(hash)) {
      throw new Error(`${file}:${i + 1}: expected "user:<bcrypt hash>" (htpasswd -B)`);
    }
    users.set(line.slice(0, colon), hash);
  }
  return users;
}

/** Who is pulling: an htpasswd user, a token, a client certificate, or nobody. */
export interface Identity {
  /** As written to audit events: `user:<name>`, `token:<name>`, `cert:<subject CN>`. */
  label: string;
  /** Globs over `<upstream>/<repository>` this identity may pull. */
  allowed: RegExp[];
}

export interface AuthConfig {
  /** Absolute path of an htpasswd file with bcrypt entries. */
  htpasswd?: string;
  users: Record<string, string[]>;
  tokens: { name: string; token: string; repositories: string[] }[];
  anonymous?: string[];
  /** Password check worker threads (default: CPUs - 1, 1 to 4). */
  verifyWorkers?: number;
  /** Password checks waiting for a worker beyond which requests get 503 (default 64). */
  verifyQueue?: number;
  /** Failed attempts per client address and window before 429 (default 10; 0 = no limit). */
  maxFailures?: number;
  /** The window of `maxFailures`, in ms (default 60 s). */
  failureWindowMs?: number;
}

/** bcrypt cost of a `$2b$10$…` hash. */
function bcryptCost(hash: string): number {
  return Number(/^\$2[aby]\$(\d\d)\$/.exec(hash)?.[1] ?? 10);
}

/** Successful password checks are remembered this long: bcrypt is slow by design, pulls are many. */
const VERIFIED_TTL_MS = 5 * 60_000;

/** A wrong credential is answered from memory this long (a client retrying it costs no bcrypt run). */
const REJECTED_TTL_MS = 60_000;

const REALM = 'Basic realm="pullwarden", charset="UTF-8"';

function sha256(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}

/**
 * Pull authentication and authorization. Credentials come as HTTP Basic (htpasswd users; a token as
 * the password of any user name, which is what `docker login`/`podman login`/containerd send), as
 * `Authorization: Bearer <token>`, or as a verified TLS client certificate. Each identity may pull the
 * repositories its globs match; `anonymous` globs need no credentials. Secrets never reach logs: only
 * identity labels do.
 */
export class PullAuth {
  readonly #users: Record<string, RegExp[]>;
  readonly #tokens: { name: string; digest: Buffer; allowed: RegExp[] }[];
  readonly #anonymous: RegExp[];
  readonly #htpasswdPath: string | undefined;
  #htpasswd = new Map<string, string>();
  readonly #verified = new Map<string, { label: string; expires: number }>();
  /** Credentials that just failed, by key, until when: a retrying client costs no bcrypt run. */
  readonly #rejected = new Map<string, number>();
  /** Bumped by reload: a check that started before a reload must not fill the caches after it. */
  #generation = 0;
  readonly #pool: PasswordPool;
  readonly #failures: FailureLimiter;
  /** bcrypt cost an unknown user's dummy comparison uses: the highest of the file. */
  #dummyCost = 10;
  /** Whether any credentials are configured; without them everything is anonymous (plain proxy). */
  readonly enabled: boolean;

  private constructor(config: AuthConfig) {
    this.#users = Object.fromEntries(
      Object.entries(config.users).map(([u, globs]) => [u, globs.map((g) => globToRegExp(g, PATH_GLOB))]),
    );
    this.#tokens = config.tokens.map((t) => ({
      name: t.name,
      digest: sha256(t.token),
      allowed: t.repositories.map((g) => globToRegExp(g, PATH_GLOB)),
    }));
    this.enabled =
      config.htpasswd !== undefined || config.tokens.length > 0 || Object.keys(config.users).length > 0;
    this.#anonymous = (config.anonymous ?? (this.enabled ? [] : ['**'])).map((g) =>
      globToRegExp(g, PATH_GLOB),
    );
    this.#htpasswdPath = config.htpasswd;
    this.#pool = new PasswordPool({
      maxQueue: config.verifyQueue ?? 64,
      ...(config.verifyWorkers === undefined ? {} : { workers: config.verifyWorkers }),
    });
    this.#failures = new FailureLimiter({
      max: config.maxFailures ?? 10,
      windowMs: config.failureWindowMs ?? 60_000,
    });
  }

  /** Password checks queued or running, and done so far (unknown users included). */
  verifications(): { pending: number; completed: number } {
    return { pending: this.#pool.pending, completed: this.#pool.completed };
  }

  /** Stop the password check workers. */
  async close(): Promise<void> {
    await this.#pool.close();
  }

  static async load(config: AuthConfig): Promise<PullAuth> {
    const auth = new PullAuth(config);
    await auth.reload();
    return auth;
  }

  /** Re-read the htpasswd file (on change). Entries must be bcrypt (`$2a$`, `$2b$`, `$2y$`). */
  async reload(): Promise<void> {
    if (this.#htpasswdPath === undefined) return;
    const next = parseHtpasswd(await readFile(this.#htpasswdPath, 'utf8'), this.#htpasswdPath);
    this.#htpasswd = next;
    this.#dummyCost = next.size === 0 ? 10 : Math.max(...[...next.values()].map(bcryptCost));
    this.#verified.clear();
    this.#rejected.clear();
    this.#generation++;
  }

  /** The identity a request proves, or undefined for an anonymous request; 401 for bad credentials. */
  async authenticate(request: FastifyRequest): Promise<Identity | undefined> {
    const header = request.headers.authorization;
    if (header !== undefined) return this.#fromHeader(header, request.ip);
    const socket = request.raw.socket as Partial<TLSSocket>;
    if (socket.authorized === true && typeof socket.getPeerCertificate === 'function') {
      const cn = socket.getPeerCertificate().subject?.CN;
      const name = Array.isArray(cn) ? cn[0] : cn;
      if (name !== undefined && name !== '') {
        return { label: `cert:${name}`, allowed: this.#users[name] ?? [] };
      }
    }
    return undefined;
  }

  async #fromHeader(header: string, client: string): Promise<Identity> {
    const space = header.indexOf(' ');
    const scheme = header.slice(0, space).toLowerCase();
    const value = header.slice(space + 1).trim();
    if (scheme === 'bearer') {
      const token = this.#token(value);
      if (token) return token;
      this.#refuseIfLimited(client);
      this.#failures.fail(client, sha256(`token\u0000${value}`).toString('hex'));
      throw unauthorized('invalid token');
    }
    if (scheme !== 'basic') throw unauthorized('unsupported authorization scheme');
    const decoded = Buffer.from(value, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0) throw unauthorized('malformed basic credentials');
    const user = decoded.slice(0, colon);
    const password = decoded.slice(colon + 1);
    // A token works as the password of any user name: what `docker login` and hosts configs can hold.
    const token = this.#token(password);
    if (token) return token;
    const key = sha256(`${user}\u0000${password}`).toString('hex');
    const now = Date.now();
    const remembered = this.#verified.get(key);
    if (remembered && remembered.expires > now)
      return { label: remembered.label, allowed: this.#users[user] ?? [] };
    // A credential that just failed fails again without another bcrypt run (clients retry).
    const rejected = this.#rejected.get(key);
    if (rejected !== undefined && rejected > now) throw unauthorized('invalid user name or password');
    // Past its failure budget a client gets no more password checks (each costs a worker tens of ms).
    this.#refuseIfLimited(client);
    const generation = this.#generation;
    const hash = this.#htpasswd.get(user);
    // An unknown user is compared against a dummy hash of the same cost: no faster "no such user".
    const ok = await this.#pool.compare(
      password,
      hash,
      hash === undefined ? this.#dummyCost : bcryptCost(hash),
    );
    if (!ok) {
      this.#failures.fail(client, key);
      if (generation === this.#generation) {
        if (this.#rejected.size > 10_000) this.#rejected.clear();
        this.#rejected.set(key, now + REJECTED_TTL_MS);
      }
      throw unauthorized('invalid user name or password');
    }
    if (generation === this.#generation) {
      if (this.#verified.size > 10_000) this.#verified.clear();
      this.#verified.set(key, { label: `user:${user}`, expires: now + VERIFIED_TTL_MS });
    }
    return { label: `user:${user}`, allowed: this.#users[user] ?? [] };
  }

  #refuseIfLimited(client: string): void {
    const wait = this.#failures.blockedFor(client);
    if (wait !== undefined) {
      throw new RegistryError('TOOMANYREQUESTS', 'too many failed authentication attempts; try again later', {
        retryAfter: wait,
      });
    }
  }

  #token(value: string): Identity | undefined {
    const digest = sha256(value);
    const t = this.#tokens.find((x) => timingSafeEqual(x.digest, digest));
    return t ? { label: `token:${t.name}`, allowed: t.allowed } : undefined;
  }

  /**
   * May this identity (or an anonymous client) pull `<upstream>/<repository>`? Anonymous and not
   * allowed: 401 with a challenge (clients then send credentials). Authenticated and not allowed: 403.
   */
  authorize(identity: Identity | undefined, upstream: string, repository: string): void {
    const subject = `${upstream}/${repository}`;
    if (this.#anonymous.some((r) => r.test(subject))) return;
    if (identity === undefined) throw unauthorized(`authentication required to pull ${subject}`);
    if (!identity.allowed.some((r) => r.test(subject))) {
      throw new RegistryError('DENIED', `${identity.label} may not pull ${subject}`, {
        detail: {
          reason: 'not-authorized',
          identity: identity.label,
          upstream,
          repository,
        } satisfies DenyDetail,
      });
    }
  }

  /**
   * The base endpoint: with auth enabled, a client without credentials is always challenged, so that
   * `docker login`/`podman login` work and clients learn the scheme; clients without credentials go on
   * anonymously (containerd, containers/image), and the anonymous globs still apply to them.
   */
  challengeBase(identity: Identity | undefined): void {
    if (this.enabled && identity === undefined) throw unauthorized('authentication required');
  }
}

function unauthorized(message: string): RegistryError {
  return new RegistryError('UNAUTHORIZED', message, { detail: { challenge: REALM } });
}

export const AUTH_CHALLENGE = REALM;
