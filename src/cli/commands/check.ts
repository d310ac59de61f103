import { ConfigError, loadCandidatePolicies, loadConfig } from '../../config/index.ts';
import { isRegistryError } from '../../oci/index.ts';
import type { GateResult, SignatureCheck, SignerIdentity } from '../../app/tools.ts';
import type { CheckResult, Command } from '../types.ts';
import { configPath } from './config.ts';
import { parseCommandArgs } from './parse.ts';

export const check: Command = {
  name: 'check',
  synopsis: 'IMAGE... [--config FILE] [--policy FILE] [--json]',
  summary: 'Resolve, discover and verify an image as the proxy would, and print the decision',
  help: [
    'IMAGE is a reference as users write it: ghcr.io/acme/app:1.0, nginx, host:5000/a/b@sha256:….',
    'The same code as the pull path resolves the tag, discovers signatures and attestations and',
    'evaluates the policy, in a private temporary store (no cache of a running proxy is touched, and',
    'no cached decision is used).',
    '',
    'Options:',
    '  -c, --config FILE   Config file (default: $PULLWARDEN_CONFIG, else the embedded defaults)',
    '  --policy FILE       Evaluate a candidate policy list (a "policies:" key or a bare list) instead',
    "                      of the config's own, against the config's trust section; nothing running changes",
    '  --json              One JSON object per image on stdout',
    '',
    'Every gate of a verify policy is printed with its outcome (pass, deny, warn) and facts.',
    '',
    'Exit codes: 0 allowed (also "warn": the proxy serves it), 1 denied, 2 error.',
  ].join('\n'),
  async run(args, ctx) {
    const { values, positionals } = parseCommandArgs(
      args,
      { config: { type: 'string', short: 'c' }, policy: { type: 'string' }, json: { type: 'boolean' } },
      { min: 1, max: 64, names: 'IMAGE' },
    );
    let worst = 0;
    for (const image of positionals) {
      worst = Math.max(worst, await checkOne(image, values, ctx));
    }
    return worst;
  },
};

async function checkOne(
  image: string,
  values: { config?: string | undefined; policy?: string | undefined; json?: boolean | undefined },
  ctx: Parameters<Command['run']>[1],
): Promise<number> {
  const json = values.json === true;
  let result: CheckResult;
  try {
    let config = await loadConfig(configPath(values.config, ctx.env), ctx.env, { cwd: ctx.cwd });
    if (values.policy !== undefined) {
      config = { ...config, policies: await loadCandidatePolicies(values.policy, config) };
    }
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
}

function gateLines(g: GateResult): string[] {
  const mark = g.result === 'pass' ? '✓' : g.result === 'warn' ? '!' : '✗';
  const lines = [`    ${mark} ${g.gate} (${g.kind}, ${g.mode}): ${g.result.toUpperCase()}`];
  for (const r of g.reasons) lines.push(`        ${r}`);
  const a = g.attestation;
  if (a !== undefined) {
    lines.push(
      `        attestation ${a.manifestDigest} (${a.predicateType}, ${a.timeSource} time ${a.time ?? 'unknown'})`,
    );
  }
  const counts = g.facts.counts as Record<string, number> | undefined;
  if (counts !== undefined) {
    lines.push(
      `        counted: ${Object.entries(counts)
        .map(([s, n]) => `${s} ${n}`)
        .join(', ')}`,
    );
  }
  const failing = g.facts.failing as
    | {
        id: string;
        package: string;
        installed: string;
        fixed: string[] | null;
        severity: string;
        knownExploited: boolean;
      }[]
    | undefined;
  for (const v of failing ?? []) {
    lines.push(
      `        - ${v.id} ${v.severity} ${v.package} ${v.installed} → ${v.fixed === null ? 'fix unknown' : v.fixed.length === 0 ? 'no fix' : v.fixed.join(', ')}${v.knownExploited ? ' (known exploited)' : ''}`,
    );
  }
  return lines;
}

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
  if (d?.gates !== undefined && d.gates.length > 0) lines.push('  gates:', ...d.gates.flatMap(gateLines));
  return `${lines.join('\n')}\n`;
}
