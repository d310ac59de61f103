/**
 * SBOMs as generators emit them: SPDX 2.3 JSON (`https://spdx.dev/Document`; purls live in each
 * package's `externalRefs` with `referenceType: purl`, category `PACKAGE-MANAGER` or the older
 * `PACKAGE_MANAGER`) and CycloneDX JSON 1.x (`https://cyclonedx.org/bom`; 1.5, 1.6 and 1.7 are all
 * current; components nest). cosign's generic predicate wrapper `{ "Data": "<json string>" }` is
 * unwrapped.
 */
import type { Sbom, SbomPackage } from './types.ts';
import { arr, FormatError, need, obj, str } from './json.ts';
import type { Json } from './json.ts';

export const SPDX_PREDICATE_TYPE = 'https://spdx.dev/Document';
export const CYCLONEDX_PREDICATE_TYPE = 'https://cyclonedx.org/bom';

function unwrap(predicate: unknown): Json {
  const p = need(obj(predicate), 'SBOM predicate is not a JSON object');
  const data = p.Data;
  if (typeof data === 'string') {
    try {
      return need(obj(JSON.parse(data)), 'SBOM predicate Data is not a JSON object');
    } catch (err) {
      if (err instanceof FormatError) throw err;
      throw new FormatError('report format not understood: SBOM predicate Data is not JSON');
    }
  }
  return obj(data) ?? p;
}

/** purl without version, qualifiers and subpath, and its version: split once, when the SBOM is parsed. */
export function purlParts(purl: string): { base: string; version: string | undefined } {
  let end = purl.indexOf('#');
  if (end < 0) end = purl.length;
  const q = purl.indexOf('?');
  if (q >= 0 && q < end) end = q;
  const at = purl.lastIndexOf('@', end - 1);
  const slash = purl.lastIndexOf('/', end - 1);
  if (at > slash && at > 0) {
    const raw = purl.slice(at + 1, end);
    let version = raw;
    if (raw.includes('%')) {
      try {
        version = decodeURIComponent(raw);
      } catch {
        // a malformed escape: the version as written (a range then cannot compare it: fails closed)
      }
    }
    return { base: purl.slice(0, at), version };
  }
  return { base: purl.slice(0, end), version: undefined };
}

function sbomPackage(
  name: string | undefined,
  version: string | undefined,
  purl: string | undefined,
): SbomPackage {
  const parts = purl === undefined ? undefined : purlParts(purl);
  return { name: name ?? '', version, purl, purlBase: parts?.base, purlVersion: parts?.version };
}

/** An SPDX 2.x JSON document, normalized. */
export function parseSpdx(predicate: unknown): Sbom {
  const doc = unwrap(predicate);
  const version = str(doc.spdxVersion);
  if (version === undefined || !/^SPDX-2\.\d+$/.test(version)) {
    throw new FormatError(
      `report format not understood: expected an SPDX 2.x JSON document, got spdxVersion ${JSON.stringify(doc.spdxVersion)}`,
    );
  }
  const packages = (arr(doc.packages) ?? []).map((entry): SbomPackage => {
    const p = need(obj(entry), 'SPDX document: a package is not an object');
    const purl = (arr(p.externalRefs) ?? [])
      .map((r) => obj(r))
      .find((r) => r !== undefined && str(r.referenceType)?.toLowerCase() === 'purl');
    return sbomPackage(str(p.name), str(p.versionInfo), str(purl?.referenceLocator));
  });
  return { format: version, packages };
}

/** A CycloneDX 1.x JSON BOM, normalized (nested components flattened). */
export function parseCycloneDx(predicate: unknown): Sbom {
  const doc = unwrap(predicate);
  const version = str(doc.specVersion);
  if (doc.bomFormat !== 'CycloneDX' || version === undefined || !/^1\.\d+$/.test(version)) {
    throw new FormatError(
      'report format not understood: expected a CycloneDX 1.x JSON BOM (bomFormat "CycloneDX", specVersion "1.x")',
    );
  }
  const packages: SbomPackage[] = [];
  const walk = (list: unknown, depth: number): void => {
    if (depth > 32) throw new FormatError('CycloneDX BOM: components nest deeper than 32 levels');
    for (const entry of arr(list) ?? []) {
      const c = need(obj(entry), 'CycloneDX BOM: a component is not an object');
      packages.push(sbomPackage(str(c.name), str(c.version), str(c.purl)));
      walk(c.components, depth + 1);
    }
  };
  walk(doc.components, 0);
  const main = obj(obj(doc.metadata)?.component);
  if (main !== undefined) walk(main.components, 1);
  return { format: `CycloneDX-${version}`, packages };
}
