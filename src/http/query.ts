import { isMediaType, isTag, RegistryError, truncate } from '../oci/index.ts';
import type { ErrorCode } from '../oci/index.ts';

/**
 * A query parameter the `/v2` API reads, and what makes a value of it acceptable. Each is read once
 * per request through {@link QueryString.single}: a parameter given twice (`?n=1&n=2`,
 * `?artifactType=a&artifactType=b`) or not of its grammar is refused, never "the first one" or
 * silently ignored — a cache or another proxy in front may read the other value, and a request the
 * proxy answers differently from what the client meant is a fail-open waiting to happen.
 */
export interface QueryParameter {
  readonly name: string;
  /** The OCI code of a refusal: the one for what the parameter names (a host, a tag, a media type…). */
  readonly code: ErrorCode;
  /** What a value must be, for the message. */
  readonly expected: string;
  readonly valid: (value: string) => boolean;
}

/** Largest `n` of a tag list page: more digits than any registry has tags is a malformed request. */
const MAX_PAGE_DIGITS = 9;

/** The query parameters the read API reads (distribution-spec "Listing Tags", "Listing Referrers"; containerd's `ns`). */
export const queryParameters = {
  // The upstream host containerd names; its grammar is checked by routing (it may be an alias).
  ns: { name: 'ns', code: 'NAME_INVALID', expected: 'one registry host', valid: () => true },
  n: {
    name: 'n',
    code: 'SIZE_INVALID',
    expected: `a page size (a decimal number of at most ${MAX_PAGE_DIGITS} digits)`,
    valid: (v) => v.length <= MAX_PAGE_DIGITS && /^[0-9]+$/.test(v),
  },
  last: { name: 'last', code: 'MANIFEST_INVALID', expected: 'one tag', valid: isTag },
  artifactType: {
    name: 'artifactType',
    code: 'MANIFEST_INVALID',
    expected: 'one media type (type/subtype)',
    valid: isMediaType,
  },
} as const satisfies Record<string, QueryParameter>;

/** The query string of a request, decoded once; values are read through {@link QueryString.single}. */
export class QueryString {
  readonly #values: ReadonlyMap<string, readonly string[]>;

  private constructor(values: ReadonlyMap<string, readonly string[]>) {
    this.#values = values;
  }

  /**
   * Parse the raw query (after `?`, still percent-encoded) as `application/x-www-form-urlencoded`.
   * Percent-encoding that does not decode (`%zz`, a lone `%`, an invalid UTF-8 sequence) is refused:
   * URLSearchParams would keep it as text, so one parser would read `%zz` and the next something else.
   */
  static parse(raw: string): QueryString {
    const values = new Map<string, string[]>();
    for (const pair of raw.split('&')) {
      if (pair === '') continue;
      const eq = pair.indexOf('=');
      const name = decodeComponent(eq < 0 ? pair : pair.slice(0, eq), raw);
      const value = eq < 0 ? '' : decodeComponent(pair.slice(eq + 1), raw);
      const list = values.get(name);
      if (list) list.push(value);
      else values.set(name, [value]);
    }
    return new QueryString(values);
  }

  /**
   * The one value of `param`, or undefined when it is absent or empty (`?artifactType=` asks for no
   * filter, as distribution reads it). Refused with the parameter's code when it is repeated or its
   * value is not of its grammar.
   */
  single(param: QueryParameter): string | undefined {
    const all = this.#values.get(param.name);
    if (all === undefined) return undefined;
    if (all.length > 1) {
      throw new RegistryError(
        param.code,
        `query parameter "${param.name}" is given ${all.length} times: it must be ${param.expected}`,
        { detail: { reason: 'query-parameter-repeated', parameter: param.name } },
      );
    }
    const value = all[0] ?? '';
    if (value === '') return undefined;
    if (!param.valid(value)) {
      throw new RegistryError(
        param.code,
        `query parameter "${param.name}" is "${truncate(value)}": it must be ${param.expected}`,
        { detail: { reason: 'query-parameter-invalid', parameter: param.name } },
      );
    }
    return value;
  }
}

function decodeComponent(text: string, raw: string): string {
  try {
    return decodeURIComponent(text.replaceAll('+', ' '));
  } catch {
    throw new RegistryError('NAME_INVALID', `query string "${truncate(raw)}" is not valid percent-encoding`, {
      detail: { reason: 'query-encoding-invalid' },
    });
  }
}
