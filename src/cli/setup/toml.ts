/**
 * A small TOML reader for the files node set-up deals with (containerd `hosts.toml`,
 * `registries.conf`): tables `[a."b".c]`, arrays of tables `[[a]]`, dotted and quoted keys, basic
 * and literal strings (single- and multi-line), integers, floats, booleans, arrays (nested,
 * multi-line, trailing comma) and inline tables. Dates are not supported. No dependency is worth
 * adding for a config check; anything outside this subset is reported with its line.
 */

export type TomlValue = string | number | boolean | TomlValue[] | TomlTable;
export interface TomlTable {
  [key: string]: TomlValue;
}

/** A syntax error, with the 1-based line where it was found. */
export class TomlError extends Error {
  override name = 'TomlError';
  readonly line: number;
  constructor(message: string, line: number) {
    super(`line ${line}: ${message}`);
    this.line = line;
  }
}

const BARE_KEY = /[A-Za-z0-9_-]/;
const NUMBER =
  /^[+-]?(?:0x[0-9a-fA-F_]+|0o[0-7_]+|0b[01_]+|[0-9_]+(?:\.[0-9_]+)?(?:[eE][+-]?[0-9_]+)?|inf|nan)/;

export function isTable(v: TomlValue | undefined): v is TomlTable {
  return typeof v === 'object' && !Array.isArray(v);
}

/** Parse a TOML document into plain objects. Throws {@link TomlError}. */
export function parseToml(text: string): TomlTable {
  return new Parser(text).document();
}

class Parser {
  #pos = 0;
  readonly #text: string;

  constructor(text: string) {
    this.#text = text.startsWith('\uFEFF') ? text.slice(1) : text;
  }

  #line(): number {
    let n = 1;
    for (let i = 0; i < this.#pos && i < this.#text.length; i++) if (this.#text[i] === '\n') n++;
    return n;
  }

  #fail(message: string): never {
    throw new TomlError(message, this.#line());
  }

