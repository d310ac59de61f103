/**
 * CEL expressions for the `cel` gate, with `@bufbuild/cel` (tested against the CEL spec's
 * conformance suite). Variables: `predicate` (the attested predicate, JSON), `predicateType`,
 * `subject` (the statement's subjects: `[{ name, digest: { sha256 } }]`), `signer` (`identity`,
 * `issuer`, `key`) and `image` (`created`, `labels`, `os`, `architecture` from the image config).
 *
 * Checked when the config loads: a syntax error is reported with its line and column; an unknown
 * variable or function, and an expression of another type than bool, are found by planning the
 * expression and evaluating it once over a probe binding of the declared shape. (`@bufbuild/cel`
 * 0.6 does not export its static type checker; errors that only appear with real data, such as a
 * missing key, are a reason at decision time: the gate fails, it never passes by error.)
 */
import { CelScalar, celEnv, isCelError, listType, mapType, parse, plan } from '@bufbuild/cel';
import type { CelInput } from '@bufbuild/cel';

const VARIABLES = {
  predicate: CelScalar.DYN,
  predicateType: CelScalar.STRING,
  subject: listType(CelScalar.DYN),
  signer: mapType(CelScalar.STRING, CelScalar.STRING),
  image: mapType(CelScalar.STRING, CelScalar.DYN),
};

/** Values bound to the variables (JSON-shaped: objects are CEL maps, numbers doubles). */
export interface CelBindings {
  predicate: CelInput;
  predicateType: string;
  subject: CelInput[];
  signer: Record<string, string>;
  image: Record<string, CelInput>;
}

type Planned = ReturnType<typeof plan<typeof VARIABLES>>;

/** A compiled expression: true, false, or why it could not be evaluated. */
export type CelProgram = (
  bindings: CelBindings,
) => { ok: true; value: boolean } | { ok: false; reason: string };

const env = celEnv({ variables: VARIABLES });

const PROBE: CelBindings = {
  predicate: {},
  predicateType: '',
  subject: [],
  signer: { identity: '', issuer: '', key: '' },
  image: { created: '', labels: {}, os: '', architecture: '' },
};

/** Where `name` first appears in `source`, as "line:col". */
function position(source: string, name: string): string {
  const at = source.search(new RegExp(`\\b${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\b`));
  if (at < 0) return '1:1';
  const before = source.slice(0, at).split('\n');
  return `${before.length}:${(before.at(-1)?.length ?? 0) + 1}`;
}

/** Compile `source`; throws an Error whose message names the line and column of the problem. */
export function compileCel(source: string): CelProgram {
  let ast: ReturnType<typeof parse>;
  try {
    ast = parse(source);
  } catch (err) {
    // "<input>:1:13: found = but expecting end of input"
    const msg = err instanceof Error ? err.message : String(err);
    throw new Error(`CEL syntax error at ${msg.replace(/^<input>:/, '')}`, { cause: err });
  }
  const planned: Planned = plan(env, ast);
  const run = (b: CelBindings) => planned(b);
  const probe = run(PROBE);
  if (isCelError(probe)) {
    const m = /unbound function: (\S+)/.exec(probe.message);
    if (m?.[1] !== undefined)
      throw new Error(`CEL error at ${position(source, m[1])}: unknown function ${m[1]}`);
    if (/unresolved attribute/.test(probe.message)) {
      const names = new Set(Object.keys(VARIABLES));
      const unknown = [...source.matchAll(/(?<![.\w"'])([A-Za-z_]\w*)\b(?!\s*\()/g)]
        .map((x) => x[1] ?? '')
        .find((n) => !names.has(n) && !['true', 'false', 'null', 'in'].includes(n));
      throw new Error(
        `CEL error at ${position(source, unknown ?? '')}: unknown variable${unknown !== undefined ? ` ${unknown}` : ''} (known: ${[...names].join(', ')})`,
      );
    }
    if (/no matching overload/.test(probe.message))
      throw new Error(`CEL type error at 1:1: ${probe.message}`);
  } else if (typeof probe !== 'boolean') {
    throw new Error('CEL type error at 1:1: the expression must be a bool');
  }
  return (bindings) => {
    const out = run(bindings);
    if (isCelError(out)) return { ok: false, reason: `expression error: ${out.message}` };
    if (typeof out !== 'boolean') return { ok: false, reason: 'expression is not a bool' };
    return { ok: true, value: out };
  };
}
