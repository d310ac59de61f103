import { readFile } from 'node:fs/promises';
import { parse } from 'yaml';
import { checkPolicyReferences, policiesSchema } from '../policy/index.ts';
import type { Policy } from '../policy/index.ts';
import { ConfigError } from './errors.ts';
import type { ConfigProblem } from './errors.ts';
import type { LoadedConfig } from './load.ts';

/**
 * A candidate policy list for `pullwarden check --policy FILE`: the file holds either a `policies:`
 * mapping (a whole config file works) or a bare list. Validated like the config's own policies, with
 * trust references checked against the running config's trust section. Nothing running changes.
 */
export async function loadCandidatePolicies(file: string, config: LoadedConfig): Promise<Policy[]> {
  let doc: unknown;
  try {
    doc = parse(await readFile(file, 'utf8'));
  } catch (error) {
    throw new ConfigError(file, [
      { path: '', message: `cannot read the policy file: ${(error as Error).message}` },
    ]);
  }
  const list = Array.isArray(doc) ? doc : (doc as { policies?: unknown } | null)?.policies;
  if (!Array.isArray(list)) {
    throw new ConfigError(file, [{ path: '', message: 'expected a list of policies, or a "policies:" key' }]);
  }
  const parsed = policiesSchema.safeParse(list);
  if (!parsed.success) {
    throw new ConfigError(
      file,
      parsed.error.issues.map((i): ConfigProblem => ({
        path: ['policies', ...i.path].join('.'),
        message: i.message,
      })),
    );
  }
  const problems = checkPolicyReferences(config.trust, parsed.data);
  if (problems.length > 0) throw new ConfigError(file, problems);
  return parsed.data;
}
