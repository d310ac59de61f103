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
 * The grammar is compiled by the one glob compiler (shared/glob.ts).
 */
import { anyGlobToRegExp, globToRegExp, PATH_GLOB, pathGlobProblem } from '../shared/index.ts';

/** Why `glob` is not a usable policy glob, or undefined when it is. */
export function globProblem(glob: string): string | undefined {
  return pathGlobProblem(glob);
}

/** One compiled regular expression for a policy glob. Throws on an invalid glob ({@link globProblem}). */
export function policyGlob(glob: string): RegExp {
  return globToRegExp(glob, PATH_GLOB);
}

/** A predicate over `<upstream>/<repository>` that is true when any of `globs` matches; compiled once. */
export function compileMatcher(globs: readonly string[]): (subject: string) => boolean {
  if (globs.length === 0) return () => false;
  const re = anyGlobToRegExp(globs, PATH_GLOB);
  return (subject) => re.test(subject);
}

/** The name policies match on: `<upstream host>/<repository>`. */
export function matchSubject(upstream: string, repository: string): string {
  return `${upstream}/${repository}`;
}
