/**
 * `pullwarden doctor`: does a node's containerd hosts dir make pullwarden the only way to every
 * configured upstream, and does the proxy refuse what it should? Each check yields findings; a
 * finding of level `problem` says what is wrong and how to fix it.
 */
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import type { Dispatcher } from 'undici';
import {
  containerdHostDirs,
  containerdHostName,
  DEFAULT_HOST_DIR,
  defaultServer,
  effectiveEndpoint,
  readHostsToml,
} from './hosts-toml.ts';
import type { HostsEndpoint } from './hosts-toml.ts';
import type { ProxyEndpoint } from './proxy-url.ts';

export type FindingLevel = 'ok' | 'warning' | 'problem';

export type FindingCode =
  | 'ROUTED'
  | 'MISSING'
  | 'NO_DEFAULT'
  | 'NO_HOSTS_TOML'
  | 'INVALID'
  | 'FALLBACK'
  | 'NOT_PROXY'
  | 'CAPABILITIES'
  | 'SHADOWED'
  | 'SKIP_VERIFY'
  | 'NO_CONTAINERD_CONFIG'
  | 'NO_CONFIG_PATH'
  | 'MULTI_CONFIG_PATH'
  | 'CONFIG_PATH_MISMATCH'
  | 'CONFIG_PATH_ORDER'
  | 'CONFIG_PATH'
  | 'READY'
  | 'NOT_READY'
  | 'UNREACHABLE'
  | 'CANARY_DENIED'
  | 'CANARY_ALLOWED'
  | 'CANARY_FAILED'
  | 'CANARY_UNCONFIGURED'
  | 'UNCONFIGURED_DENIED'
  | 'UNCONFIGURED_SERVED'
  | 'UNCONFIGURED_UNCHECKED'
  | 'NO_CANARY';

export interface Finding {
  level: FindingLevel;
  code: FindingCode;
  /** What the finding is about: an upstream host, `proxy` or `canary <ref>`. */
  subject: string;
  message: string;
  /** How to fix it (problems and warnings). */
  fix?: string;
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw error;
  }
}

function isProxy(e: HostsEndpoint, proxyEndpoint: string): boolean {
  return e.effective === proxyEndpoint;
}

/**
 * Check `hostsDir` for each upstream: the directory containerd will read (see hosts-toml.ts), its
 * hosts.toml, and that every endpoint in it, `server` included, is the proxy with pull and resolve.
 * `regenerate` is the command line that writes a correct file, used in the fixes.
 */
/** An upstream as doctor sees it: the name clients pull by, and where the registry really is. */
export interface DoctorUpstream {
  host: string;
  /** `upstreams.<host>.url`: an endpoint with this origin is the real registry too. */
  url?: string;
}

function origin(url: string): string | undefined {
  return URL.canParse(url) ? new URL(url).origin : undefined;
}

/** Whether containerd reaching `e` means reaching the real registry of `upstream`, past the proxy. */
function isRealRegistry(e: HostsEndpoint, upstream: DoctorUpstream): boolean {
  const u = new URL(e.effective);
  if (containerdHostName(u.host) === containerdHostName(upstream.host)) return true;
  if (containerdHostName(u.host) === containerdHostName(new URL(defaultServer(upstream.host)).host))
    return true;
  return upstream.url !== undefined && origin(upstream.url) === u.origin;
}

