import { mkdir, rename, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import {
  containerdHostName,
  DEFAULT_HOST_DIR,
  loadSetupConfig,
  parseProxyUrl,
  renderHostsToml,
} from '../setup/index.ts';
import type { HostsTomlOptions } from '../setup/index.ts';
import type { Command } from '../types.ts';
import { UsageError } from '../types.ts';
import { parseCommandArgs } from './parse.ts';

export const hostsToml: Command = {
  name: 'hosts-toml',
  synopsis: '--proxy URL --out DIR [--config FILE] [--ca FILE] [--no-default] …',
  summary: 'Write containerd certs.d/<host>/hosts.toml files that route every upstream through pullwarden',
  help: [
    'Writes DIR/<host>/hosts.toml for every configured upstream (docker.io as "docker.io", a host',
    'with a port as "host:port"), with both the mirror host and `server` set to the proxy: containerd',
    'falls back from a refusing mirror to `server`, so the real registry must not be there.',
    'Point containerd at DIR: config_path = "DIR" in [plugins."io.containerd.grpc.v1.cri".registry]',
    '(ctr: --hosts-dir DIR). Existing files for these hosts are replaced; others are left alone.',
    '',
    'Also writes DIR/_default/hosts.toml (server and host = the proxy): containerd reads it for every',
    'registry without a directory of its own, so a pull of a registry that is not an upstream reaches',
    'pullwarden and gets its 403 (upstream-not-configured) instead of going to the internet.',
    '',
    'Options:',
    '  --proxy URL          pullwarden as nodes reach it, e.g. http://pullwarden.internal:5050',
    '  --out DIR            certs.d directory to write into (created if missing)',
    '  -c, --config FILE    Config file (default: $PULLWARDEN_CONFIG, else the embedded defaults)',
    '  --ca FILE            https proxy: CA bundle that signed its certificate (ca = "FILE")',
    '  --client-cert FILE   https proxy: client certificate, with --client-key (client = [[cert, key]])',
    '  --client-key FILE',
    '  --skip-verify        https proxy: accept any certificate (skip_verify = true); testing only',
    '  --no-default         Do not write _default/hosts.toml: unconfigured registries are then pulled',
    '                       directly from the internet, past pullwarden (a warning says so)',
    '',
    'Paths are written as absolute paths (relative ones resolve against the current directory):',
    'containerd reads them on the node, at pull time.',
  ].join('\n'),
  async run(args, ctx) {
    const { values } = parseCommandArgs(
      args,
      {
        proxy: { type: 'string' },
        out: { type: 'string' },
        config: { type: 'string', short: 'c' },
        ca: { type: 'string' },
        'client-cert': { type: 'string' },
        'client-key': { type: 'string' },
        'skip-verify': { type: 'boolean' },
        'no-default': { type: 'boolean' },
      },
      { min: 0, max: 0, names: '' },
    );
    if (values.proxy === undefined) throw new UsageError('--proxy URL is required');
    if (values.out === undefined) throw new UsageError('--out DIR is required');
    const proxy = parseProxyUrl(values.proxy);
    const cert = values['client-cert'];
    const key = values['client-key'];
    if ((cert === undefined) !== (key === undefined)) {
      throw new UsageError('--client-cert and --client-key go together');
    }
    const tls = values.ca !== undefined || cert !== undefined || values['skip-verify'] === true;
    if (tls && proxy.scheme !== 'https') {
      throw new UsageError('--ca, --client-cert and --skip-verify apply only to an https:// proxy');
    }
    const opts: HostsTomlOptions = {};
    if (values.ca !== undefined) opts.ca = resolve(ctx.cwd, values.ca);
    if (cert !== undefined && key !== undefined) {
      opts.client = { cert: resolve(ctx.cwd, cert), key: resolve(ctx.cwd, key) };
    }
    if (values['skip-verify'] === true) opts.skipVerify = true;

    const config = await loadSetupConfig('hosts-toml', values.config, ctx);
    if (config === undefined) return 2;
    const out = resolve(ctx.cwd, values.out);
    const write = async (name: string, text: string): Promise<string> => {
      const dir = join(out, name);
      const file = join(dir, 'hosts.toml');
      await mkdir(dir, { recursive: true });
      // containerd reads hosts.toml at every pull: replace it in one step, never half-written.
      const tmp = `${file}.${process.pid}.tmp`;
      await writeFile(tmp, text, { mode: 0o644 });
      await rename(tmp, file);
      return file;
    };
    for (const upstream of Object.keys(config.upstreams)) {
      const name = containerdHostName(upstream);
      const file = await write(name, renderHostsToml(upstream, proxy, opts));
      ctx.stdout.write(`wrote ${file}: ${name} -> ${proxy.url} (server = proxy, no fallback)\n`);
    }
    if (values['no-default'] === true) {
      ctx.stderr.write(
        `pullwarden hosts-toml: WARNING: --no-default: no ${join(out, DEFAULT_HOST_DIR, 'hosts.toml')} written. ` +
          'containerd pulls every registry that is not a configured upstream (any other-registry.example/x) ' +
          'straight from the internet, past pullwarden, unaudited; `pullwarden doctor` reports this as NO_DEFAULT\n',
      );
    } else {
      const file = await write(DEFAULT_HOST_DIR, renderHostsToml(DEFAULT_HOST_DIR, proxy, opts));
      ctx.stdout.write(
        `wrote ${file}: every other registry -> ${proxy.url} (refused there: not a configured upstream)\n`,
      );
    }
    ctx.stdout.write(
      [
        `containerd: config_path = ${JSON.stringify(out)} in [plugins."io.containerd.grpc.v1.cri".registry]`,
        `            (ctr image pull --hosts-dir ${out} …); no restart needed`,
        `check:      pullwarden doctor --hosts-dir ${out} --proxy ${proxy.url} --canary <an image your policy refuses>`,
        '',
      ].join('\n'),
    );
    return 0;
  },
};
