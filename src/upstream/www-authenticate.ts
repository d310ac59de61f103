/** One challenge from a `WWW-Authenticate` header (RFC 9110 §11.6.1), scheme lower-cased. */
export interface AuthChallenge {
  scheme: string;
  /** Auth parameters with lower-cased names, quoted values unescaped. */
  params: Record<string, string>;
}

const TOKEN = /[!#$%&'*+.^_`|~0-9A-Za-z-]+/y;
const SPACE = /[ \t]*/y;

function match(re: RegExp, input: string, at: number): string | undefined {
  re.lastIndex = at;
  const m = re.exec(input);
  return m ? m[0] : undefined;
}

/**
 * Parse every challenge in one or more `WWW-Authenticate` values, e.g.
 * `Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull"`.
 *
 * Registries send exactly the RFC 9110 grammar (`scheme param=value, param="quoted"`), and several
 * challenges may share one header value separated by commas, so a split on `,` is not enough: a quoted
 * scope such as `repository:a:pull,push` contains one. Malformed input yields the challenges parsed
 * before it rather than an error, because a wrong header must not turn into a crash.
 */
export function parseWwwAuthenticate(header: string | string[] | undefined): AuthChallenge[] {
  if (header === undefined) return [];
  const values = Array.isArray(header) ? header : [header];
  const out: AuthChallenge[] = [];
  for (const value of values) parseOne(value, out);
  return out;
}

function parseOne(input: string, out: AuthChallenge[]): void {
  let i = 0;
  let current: AuthChallenge | undefined;
  const skip = (): void => {
    i += match(SPACE, input, i)?.length ?? 0;
  };
  while (i < input.length) {
    skip();
    if (input[i] === ',') {
      i++;
      continue;
    }
    const token = match(TOKEN, input, i);
    if (token === undefined) return;
    let j = i + token.length;
    j += match(SPACE, input, j)?.length ?? 0;
    if (input[j] === '=' && current !== undefined) {
      // An auth-param of the current challenge.
      j++;
      j += match(SPACE, input, j)?.length ?? 0;
      let value: string;
      if (input[j] === '"') {
        let k = j + 1;
        value = '';
        while (k < input.length && input[k] !== '"') {
          if (input[k] === '\\' && k + 1 < input.length) k++;
          value += input.charAt(k);
          k++;
        }
        if (k >= input.length) return;
        j = k + 1;
      } else {
        const bare = match(TOKEN, input, j);
        if (bare === undefined) return;
        value = bare;
        j += bare.length;
      }
      current.params[token.toLowerCase()] = value;
      i = j;
    } else {
      // A new challenge: `scheme` followed by params (or a token68, which registries do not use).
      current = { scheme: token.toLowerCase(), params: {} };
      out.push(current);
      i = i + token.length;
    }
  }
}