export async function checkHostsDir(
  hostsDir: string,
  upstreams: readonly DoctorUpstream[],
  proxy: ProxyEndpoint,
  regenerate: string,
): Promise<Finding[]> {
  const findings: Finding[] = [];
  const proxyEndpoint = effectiveEndpoint(proxy.url) ?? proxy.url;
  const defaultDir = join(hostsDir, DEFAULT_HOST_DIR);
  const hasDefault = await exists(join(defaultDir, 'hosts.toml'));
  for (const entry of upstreams) {
    const upstream = entry.host;
    const subject = containerdHostName(upstream);
    const candidates = containerdHostDirs(upstream);
    const present: string[] = [];
    for (const name of candidates) if (await exists(join(hostsDir, name))) present.push(name);
    const used = present[0];
    if (present.length > 1) {
      findings.push({
        level: 'warning',
        code: 'SHADOWED',
        subject,
        message: `both ${present.map((p) => `${p}/`).join(' and ')} exist; containerd reads only ${used}/`,
        fix: `remove ${join(hostsDir, present[1] ?? '')} (or merge it into ${used}/) so there is one place to look`,
      });
    }
    let dir: string;
    if (used !== undefined) {
      dir = join(hostsDir, used);
    } else if (hasDefault) {
      // containerd (1.6.20 observed) reads _default/ for a host without a directory of its own.
      dir = defaultDir;
    } else {
      findings.push({
        level: 'problem',
        code: 'MISSING',
        subject,
        message: `no ${join(hostsDir, candidates.at(-1) ?? subject, 'hosts.toml')}: containerd pulls ${subject} images straight from the real registry, past pullwarden`,
        fix: `write it: ${regenerate}`,
      });
      continue;
    }
    findings.push(...(await checkFile(dir, entry, subject, proxy, proxyEndpoint, regenerate)));
  }
  // _default/: what containerd reads for every registry that is not an upstream. Without it (or with
  // a real registry in it) `docker.io/x` when docker.io is not configured, or `evil.example.com/x`,
  // is pulled from the internet with no refusal and no audit event.
  const subject = `${DEFAULT_HOST_DIR} (every other registry)`;
  const fixDefault = `write it: ${regenerate} (without --no-default)`;
  if (!hasDefault) {
    const dirOnly = await exists(defaultDir);
    findings.push({
      level: 'problem',
      code: 'NO_DEFAULT',
      subject,
      message:
        `${dirOnly ? `${defaultDir}/ has no hosts.toml` : `no ${join(defaultDir, 'hosts.toml')}`}: ` +
        'containerd pulls every registry that is not a configured upstream (e.g. docker.io when it is not one, any evil.example.com/x) straight from the internet, past pullwarden and its audit trail',
      fix: fixDefault,
    });
  } else {
    findings.push(
      ...(await checkFile(defaultDir, { host: DEFAULT_HOST_DIR }, subject, proxy, proxyEndpoint, fixDefault)),
    );
  }
  return findings;
}

