import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { upstreamNames } from '../../app/tools.ts';
import { isRegistryError, parseImageReference } from '../../oci/index.ts';
import {
  checkContainerdConfig,
  checkHostsDir,
  checkProxy,
  containerdHostName,
  formatFindings,
  loadSetupConfig,
  parseProxyUrl,
} from '../setup/index.ts';
import type { Canary, Finding, ProbeOptions } from '../setup/index.ts';
import type { Command } from '../types.ts';
import { UsageError } from '../types.ts';
import { parseCommandArgs } from './parse.ts';

const DEFAULT_HOSTS_DIR = '/etc/containerd/certs.d';
const DEFAULT_CONTAINERD_CONFIG = '/etc/containerd/config.toml';

export const doctor: Command = {
  name: 'doctor',
  synopsis: '--proxy URL [--hosts-dir DIR] [--containerd-config FILE] [--canary REF] [--config FILE] …',
  summary: "Check that a node's containerd routes every upstream through pullwarden, with no fallback",
  help: [
    "Reads containerd's config.toml (schema version 2 for 1.6/1.7, 3 for 2.x) and checks that the CRI's",
    'config_path is DIR, and not a list of directories, which the transfer service of containerd 2.1+',
    'silently ignores (containerd#12415, #12636).',
    'For every configured upstream, reads the hosts.toml containerd will use (DIR/<host>/hosts.toml,',
    'or DIR/<host>_<port>_/ which containerd prefers, or DIR/_default/) and checks that it exists,',
    'parses, that `server` and every [host."…"] is the proxy, and that the proxy has the pull and',
    'resolve capabilities. A real registry as `server` or as a host is reported as FALLBACK: containerd',
    'pulls from it whenever pullwarden refuses. DIR/_default/hosts.toml must exist and be the proxy too',
    '(NO_DEFAULT otherwise): containerd reads it for every registry that is not an upstream.',
    'Then asks the proxy for /readyz, for a registry that is not an upstream (expecting 403',
    'upstream-not-configured) and, with --canary, sends HEAD /v2/<repository>/manifests/<reference>?ns=<host>',
    'as containerd does, expecting 403.',
    '',
    'Options:',
    '  --proxy URL          pullwarden as this node reaches it',
    `  --hosts-dir DIR      containerd's config_path (default ${DEFAULT_HOSTS_DIR})`,
    `  --containerd-config FILE  containerd's config.toml (default ${DEFAULT_CONTAINERD_CONFIG})`,
    '  --canary REF         An image your policy must refuse, e.g. docker.io/library/busybox:1.36',
    '  -c, --config FILE    Config file (default: $PULLWARDEN_CONFIG, else the embedded defaults)',
    '  --ca FILE            https proxy: CA bundle for the checks against the proxy',
    '  --client-cert FILE   https proxy: client certificate (with --client-key)',
    '  --client-key FILE',
    '  --json               One JSON object: {"ok": bool, "findings": [{level, code, subject, message, fix}]}',
    '',
    'Exit codes: 0 no problems, 1 problems found (each printed with how to fix it), 2 error.',
  ].join('\n'),
  async run(args, ctx) {
    const { values } = parseCommandArgs(
      args,
      {
        proxy: { type: 'string' },
        'hosts-dir': { type: 'string' },
        'containerd-config': { type: 'string' },
        canary: { type: 'string' },
        config: { type: 'string', short: 'c' },
        ca: { type: 'string' },
        'client-cert': { type: 'string' },
        'client-key': { type: 'string' },
        json: { type: 'boolean' },
      },
      { min: 0, max: 0, names: '' },
    );
    if (values.proxy === undefined) throw new UsageError('--proxy URL is required');
    const proxy = parseProxyUrl(values.proxy);
    if ((values['client-cert'] === undefined) !== (values['client-key'] === undefined)) {
      throw new UsageError('--client-cert and --client-key go together');
    }
    const config = await loadSetupConfig('doctor', values.config, ctx);
    if (config === undefined) return 2;

    let canary: Canary | undefined;
    if (values.canary !== undefined) {
      try {
        const ref = parseImageReference(values.canary, config.defaultUpstream ?? 'docker.io');
        const host = containerdHostName(ref.host);
        const configured = upstreamNames(config).resolveHost(host) !== undefined;
        canary = {
          text: values.canary,
          host,
          repository: ref.repository,
          reference: ref.digest ?? ref.tag ?? 'latest',
          configured,
        };
      } catch (error) {
        if (isRegistryError(error)) throw new UsageError(`--canary: ${error.message}`);
        throw error;
      }
    }

    const hostsDir = resolve(ctx.cwd, values['hosts-dir'] ?? DEFAULT_HOSTS_DIR);
    const regenerate = `pullwarden hosts-toml --proxy ${proxy.url} --out ${hostsDir}${values.config !== undefined ? ` --config ${values.config}` : ''}`;
    const probe: ProbeOptions = {};
    let findings: Finding[];
    try {
      if (values.ca !== undefined) probe.ca = await readFile(resolve(ctx.cwd, values.ca), 'utf8');
      if (values['client-cert'] !== undefined && values['client-key'] !== undefined) {
        probe.cert = await readFile(resolve(ctx.cwd, values['client-cert']), 'utf8');
        probe.key = await readFile(resolve(ctx.cwd, values['client-key']), 'utf8');
      }
      const containerdConfig = values['containerd-config'];
      findings = [
        ...(await checkContainerdConfig(
          resolve(ctx.cwd, containerdConfig ?? DEFAULT_CONTAINERD_CONFIG),
          hostsDir,
          containerdConfig !== undefined,
        )),
        ...(await checkHostsDir(
          hostsDir,
          Object.entries(config.upstreams).map(([host, u]) => ({ host, url: u.url })),
          proxy,
          regenerate,
        )),
        ...(await checkProxy(proxy, canary, probe)),
      ];
    } catch (error) {
      ctx.stderr.write(`pullwarden doctor: ${error instanceof Error ? error.message : String(error)}\n`);
      return 2;
    }
    const ok = !findings.some((f) => f.level === 'problem');
    if (values.json === true) {
      ctx.stdout.write(`${JSON.stringify({ ok, hostsDir, proxy: proxy.url, findings })}\n`);
    } else {
      ctx.stdout.write(`containerd hosts dir ${hostsDir}, proxy ${proxy.url}\n${formatFindings(findings)}`);
    }
    return ok ? 0 : 1;
  },
};
