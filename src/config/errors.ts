import { z } from 'zod';
import { configSchema } from './schema.ts';
import { didYouMean } from '../shared/index.ts';

/** One thing wrong with a configuration, located by key path and, when known, by line in the file. */
export interface ConfigProblem {
  /** Dotted key path such as `upstreams.ghcr.io.tagTTL`; empty for the file as a whole. */
  path: string;
  /** What is expected. Never contains the offending value: it may be a secret. */
  message: string;
  line?: number;
  col?: number;
}

/**
 * An invalid configuration. The message has one line per problem, `<file>: <dotted.path>: <what is
 * expected>`, so that an operator can fix every mistake in one round.
 */
export class ConfigError extends Error {
  override name = 'ConfigError';
  /** The config file, or "embedded defaults". */
  readonly source: string;
  readonly problems: readonly ConfigProblem[];

  constructor(source: string, problems: readonly ConfigProblem[], options?: ErrorOptions) {
    super(problems.map((p) => formatProblem(source, p)).join('\n'), options);
    this.source = source;
    this.problems = problems;
  }
}

export function formatProblem(source: string, problem: ConfigProblem): string {
  const where = problem.line === undefined ? source : `${source}:${problem.line}:${problem.col ?? 1}`;
  return problem.path === ''
    ? `${where}: ${problem.message}`
    : `${where}: ${problem.path}: ${problem.message}`;
}

export type KeyPath = readonly PropertyKey[];

export function dotted(path: KeyPath): string {
  return path.map(String).join('.');
}

/** Context for turning zod issues into problems. */
export interface IssueContext {
  /** The raw (pre-validation) input, to say what type was found. */
  input: unknown;
  /** Line and column of a key path in the file, if the input came from one. */
  locate?: (path: KeyPath) => { line: number; col: number } | undefined;
  /** Dotted key paths whose values came from environment variables, mapped to the variable name. */
  fromEnv?: ReadonlyMap<string, string>;
}

/**
 * A problem at a key path: located in the file (at the key itself), or named after the environment
 * variable its value came from.
 */
export function problemAt(path: KeyPath, message: string, ctx: Omit<IssueContext, 'input'>): ConfigProblem {
  const key = dotted(path);
  const env = ctx.fromEnv?.get(key);
  const problem: ConfigProblem = { path: env === undefined ? key : `${key} (from ${env})`, message };
  const pos = env === undefined ? ctx.locate?.(path) : undefined;
  if (pos !== undefined) {
    problem.line = pos.line;
    problem.col = pos.col;
  }
  return problem;
}

/** Turn zod issues into problems that say what is expected, without echoing values. */
export function problemsFromIssues(issues: readonly z.core.$ZodIssue[], ctx: IssueContext): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const add = (path: KeyPath, message: string) => problems.push(problemAt(path, message, ctx));
  for (const issue of issues) {
    switch (issue.code) {
      case 'unrecognized_keys':
        for (const key of issue.keys) {
          add([...issue.path, key], `unknown key${didYouMean(key, knownKeysAt(issue.path))}`);
        }
        break;
      case 'invalid_type': {
        const found = valueAt(ctx.input, issue.path);
        const expected = describeType(issue.expected);
        add(
          issue.path,
          found.present
            ? `expected ${expected}, got ${describeValue(found.value)}`
            : `required: expected ${expected}`,
        );
        break;
      }
      case 'invalid_value': {
        // The nearest valid value, never the value given (it may be a misplaced secret).
        const found = valueAt(ctx.input, issue.path);
        const hint =
          found.present && typeof found.value === 'string'
            ? didYouMean(
                found.value,
                issue.values.filter((v): v is string => typeof v === 'string'),
              )
            : '';
        add(issue.path, `expected one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}${hint}`);
        break;
      }
      case 'too_small':
        add(issue.path, describeBound(issue.origin, '>=', issue.minimum, issue.message));
        break;
      case 'too_big':
        add(issue.path, describeBound(issue.origin, '<=', issue.maximum, issue.message));
        break;
      case 'invalid_key':
        add(issue.path, issue.issues[0]?.message ?? 'invalid key');
        break;
      default:
        add(issue.path, issue.message);
    }
  }
  return problems;
}

function describeBound(origin: string, op: '>=' | '<=', bound: number | bigint, fallback: string): string {
  if (origin === 'string' && op === '>=' && Number(bound) === 1) return 'expected a non-empty string';
  if (origin === 'number') return `expected a number ${op} ${String(bound)}`;
  return fallback;
}

function describeType(expected: string): string {
  switch (expected) {
    case 'object':
    case 'record':
    case 'map':
      return 'a mapping';
    case 'array':
      return 'a list';
    case 'boolean':
      return 'true or false';
    case 'int':
      return 'an integer';
    case 'string':
    case 'number':
      return `a ${expected}`;
    default:
      return expected;
  }
}

/** The type of a value as a YAML author would name it (never the value itself). */
function describeValue(value: unknown): string {
  if (value === null || value === undefined) return 'nothing (null)';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  if (typeof value === 'number' && !Number.isInteger(value)) return 'a fractional number';
  return `a ${typeof value}`;
}

function valueAt(input: unknown, path: KeyPath): { present: boolean; value?: unknown } {
  let node: unknown = input;
  for (const key of path) {
    if (node === null || typeof node !== 'object' || !Object.hasOwn(node, key)) return { present: false };
    node = (node as Record<PropertyKey, unknown>)[key];
  }
  return { present: node !== undefined, value: node };
}

/** Unwrap defaults, optionals and transforms down to the schema that describes the input's shape. */
function inputShape(schema: z.ZodType): z.ZodType {
  let s = schema;
  for (;;) {
    if (s instanceof z.ZodDefault || s instanceof z.ZodPrefault || s instanceof z.ZodOptional) {
      s = s.unwrap() as z.ZodType;
    } else if (s instanceof z.ZodPipe) {
      s = s.in as z.ZodType;
    } else {
      return s;
    }
  }
}

/** Keys the schema accepts at an object path (for "did you mean"). */
export function knownKeysAt(path: KeyPath, schema: z.ZodType = configSchema): string[] {
  let s = inputShape(schema);
  for (const key of path) {
    if (s instanceof z.ZodObject) {
      const next = (s.shape as Record<string, z.ZodType | undefined>)[String(key)];
      if (next === undefined) return [];
      s = inputShape(next);
    } else if (s instanceof z.ZodRecord) {
      s = inputShape(s.valueType as z.ZodType);
    } else {
      return [];
    }
  }
  return s instanceof z.ZodObject ? Object.keys(s.shape) : [];
}