/** Check one directory's hosts.toml for `entry` (an upstream, or `_default`). */
async function checkFile(
  dir: string,
  entry: DoctorUpstream,
  subject: string,
  proxy: ProxyEndpoint,
  proxyEndpoint: string,
  regenerate: string,
): Promise<Finding[]> {
  const findings: Finding[] = [];
  const upstream = entry.host;
  const isDefault = upstream === DEFAULT_HOST_DIR;
  const file = join(dir, 'hosts.toml');
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    findings.push({
      level: 'problem',
      code: 'NO_HOSTS_TOML',
      subject,
      message: `${dir}/ exists but has no hosts.toml: containerd uses it only for certificates and pulls from the real registry ${defaultServer(upstream)}`,
      fix: `write ${file}: ${regenerate}`,
    });
    return findings;
  }
  let route;
  try {
    route = readHostsToml(text, upstream);
  } catch (error) {
    findings.push({
      level: 'problem',
      code: 'INVALID',
      subject,
      message: `${file}: ${(error as Error).message} (containerd fails every pull of ${isDefault ? 'these registries' : subject} with this file)`,
      fix: `fix the syntax, or write it again: ${regenerate}`,
    });
    return findings;
  }
  // In _default/ every host other than the proxy leads past it: whatever registry is being pulled.
  const real = (e: HostsEndpoint): boolean => !isDefault && isRealRegistry(e, entry);
  const otherName = `if it is pullwarden under another name, pass that URL as --proxy`;
  for (const h of route.hosts) {
    if (isProxy(h, proxyEndpoint)) continue;
    findings.push({
      level: 'problem',
      code: real(h) ? 'FALLBACK' : 'NOT_PROXY',
      subject,
      message: real(h)
        ? `${file}: [host."${h.raw}"] is the real registry: containerd pulls from it directly whenever pullwarden refuses`
        : `${file}: [host."${h.raw}"] is not pullwarden at ${proxy.url} (${otherName}): containerd tries it in file order and after every refusal`,
      fix: `remove the [host."${h.raw}"] table; only [host."${proxy.url}"] belongs there (${regenerate})`,
    });
  }
  if (!isProxy(route.server, proxyEndpoint)) {
    const implicit = isDefault && !route.serverExplicit;
    const what = route.serverExplicit
      ? `server = "${route.server.raw}"`
      : implicit
        ? "no server line, so containerd's default server: the registry being pulled"
        : `no server line, so containerd's default server ${route.server.raw}`;
    const fallback = implicit || real(route.server);
    findings.push({
      level: 'problem',
      code: fallback ? 'FALLBACK' : 'NOT_PROXY',
      subject,
      message: fallback
        ? `${file}: ${what} is the real registry: when pullwarden refuses (403) or is down, containerd falls back to it and pulls the image directly`
        : `${file}: ${what} is not pullwarden at ${proxy.url} (${otherName}): containerd falls back to it when pullwarden refuses or is down`,
      fix: `set server = "${proxy.url}" (${regenerate})`,
    });
  }
  const proxyEntries =
    route.hosts.length > 0 ? route.hosts.filter((h) => isProxy(h, proxyEndpoint)) : [route.server];
  for (const h of proxyEntries) {
    if (!isProxy(h, proxyEndpoint)) continue;
    const missing = ['pull', 'resolve'].filter((c) => !h.capabilities.includes(c));
    if (missing.length > 0) {
      findings.push({
        level: 'problem',
        code: 'CAPABILITIES',
        subject,
        message: `${file}: ${h === route.server ? 'server' : `[host."${h.raw}"]`} lacks capabilities ${missing.map((c) => `"${c}"`).join(', ')}: containerd sends those requests elsewhere`,
        fix: 'capabilities = ["pull", "resolve"]',
      });
    }
  }
  if (findings.some((f) => f.level === 'problem')) return findings;
  if ([...route.hosts, route.server].some((h) => h.skipVerify) && proxy.scheme === 'https') {
    findings.push({
      level: 'warning',
      code: 'SKIP_VERIFY',
      subject,
      message: `${file}: skip_verify = true: containerd accepts any certificate for pullwarden`,
      fix: 'give containerd pullwarden\'s CA instead: ca = "/path/ca.pem" (pullwarden hosts-toml --ca FILE)',
    });
  }
  findings.push({
    level: 'ok',
    code: 'ROUTED',
    subject,
    message: isDefault
      ? `${file} sends every other registry to pullwarden (which refuses them), with server = pullwarden (no fallback)`
      : `${file} routes every pull through pullwarden, with server = pullwarden (no fallback)`,
  });
  return findings;
}

export interface ProbeOptions {
  /** PEM CA bundle for an https proxy. */
  ca?: string;
  /** PEM client certificate and key. */
  cert?: string;
  key?: string;
  timeoutMs?: number;
}

/** A canary as sent to the proxy the way containerd sends it. */
export interface Canary {
  /** As the user wrote it. */
  text: string;
  /** The `ns=` value: the registry host as the client names it. */
  host: string;
  repository: string;
  /** Tag or digest. */
  reference: string;
  /** Whether `host` is a configured upstream (or alias). */
  configured: boolean;
}

const ACCEPT = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.docker.distribution.manifest.v2+json',
].join(', ');

