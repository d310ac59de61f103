/**
 * SLSA provenance v0.2 and v1, under either in-toto Statement `_type` (v0.1 or v1).
 *
 * - v1: `runDetails.builder.id`, `buildDefinition.buildType`; the source from
 *   `externalParameters.workflow` (GitHub Actions build type: `repository` + `ref`), else
 *   `externalParameters.source` (a URI, or `{ uri }`), else the first `resolvedDependencies` entry.
 * - v0.2: `builder.id`, `buildType`, the source from `invocation.configSource.uri`.
 *
 * Source URIs are SPDX-style `git+https://github.com/acme/app@refs/heads/main`: split into the
 * repository (`https://github.com/acme/app`) and the ref.
 */
import type { Provenance, ProvenanceSource } from './types.ts';
import { arr, FormatError, need, obj, str } from './json.ts';

export const SLSA_V1_PREDICATE_TYPE = 'https://slsa.dev/provenance/v1';
export const SLSA_V02_PREDICATE_TYPE = 'https://slsa.dev/provenance/v0.2';

/** `git+https://host/repo@ref` → repository and ref. */
export function sourceFromUri(uri: string): ProvenanceSource {
  const plain = uri.replace(/^git\+/, '');
  const schemeEnd = plain.indexOf('://');
  const at = plain.lastIndexOf('@');
  // An "@" before the path (user info) is not a ref separator.
  const pathStart = plain.indexOf('/', schemeEnd < 0 ? 0 : schemeEnd + 3);
  if (at > pathStart && pathStart >= 0) return { repository: plain.slice(0, at), ref: plain.slice(at + 1) };
  return { repository: plain, ref: undefined };
}

export function parseSlsaV1(predicate: unknown): Provenance {
  const p = need(obj(predicate), 'SLSA v1 predicate is not a JSON object');
  const def = need(
    obj(p.buildDefinition),
    'report format not understood: SLSA v1 predicate has no buildDefinition',
  );
  const run = obj(p.runDetails);
  const ext = obj(def.externalParameters) ?? {};
  let source: ProvenanceSource | undefined;
  const workflow = obj(ext.workflow);
  const repo = str(workflow?.repository);
  if (repo !== undefined) {
    source = { repository: repo.replace(/^git\+/, ''), ref: str(workflow?.ref) };
  } else {
    const s = str(ext.source) ?? str(obj(ext.source)?.uri);
    const dep = str(obj(arr(def.resolvedDependencies)?.[0])?.uri);
    const uri = s ?? dep;
    if (uri !== undefined) source = sourceFromUri(uri);
  }
  return {
    slsaVersion: 'v1',
    builderId: str(obj(run?.builder)?.id),
    buildType: str(def.buildType),
    source,
  };
}

export function parseSlsaV02(predicate: unknown): Provenance {
  const p = need(obj(predicate), 'SLSA v0.2 predicate is not a JSON object');
  const builder = obj(p.builder);
  if (builder === undefined && p.buildType === undefined) {
    throw new FormatError(
      'report format not understood: SLSA v0.2 predicate has neither builder nor buildType',
    );
  }
  const uri = str(obj(obj(p.invocation)?.configSource)?.uri);
  return {
    slsaVersion: 'v0.2',
    builderId: str(builder?.id),
    buildType: str(p.buildType),
    source: uri === undefined || uri === '' ? undefined : sourceFromUri(uri),
  };
}
