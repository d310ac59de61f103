/**
 * OpenVEX documents: v0.2.0 (`@context: https://openvex.dev/ns/v0.2.0`; `vulnerability: { name,
 * aliases }`, `products: [{ "@id", subcomponents }]`) and the older v0.0.1 shape
 * (`@context: https://openvex.dev/ns`; `vulnerability` and `products` are plain strings).
 */
import type { VexDocument, VexStatement, VexStatus } from './types.ts';
import { arr, FormatError, need, obj, str, time } from './json.ts';

export const OPENVEX_PREDICATE_TYPES = ['https://openvex.dev/ns/v0.2.0', 'https://openvex.dev/ns'] as const;

const STATUSES = new Set<VexStatus>(['not_affected', 'affected', 'fixed', 'under_investigation']);

function products(v: unknown): string[] {
  return (arr(v) ?? []).flatMap((p) => {
    if (typeof p === 'string') return [p];
    const o = obj(p);
    const id = str(o?.['@id']);
    const subs = (arr(o?.subcomponents) ?? []).flatMap((s) => {
      const sid = typeof s === 'string' ? s : str(obj(s)?.['@id']);
      return sid === undefined ? [] : [sid];
    });
    return [...(id === undefined ? [] : [id]), ...subs];
  });
}

export function parseOpenVex(predicate: unknown): VexDocument {
  const doc = need(obj(predicate), 'OpenVEX predicate is not a JSON object');
  const context = str(doc['@context']) ?? '';
  if (!context.startsWith('https://openvex.dev/ns')) {
    throw new FormatError(
      `report format not understood: OpenVEX @context ${JSON.stringify(doc['@context'])}`,
    );
  }
  const docTime = time(doc.timestamp);
  const statements = (arr(doc.statements) ?? []).map((entry): VexStatement => {
    const s = need(obj(entry), 'OpenVEX: a statement is not an object');
    const vuln = s.vulnerability;
    const name = typeof vuln === 'string' ? vuln : (str(obj(vuln)?.name) ?? str(obj(vuln)?.['@id']));
    const status = str(s.status) as VexStatus | undefined;
    if (name === undefined || status === undefined || !STATUSES.has(status)) {
      throw new FormatError(
        'report format not understood: OpenVEX statement lacks vulnerability or a known status',
      );
    }
    const aliases = (arr(obj(vuln)?.aliases) ?? []).flatMap((a) => (typeof a === 'string' ? [a] : []));
    return {
      vulnerability: name,
      aliases,
      products: products(s.products),
      status,
      timestamp: time(s.timestamp) ?? docTime,
    };
  });
  return { format: context === 'https://openvex.dev/ns' ? 'openvex-v0.0.1' : 'openvex-v0.2.0', statements };
}
