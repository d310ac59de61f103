import { RegistryError } from '../oci/index.ts';
import type { ByteRange } from '../shared/index.ts';

/**
 * Parse a `Range` header against a known size (RFC 9110 §14). Returns undefined when the whole body
 * should be sent (no header, or a form we do not serve such as multiple ranges, which a server may
 * ignore), or throws RANGE_INVALID for an unsatisfiable range.
 */
export function parseRange(header: string | undefined, size: number): ByteRange | undefined {
  if (header === undefined) return undefined;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m) return undefined;
  const [, first = '', last = ''] = m;
  if (first === '' && last === '') return undefined;
  let start: number;
  let end: number;
  if (first === '') {
    const suffix = Number(last);
    if (suffix === 0) throw unsatisfiable(size);
    start = Math.max(0, size - suffix);
    end = size - 1;
  } else {
    start = Number(first);
    end = last === '' ? size - 1 : Math.min(Number(last), size - 1);
    if (last !== '' && Number(last) < start) return undefined;
  }
  if (start >= size || size === 0) throw unsatisfiable(size);
  return { start, end };
}

function unsatisfiable(size: number): RegistryError {
  return new RegistryError('RANGE_INVALID', `requested range not satisfiable (size ${size})`, {
    detail: { size },
  });
}