  #peek(offset = 0): string {
    return this.#text[this.#pos + offset] ?? '';
  }

  #eof(): boolean {
    return this.#pos >= this.#text.length;
  }

  /** Spaces and tabs only. */
  #blanks(): void {
    while (this.#peek() === ' ' || this.#peek() === '\t') this.#pos++;
  }

  #comment(): void {
    if (this.#peek() !== '#') return;
    while (!this.#eof() && this.#peek() !== '\n') this.#pos++;
  }

  /** Blanks, comments and newlines (inside arrays and between statements). */
  #space(): void {
    for (;;) {
      this.#blanks();
      this.#comment();
      if (this.#peek() === '\n') this.#pos++;
      else if (this.#peek() === '\r' && this.#peek(1) === '\n') this.#pos += 2;
      else return;
    }
  }

  #endOfLine(): void {
    this.#blanks();
    this.#comment();
    if (this.#eof()) return;
    if (this.#peek() === '\n') this.#pos++;
    else if (this.#peek() === '\r' && this.#peek(1) === '\n') this.#pos += 2;
    else this.#fail(`unexpected "${this.#peek()}" after a value (one key = value per line)`);
  }

  document(): TomlTable {
    const root: TomlTable = {};
    let current = root;
    const defined = new Set<string>();
    for (;;) {
      this.#space();
      if (this.#eof()) return root;
      if (this.#peek() === '[') {
        const array = this.#peek(1) === '[';
        this.#pos += array ? 2 : 1;
        this.#blanks();
        const path = this.#key();
        this.#blanks();
        if (this.#peek() !== ']' || (array && this.#peek(1) !== ']'))
          this.#fail(`expected "${array ? ']]' : ']'}"`);
        this.#pos += array ? 2 : 1;
        this.#endOfLine();
        if (array) {
          const parent = this.#table(root, path.slice(0, -1));
          const last = path.at(-1) ?? '';
          const list = parent[last] ?? [];
          if (!Array.isArray(list)) this.#fail(`"${path.join('.')}" is not an array of tables`);
          current = {};
          list.push(current);
          parent[last] = list;
        } else {
          const id = JSON.stringify(path);
          if (defined.has(id)) this.#fail(`table [${path.join('.')}] defined twice`);
          defined.add(id);
          current = this.#table(root, path);
        }
        continue;
      }
      const path = this.#key();
      this.#blanks();
      if (this.#peek() !== '=') this.#fail(`expected "=" after key "${path.join('.')}"`);
      this.#pos++;
      this.#blanks();
      const value = this.#value();
      this.#assign(current, path, value);
      this.#endOfLine();
    }
  }

  /** The table at `path` below `base`, created as needed (the last element of an array of tables). */
  #table(base: TomlTable, path: readonly string[]): TomlTable {
    let t = base;
    for (const part of path) {
      const next = t[part];
      if (next === undefined) {
        const created: TomlTable = {};
        t[part] = created;
        t = created;
      } else if (isTable(next)) {
        t = next;
      } else if (Array.isArray(next) && isTable(next[next.length - 1])) {
        t = next[next.length - 1] as TomlTable;
      } else {
        this.#fail(`"${part}" is already a value, not a table`);
      }
    }
    return t;
  }

  #assign(table: TomlTable, path: readonly string[], value: TomlValue): void {
    const parent = this.#table(table, path.slice(0, -1));
    const last = path.at(-1) ?? '';
    if (last in parent) this.#fail(`key "${path.join('.')}" defined twice`);
    parent[last] = value;
  }

  /** A dotted key: `a`, `"a.b"`, `host."http://x".header`. */
  #key(): string[] {
    const parts: string[] = [];
    for (;;) {
      const c = this.#peek();
      if (c === '"') parts.push(this.#basicString());
      else if (c === "'") parts.push(this.#literalString());
      else {
        const start = this.#pos;
        while (BARE_KEY.test(this.#peek()) && !this.#eof()) this.#pos++;
        if (this.#pos === start)
          this.#fail(c === '' ? 'expected a key' : `unexpected "${c}" where a key was expected`);
        parts.push(this.#text.slice(start, this.#pos));
      }
      this.#blanks();
      if (this.#peek() !== '.') return parts;
      this.#pos++;
      this.#blanks();
    }
  }

  #value(): TomlValue {
    const c = this.#peek();
    if (c === '"') return this.#basicString();
    if (c === "'") return this.#literalString();
    if (c === '[') return this.#array();
    if (c === '{') return this.#inlineTable();
    const rest = this.#text.slice(this.#pos, this.#pos + 5);
    if (rest.startsWith('true')) {
      this.#pos += 4;
      return true;
    }
    if (rest.startsWith('false')) {
      this.#pos += 5;
      return false;
    }
    const m = NUMBER.exec(this.#text.slice(this.#pos, this.#pos + 64));
    if (m !== null) {
      this.#pos += m[0].length;
      const n = Number(m[0].replace(/_/g, ''));
      if (Number.isNaN(n) && !m[0].endsWith('nan')) this.#fail(`invalid number "${m[0]}"`);
      return n;
    }
    this.#fail(c === '' || c === '\n' ? 'expected a value' : `unexpected "${c}" where a value was expected`);
  }

  #array(): TomlValue[] {
    this.#pos++; // [
    const out: TomlValue[] = [];
    for (;;) {
      this.#space();
      if (this.#peek() === ']') {
        this.#pos++;
        return out;
      }
      out.push(this.#value());
      this.#space();
      if (this.#peek() === ',') this.#pos++;
      else if (this.#peek() !== ']') this.#fail('expected "," or "]" in an array');
    }
  }

  #inlineTable(): TomlTable {
    this.#pos++; // {
    const out: TomlTable = {};
    this.#blanks();
    if (this.#peek() === '}') {
      this.#pos++;
      return out;
    }
    for (;;) {
      this.#blanks();
      const path = this.#key();
      this.#blanks();
      if (this.#peek() !== '=') this.#fail(`expected "=" after key "${path.join('.')}"`);
      this.#pos++;
      this.#blanks();
      this.#assign(out, path, this.#value());
      this.#blanks();
      if (this.#peek() === '}') {
        this.#pos++;
        return out;
      }
      if (this.#peek() !== ',') this.#fail('expected "," or "}" in an inline table');
      this.#pos++;
    }
  }

  #basicString(): string {
    const multi = this.#text.startsWith('"""', this.#pos);
    this.#pos += multi ? 3 : 1;
    if (multi && this.#peek() === '\n') this.#pos++;
    else if (multi && this.#peek() === '\r' && this.#peek(1) === '\n') this.#pos += 2;
    let out = '';
    for (;;) {
      if (this.#eof()) this.#fail('unterminated string');
      const c = this.#peek();
      if (multi ? this.#text.startsWith('"""', this.#pos) : c === '"') {
        this.#pos += multi ? 3 : 1;
        return out;
      }
      if (c === '\n' && !multi) this.#fail('newline in a single-line string');
      if (c !== '\\') {
        out += c;
        this.#pos++;
        continue;
      }
      const e = this.#peek(1);
      this.#pos += 2;
      const simple: Record<string, string> = {
        b: '\b',
        t: '\t',
        n: '\n',
        f: '\f',
        r: '\r',
        '"': '"',
        '\\': '\\',
      };
      const escaped = simple[e];
      if (escaped !== undefined) out += escaped;
      else if (e === 'u' || e === 'U') {
        const len = e === 'u' ? 4 : 8;
        const hex = this.#text.slice(this.#pos, this.#pos + len);
        if (!/^[0-9a-fA-F]+$/.test(hex) || hex.length !== len) this.#fail(`invalid escape "\\${e}${hex}"`);
        out += String.fromCodePoint(parseInt(hex, 16));
        this.#pos += len;
      } else if (multi && (e === '\n' || e === ' ' || e === '\t' || e === '\r')) {
        // Line-ending backslash: trim the newline and the whitespace after it.
        this.#pos--;
        while (/[\s]/.test(this.#peek()) && !this.#eof()) this.#pos++;
      } else this.#fail(`invalid escape "\\${e}"`);
    }
  }

  #literalString(): string {
    const multi = this.#text.startsWith("'''", this.#pos);
    this.#pos += multi ? 3 : 1;
    if (multi && this.#peek() === '\n') this.#pos++;
    const end = this.#text.indexOf(multi ? "'''" : "'", this.#pos);
    if (end === -1) this.#fail('unterminated string');
    const s = this.#text.slice(this.#pos, end);
    if (!multi && s.includes('\n')) this.#fail('newline in a single-line string');
    this.#pos = end + (multi ? 3 : 1);
    return s;
  }
}

/** A TOML basic string (JSON escapes are valid TOML escapes for what we write). */
export function tomlString(s: string): string {
  return JSON.stringify(s);
}