/** Ask the proxy for /readyz and, with a canary, whether it refuses it. */
export async function checkProxy(
  proxy: ProxyEndpoint,
  canary: Canary | undefined,
  opts: ProbeOptions = {},
): Promise<Finding[]> {
  const findings: Finding[] = [];
  const timeout = opts.timeoutMs ?? 10_000;
  const dispatcher: Dispatcher = new Agent({
    headersTimeout: timeout,
    bodyTimeout: timeout,
    connectTimeout: timeout,
    connect: {
      ...(opts.ca !== undefined ? { ca: opts.ca } : {}),
      ...(opts.cert !== undefined ? { cert: opts.cert } : {}),
      ...(opts.key !== undefined ? { key: opts.key } : {}),
    },
  });
  const call = async (method: 'GET' | 'HEAD', path: string) => {
    const res = await request(`${proxy.url}${path}`, {
      method,
      dispatcher,
      headers: { accept: ACCEPT, 'user-agent': 'pullwarden-doctor' },
    });
    const body = method === 'HEAD' ? '' : await res.body.text();
    if (method === 'HEAD') await res.body.dump();
    return { status: res.statusCode, body };
  };
  try {
    let ready;
    try {
      ready = await call('GET', '/readyz');
    } catch (error) {
      findings.push({
        level: 'problem',
        code: 'UNREACHABLE',
        subject: 'proxy',
        message: `${proxy.url}/readyz: ${(error as Error).message}: nodes cannot pull anything through pullwarden`,
        fix: 'start pullwarden (pullwarden serve) and check that this node can reach it (address, firewall, TLS CA)',
      });
      if (canary !== undefined) {
        findings.push({
          level: 'problem',
          code: 'CANARY_FAILED',
          subject: `canary ${canary.text}`,
          message: 'not checked: the proxy is unreachable',
        });
      }
      return findings;
    }
    if (ready.status === 200) {
      findings.push({
        level: 'ok',
        code: 'READY',
        subject: 'proxy',
        message: `${proxy.url}/readyz answers 200`,
      });
    } else {
      findings.push({
        level: 'problem',
        code: 'NOT_READY',
        subject: 'proxy',
        message: `${proxy.url}/readyz answers ${ready.status}${reason(ready.body)}`,
        fix: "see pullwarden's log for why it is not ready (storage, metadata store, trust roots)",
      });
    }
    findings.push(await unconfiguredCanary(call));
    if (canary === undefined) {
      findings.push({
        level: 'warning',
        code: 'NO_CANARY',
        subject: 'canary',
        message: 'no --canary given: whether pullwarden refuses anything was not checked',
        fix: 'pass --canary REF, an image your policy must refuse (e.g. an unsigned image)',
      });
      return findings;
    }
    const subject = `canary ${canary.text}`;
    if (!canary.configured) {
      findings.push({
        level: 'warning',
        code: 'CANARY_UNCONFIGURED',
        subject,
        message: `registry "${canary.host}" is not a configured upstream: pullwarden refuses it before any policy, which proves nothing about the policies`,
        fix: 'use a canary from a configured upstream',
      });
    }
    const path = `/v2/${canary.repository}/manifests/${canary.reference}?ns=${encodeURIComponent(canary.host)}`;
    let head;
    try {
      head = await call('HEAD', path);
    } catch (error) {
      findings.push({
        level: 'problem',
        code: 'CANARY_FAILED',
        subject,
        message: `HEAD ${path}: ${(error as Error).message}`,
      });
      return findings;
    }
    if (head.status === 403) {
      // HEAD carries no body; the GET of a refused manifest answers from the same decision with the reason.
      let why = '';
      try {
        why = reason((await call('GET', path)).body);
      } catch {
        // The refusal itself is what counts.
      }
      findings.push({ level: 'ok', code: 'CANARY_DENIED', subject, message: `refused with 403${why}` });
    } else if (head.status >= 200 && head.status < 300) {
      findings.push({
        level: 'problem',
        code: 'CANARY_ALLOWED',
        subject,
        message: `pullwarden serves it (HEAD ${head.status}): enforcement is not active for it (a policy allows it, is in mode warn, or it is signed)`,
        fix: `see why with \`pullwarden check ${canary.text} --config <the proxy's config>\`; fix the policy, or choose a canary your policy must refuse`,
      });
    } else {
      findings.push({
        level: 'problem',
        code: 'CANARY_FAILED',
        subject,
        message: `HEAD answered ${head.status}, not 403${head.status === 404 ? ' (the image does not exist upstream)' : ''}: refusal not shown`,
        fix: 'choose a canary that exists upstream and that your policy must refuse',
      });
    }
    return findings;
  } finally {
    await dispatcher.close();
  }
}

