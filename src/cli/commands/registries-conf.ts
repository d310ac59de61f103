import { rename, writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { loadSetupConfig, parseProxyUrl, renderPolicyJson, renderRegistriesConf } from '../setup/index.ts';
import type { Command } from '../types.ts';
import { UsageError } from '../types.ts';
import { parseCommandArgs } from './parse.ts';

export const registriesConf: Command = {
  name: 'registries-conf',
  synopsis: '--proxy URL [--out FILE] [--policy-json FILE] [--config FILE]',
  summary: 'Print a podman/CRI-O registries.conf that routes every upstream through pullwarden',
  help: [
    'One [[registry]] per configured upstream: prefix = "<upstream>", location = "<proxy host>/<upstream>"',
    "(pullwarden's path-prefix route), insecure = true only for an http:// proxy. No [[registry.mirror]]",
    'entries: containers/image falls back from a mirror to the real registry.',
    'containers/image rejects host:port inside a location path, so an upstream with a port is written',
    'with its first alias (upstreams.<host>.aliases); without one it is left out with a warning.',
    '',
    'registries.conf cannot route a registry it does not list (there is no catch-all prefix), so',
    'containers/image pulls any other registry directly. --policy-json FILE writes the catch-all it',
    'does have: a policy.json whose default is reject, accepting only these upstreams and the proxy,',
    "so every other registry's images are refused on the node (containers/image reads their manifest",
    'to apply the policy, then stops before any layer: close egress for a network block).',
    '',
    'Options:',
    '  --proxy URL         pullwarden as nodes reach it, e.g. http://pullwarden.internal:5050',
    '  --out FILE          Write FILE instead of printing to stdout',
    '  --policy-json FILE  Also write the catch-all policy.json (e.g. /etc/containers/policy.json)',
    '  -c, --config FILE   Config file (default: $PULLWARDEN_CONFIG, else the embedded defaults)',
    '',
    'Exit codes: 0 written, 1 written but an upstream could not be routed (see the warnings), 2 error.',
  ].join('\n'),
  async run(args, ctx) {
    const { values } = parseCommandArgs(
      args,
      {
        proxy: { type: 'string' },
        out: { type: 'string' },
        'policy-json': { type: 'string' },
        config: { type: 'string', short: 'c' },
      },
      { min: 0, max: 0, names: '' },
    );
    if (values.proxy === undefined) throw new UsageError('--proxy URL is required');
    const proxy = parseProxyUrl(values.proxy);
    const config = await loadSetupConfig('registries-conf', values.config, ctx);
    if (config === undefined) return 2;
    const upstreams = Object.entries(config.upstreams).map(([host, u]) => ({ host, aliases: u.aliases }));
    const { text, warnings } = renderRegistriesConf(
      upstreams,
      proxy,
      config.defaultUpstream !== undefined ? { defaultUpstream: config.defaultUpstream } : {},
    );
    if (values.out === undefined) {
      ctx.stdout.write(text);
    } else {
      const file = resolve(ctx.cwd, values.out);
      const tmp = `${file}.${process.pid}.tmp`;
      await writeFile(tmp, text, { mode: 0o644 });
      await rename(tmp, file);
      ctx.stdout.write(
        `wrote ${file} (${upstreams.length - warnings.length} of ${upstreams.length} upstreams)\n`,
      );
    }
    const policyJson = values['policy-json'];
    if (policyJson !== undefined) {
      const file = resolve(ctx.cwd, policyJson);
      const tmp = `${file}.${process.pid}.tmp`;
      await writeFile(tmp, renderPolicyJson(upstreams, proxy), { mode: 0o644 });
      await rename(tmp, file);
      const out = values.out === undefined ? ctx.stderr : ctx.stdout;
      out.write(`wrote ${file}: every other registry's images are rejected on the node (default: reject)\n`);
    } else {
      ctx.stderr.write(
        'pullwarden registries-conf: note: registries.conf has no catch-all: registries it does not list are pulled ' +
          'directly, past pullwarden; --policy-json /etc/containers/policy.json writes a policy that rejects them\n',
      );
    }
    for (const w of warnings) ctx.stderr.write(`pullwarden registries-conf: warning: ${w}\n`);
    return warnings.length > 0 ? 1 : 0;
  },
};
