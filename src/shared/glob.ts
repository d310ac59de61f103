/**
 * The one glob compiler. Every glob compiles to an expression anchored at both ends (a glob names the
 * whole string, never a part of it: an unanchored identity would accept "evil/acme/widgets-fork"), and
 * every character that is not a wildcard is literal, regex metacharacters included. The dialects differ
 * only in what the options name:
 *
 * - `star: 'component'`: `*` stays within one `/`-separated path component (`docker.io/library/*`
 *   matches `docker.io/library/nginx`, not `docker.io/library/a/b`). `star: 'any'`: `*` matches any
 *   run of characters, `/` included (certificate identities, tags).
 * - `doubleStar` (with `star: 'component'`): `'path'` is the `<upstream host>/<repository>` grammar of
 *   policies and pull credentials — `**` is a whole path component and crosses components: alone it
 *   matches everything; `ghcr.io/acme/**` matches one or more trailing components (as in .gitignore,
 *   so not `ghcr.io/acme` itself); `a/**\/b` matches `a/b`, `a/x/b`; a leading `**\/` matches zero or
 *   more leading components. Such a glob is checked ({@link pathGlobProblem}) and an invalid one
 *   throws. `'any'`: `**` anywhere matches any run, `/` included (audit queries). Without it, `**` is
 *   two single stars.
 * - `question: true`: `?` matches one character (never `/` with `star: 'component'`); else literal.
 * - `ignoreCase`: for names whose case does not matter (host names; repositories are lowercase).
 */

export interface GlobOptions {
  /** What `*` may cross: one path component, or anything (`/` included). */
  star: 'component' | 'any';
  /** `**` with `star: 'component'`: the path grammar (whole components), or any run anywhere. */
  doubleStar?: 'path' | 'any';
  /** `?` matches one character; otherwise it is literal. */
  question?: boolean;
  ignoreCase?: boolean;
}

/**
 * The `<upstream host>/<repository>` dialect: policies' `match` and pull credentials' repositories name
 * the same things the same way.
 */
export const PATH_GLOB: GlobOptions = { star: 'component', doubleStar: 'path', ignoreCase: true };

const REGEX_META = /[\\^$.|?*+()[\]{}/]/g;
const ANY_CHAR = String.raw`[\s\S]`;
const COMPONENT_CHAR = '[^/]';

function literal(text: string): string {
  return text.replace(REGEX_META, '\\$&');
}

/** Why `glob` is not a usable `<upstream host>/<repository>` glob, or undefined when it is. */
export function pathGlobProblem(glob: string): string | undefined {
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

/** Wildcards within a run of text: `**` (when `doubleStarAny`), `*` and `?`, the rest literal. */
function runSource(text: string, star: string, question: string | undefined, doubleStarAny: boolean): string {
  let out = '';
  for (let i = 0; i < text.length; i++) {
    const c = text[i] ?? '';
    if (c === '*' && doubleStarAny && text[i + 1] === '*') {
      out += `${ANY_CHAR}*`;
      i += 1;
    } else if (c === '*') out += `${star}*`;
    else if (c === '?' && question !== undefined) out += question;
    else out += literal(c);
  }
  return out;
}

function pathSource(glob: string, question: string | undefined): string {
  const problem = pathGlobProblem(glob);
  if (problem !== undefined) throw new Error(`invalid policy glob "${glob}": ${problem}`);
  const parts = glob.split('/');
  let out = '';
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
    out += (needSeparator ? '/' : '') + runSource(part, COMPONENT_CHAR, question, false);
    needSeparator = true;
  });
  return out;
}

/** The regular expression source of `glob`, anchored (`^…$`). Throws on an invalid path glob. */
export function globSource(glob: string, options: GlobOptions): string {
  const component = options.star === 'component';
  const question = options.question === true ? (component ? COMPONENT_CHAR : ANY_CHAR) : undefined;
  if (component && options.doubleStar === 'path') {
    return glob === '**' ? `^${ANY_CHAR}*$` : `^${pathSource(glob, question)}$`;
  }
  const star = component ? COMPONENT_CHAR : ANY_CHAR;
  return `^${runSource(glob, star, question, component && options.doubleStar === 'any')}$`;
}

/** One compiled, anchored regular expression for `glob` (see the module comment for the options). */
export function globToRegExp(glob: string, options: GlobOptions): RegExp {
  return new RegExp(globSource(glob, options), options.ignoreCase === true ? 'i' : '');
}

/** One expression that matches when any of `globs` matches (never, for none); compiled once. */
export function anyGlobToRegExp(globs: readonly string[], options: GlobOptions): RegExp {
  if (globs.length === 0) return /(?!)/;
  return new RegExp(
    globs.map((g) => `(?:${globSource(g, options)})`).join('|'),
    options.ignoreCase === true ? 'i' : '',
  );
}
