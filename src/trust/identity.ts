/**
 * Certificate identity matching. `@sigstore/verify` matches `subjectAlternativeName` with
 * `String.match`, an unanchored search: the policy "acme/widgets" would accept
 * "https://github.com/evil/acme/widgets-fork/…". Identities are therefore always compiled here into
 * anchored expressions and compared by us, never handed to the library as a bare string.
 */

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}

/** A glob where `*` matches any run of characters (including `/`) and everything else is literal. */
export function globToRegExp(glob: string): RegExp {
  return new RegExp(`^${glob.split('*').map(escapeRegExp).join('.*')}$`, 's');
}

/** A user-written regular expression, anchored at both ends whatever it says itself. */
export function anchoredRegExp(source: string): RegExp {
  return new RegExp(`^(?:${source})$`, 's');
}

/** The identity matcher of a keyless attestor; `undefined` when it names no subject (issuer only). */
export function subjectMatcher(attestor: { subject?: string; subjectRegExp?: string }): RegExp | undefined {
  if (attestor.subjectRegExp !== undefined) return anchoredRegExp(attestor.subjectRegExp);
  if (attestor.subject !== undefined) return globToRegExp(attestor.subject);
  return undefined;
}
