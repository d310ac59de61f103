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
    return { name: str(p.name) ?? '', version: str(p.versionInfo), purl: str(purl?.referenceLocator) };
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
      packages.push({ name: str(c.name) ?? '', version: str(c.version), purl: str(c.purl) });
      walk(c.components, depth + 1);
    }
  };
  walk(doc.components, 0);
  const main = obj(obj(doc.metadata)?.component);
  if (main !== undefined) walk(main.components, 1);
  return { format: `CycloneDX-${version}`, packages };
}
