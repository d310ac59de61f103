/**
 * Globs over `<upstream host>/<repository>`, the names policies match on.
 *
 * - `*` matches within one path component (never a `/`): `docker.io/library/*` matches
 *   `docker.io/library/nginx`, not `docker.io/library/a/b`.
 * - `**` is a whole path component and matches across components: alone it matches everything;
 *   `ghcr.io/acme/**` matches `ghcr.io/acme/app` and `ghcr.io/acme/team/app` (one or more components,
 *   as in .gitignore, so not the repository `ghcr.io/acme` itself); `a/**\/b` matches `a/b`, `a/x/b`,
 *   `a/x/y/b`; a leading `**\/` matches zero or more leading components.
 * - Everything else is literal, including the dots and the port of a host (`127.0.0.1:5000/acme/*`).
 *
 * Matching ignores case: repository names are lowercase by the OCI distribution spec and host names
 * are case-insensitive, so only the host can differ in case and it should not change the decision.
 */

const REGEX_META = /[\\^$.|?+()[\]{}]/g;

/** Why `glob` is not a usable policy glob, or undefined when it is. */
export function globProblem(glob: string): string | undefined {
  if (glob === '**') return undefined;
  if (glob === '') return 'expected a glob such as "ghcr.io/acme/**" or "docker.io/library/*"';
  if (/\s/.test(glob)) return 'expected a glob without whitespace';
  if (glob.startsWith('/') || glob.endsWith('/') || glob.includes('//')) {
    return 'expected a glob without empty path components (no leading, trailing or double "/")';
  }
  const parts = glob.split('/');
  if (parts.length < 2) {
    return 'expected "<upstream host>/<repository glob>", e.g. "ghcr.io/acme/**" (or "**" for everything)';
  }
  for (const part of parts) {
    if (part !== '**' && part.includes('**')) {
      return `"**" must be a whole path component ("a/**/b", "a/**"), got "${part}"`;
    }
  }
  return undefined;
}

function componentSource(part: string): string {
  return part
    .split('*')
    .map((literal) => literal.replace(REGEX_META, '\\$&'))
    .join('[^/]*');
}

/** The regular expression source (anchored) for a glob; see the module comment for the grammar. */
export function globSource(glob: string): string {
  const problem = globProblem(glob);
  if (problem !== undefined) throw new Error(`invalid policy glob "${glob}": ${problem}`);
  const parts = glob.split('/');
  if (parts.length === 1) return '^.*$'; // "**"
  let out = '^';
  let needSeparator = false;
  parts.forEach((part, i) => {
    if (part === '**') {
      if (i === 0) {
        out += '(?:[^/]+/)*'; // zero or more leading components, the next one follows directly
        needSeparator = false;
      } else if (i === parts.length - 1) {
        out += '(?:/[^/]+)+'; // one or more trailing components
      } else {
        out += '(?:/[^/]+)*'; // zero or more components in between
        needSeparator = true;
      }
      return;
    }
    out += (needSeparator ? '/' : '') + componentSource(part);
    needSeparator = true;
  });
  return `${out}$`;
}

/** One compiled regular expression for a glob. Throws on an invalid glob ({@link globProblem}). */
export function globToRegExp(glob: string): RegExp {
  return new RegExp(globSource(glob), 'i');
}

/** A predicate over `<upstream>/<repository>` that is true when any of `globs` matches; compiled once. */
export function compileMatcher(globs: readonly string[]): (subject: string) => boolean {
  if (globs.length === 0) return () => false;
  const re = new RegExp(globs.map((g) => `(?:${globSource(g)})`).join('|'), 'i');
  return (subject) => re.test(subject);
}

/** The name policies match on: `<upstream host>/<repository>`. */
export function matchSubject(upstream: string, repository: string): string {
  return `${upstream}/${repository}`;
}
