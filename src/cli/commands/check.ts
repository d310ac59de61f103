import { ConfigError, loadConfig } from '../../config/index.ts';
import { isRegistryError } from '../../oci/index.ts';
import type { SignatureCheck } from '../../policy/index.ts';
import type { SignerIdentity } from '../../trust/index.ts';
import type { CheckResult, Command } from '../types.ts';
import { configPath } from './config.ts';
import { parseCommandArgs } from './parse.ts';

export const check: Command = {
  name: 'check',
  synopsis: 'IMAGE [--config FILE] [--json]',
  summary: 'Resolve, discover and verify an image as the proxy would, and print the decision',
  help: [
    'IMAGE is a reference as users write it: ghcr.io/acme/app:1.0, nginx, host:5000/a/b@sha256:….',
    'The same code as the pull path resolves the tag, discovers signatures and attestations and',
    'evaluates the policy, in a private temporary store (no cache of a running proxy is touched, and',
    'no cached decision is used).',
    '',
    'Options:',
    '  -c, --config FILE   Config file (default: $PULLWARDEN_CONFIG, else the embedded defaults)',
    '  --json              One JSON object on stdout',
    '',
    'Exit codes: 0 allowed (also "warn": the proxy serves it), 1 denied, 2 error.',
  ].join('\n'),
  async run(args, ctx) {
    const { values, positionals } = parseCommandArgs(
      args,
      { config: { type: 'string', short: 'c' }, json: { type: 'boolean' } },
      { min: 1, max: 1, names: 'IMAGE' },
    );
    const image = positionals[0] ?? '';
    const json = values.json === true;
    let result: CheckResult;
    try {
      const config = await loadConfig(configPath(values.config, ctx.env), ctx.env, { cwd: ctx.cwd });
      const app = await ctx.loadApp();
      result = await app.checkImage(config, image);
    } catch (error) {
      if (isRegistryError(error) && error.code === 'DENIED') {
        // Refused before any policy (an upstream that is not configured): a denial, not an error.
        if (json)
          ctx.stdout.write(
            `${JSON.stringify({ reference: image, result: 'deny', reasons: [error.message] })}\n`,
          );
        else ctx.stdout.write(`${image}\n  decision: DENY\n  reason:   ${error.message}\n`);
        return 1;
      }
      const message =
        error instanceof ConfigError
          ? `invalid configuration\n${error.message}`
          : error instanceof Error
            ? `${isRegistryError(error) ? `${error.code}: ` : ''}${error.message}`
            : String(error);
      if (json) ctx.stdout.write(`${JSON.stringify({ reference: image, error: message })}\n`);
      else ctx.stderr.write(`pullwarden check: ${message}\n`);
      return 2;
    }
    const decision = result.decision;
    const outcome = decision?.result ?? 'allow';
    if (json) {
      ctx.stdout.write(`${JSON.stringify({ ...result, result: outcome })}\n`);
    } else {
      ctx.stdout.write(formatCheck(result));
    }
    return outcome === 'deny' ? 1 : 0;
  },
};

function signerLabel(s: SignerIdentity): string {
  return s.kind === 'key' ? `key ${s.key}` : `${s.issuer} ${s.subject}`;
}

function checkLine(c: SignatureCheck): string {
  const what = `${c.kind}${c.predicateType !== undefined ? ` (${c.predicateType})` : ''} ${c.manifestDigest} from ${c.source}`;
  if (c.ok) return `    ✓ ${what}: ${c.attestor ?? ''}${c.signer ? ` — ${signerLabel(c.signer)}` : ''}`;
  const failures = (c.failures ?? []).map((f) => `\n        ${f.attestor}: ${f.code}: ${f.reason}`).join('');
  return `    ✗ ${what}${failures}`;
}

/** Human-readable decision: what was resolved, under which policy, and every reason. */
export function formatCheck(r: CheckResult): string {
  const d = r.decision;
  const lines = [
    r.reference,
    `  resolved: ${r.upstream}/${r.repository}@${r.digest} (${r.mediaType})`,
    `  policy:   ${d?.policy ?? '(none)'}${r.policy ? ` (${r.policy.action}, ${r.policy.mode})` : ''}`,
    `  decision: ${(d?.result ?? 'allow').toUpperCase()}`,
  ];
  if (d && d.reasons.length > 0) lines.push('  reasons:', ...d.reasons.map((x) => `    - ${x}`));
  if (d && d.signers.length > 0) lines.push('  signers:', ...d.signers.map((s) => `    - ${signerLabel(s)}`));
  if (d && d.checks.length > 0) lines.push('  signatures and attestations:', ...d.checks.map(checkLine));
  return `${lines.join('\n')}\n`;
}