/**
 * A registry no config names (`.invalid` is reserved, RFC 2606): what containerd sends through
 * `_default/hosts.toml` for `evil.example.com/x`. pullwarden must refuse it at routing, without
 * dialling anything.
 */
export const UNCONFIGURED_CANARY = {
  host: 'unconfigured.pullwarden-doctor.invalid',
  repository: 'doctor/canary',
};

async function unconfiguredCanary(
  call: (method: 'GET' | 'HEAD', path: string) => Promise<{ status: number; body: string }>,
): Promise<Finding> {
  const { host, repository } = UNCONFIGURED_CANARY;
  const path = `/v2/${repository}/manifests/latest?ns=${encodeURIComponent(host)}`;
  const subject = `canary ${host}/${repository}:latest (not an upstream)`;
  let res;
  try {
    res = await call('GET', path);
  } catch (error) {
    return {
      level: 'problem',
      code: 'CANARY_FAILED',
      subject,
      message: `GET ${path}: ${(error as Error).message}`,
    };
  }
  let why: string | undefined;
  try {
    why = (JSON.parse(res.body) as { errors?: { detail?: { reason?: string } }[] }).errors?.[0]?.detail
      ?.reason;
  } catch {
    // Not JSON: judged by the status alone.
  }
  if (res.status === 403 && why === 'upstream-not-configured') {
    return {
      level: 'ok',
      code: 'UNCONFIGURED_DENIED',
      subject,
      message: 'refused with 403 (upstream-not-configured): a registry that is not an upstream gets nothing',
    };
  }
  if (res.status === 401) {
    return {
      level: 'warning',
      code: 'UNCONFIGURED_UNCHECKED',
      subject,
      message:
        'the proxy asks for credentials first (401): the refusal of unconfigured registries was not checked',
      fix: 'allow anonymous requests to reach routing, or check with credentials (curl -u …)',
    };
  }
  return {
    level: 'problem',
    code: 'UNCONFIGURED_SERVED',
    subject,
    message: `answered ${res.status}${reason(res.body)}, not 403 upstream-not-configured: a registry that is not an upstream is not refused`,
    fix: 'check that this URL is pullwarden (not another registry or proxy) and that upstreams lists only the registries you mean',
  };
}

/** `: <message>` from an OCI error body or a /readyz body, or ''. */
function reason(body: string): string {
  try {
    const parsed = JSON.parse(body) as { errors?: { code?: string; message?: string }[]; reason?: string };
    const e = parsed.errors?.[0];
    if (e !== undefined) return ` (${e.code ?? ''}${e.message !== undefined ? `: ${e.message}` : ''})`;
    if (parsed.reason !== undefined) return `: ${parsed.reason}`;
  } catch {
    // Not JSON.
  }
  return '';
}

/** Human-readable findings, one block each, and a summary line. */
export function formatFindings(findings: readonly Finding[]): string {
  const label = (f: Finding): string => (f.level === 'ok' ? 'ok' : f.level === 'warning' ? 'warn' : f.code);
  const width = Math.max(...findings.map((f) => label(f).length), 4);
  const lines: string[] = [];
  for (const f of findings) {
    lines.push(`${label(f).padEnd(width)}  ${f.subject}: ${f.message}`);
    if (f.fix !== undefined && f.level !== 'ok') lines.push(`${' '.repeat(width)}  fix: ${f.fix}`);
  }
  const problems = findings.filter((f) => f.level === 'problem').length;
  const warnings = findings.filter((f) => f.level === 'warning').length;
  lines.push(
    problems === 0
      ? `no problems found${warnings > 0 ? ` (${warnings} warning${warnings === 1 ? '' : 's'})` : ''}`
      : `${problems} problem${problems === 1 ? '' : 's'} found${warnings > 0 ? `, ${warnings} warning${warnings === 1 ? '' : 's'}` : ''}`,
  );
  return `${lines.join('\n')}\n`;
}
