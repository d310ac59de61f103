/**
 * Certificate identity matching. `@sigstore/verify` matches `subjectAlternativeName` with
 * `String.match`, an unanchored search: the policy "acme/widgets" would accept
 * "https://github.com/evil/acme/widgets-fork/…". Identities are therefore always compiled here into
 * anchored expressions and compared by us, never handed to the library as a bare string.
 */

import { globToRegExp } from '../shared/index.ts';
import type { GlobOptions } from '../shared/index.ts';

/** Identity globs: `*` matches any run of characters (including `/`), everything else is literal. */
export const IDENTITY_GLOB: GlobOptions = { star: 'any' };

/** A compiled identity glob ({@link IDENTITY_GLOB}): anchored, `*` any run, everything else literal. */
export function identityGlob(glob: string): RegExp {
  return globToRegExp(glob, IDENTITY_GLOB);
}

/** A user-written regular expression, anchored at both ends whatever it says itself. */
export function anchoredRegExp(source: string): RegExp {
  return new RegExp(`^(?:${source})$`, 's');
}

/** The identity matcher of a keyless attestor; `undefined` when it names no subject (issuer only). */
export function subjectMatcher(attestor: { subject?: string; subjectRegExp?: string }): RegExp | undefined {
  if (attestor.subjectRegExp !== undefined) return anchoredRegExp(attestor.subjectRegExp);
  if (attestor.subject !== undefined) return identityGlob(attestor.subject);
  return undefined;
}
