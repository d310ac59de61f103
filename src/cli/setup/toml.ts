/**
 * TOML for the files node set-up reads and writes: containerd `hosts.toml` and `config.toml`,
 * containers/image `registries.conf`. Parsing is smol-toml (TOML 1.0, no dependencies, maintained):
 * a node's config.toml is written by hand, by distributions and by cloud images, so the whole
 * language must parse, not a subset. Errors carry the 1-based line.
 */
import { parse, TomlError as SmolTomlError } from 'smol-toml';

export type TomlValue = string | number | bigint | boolean | Date | TomlValue[] | TomlTable;
export interface TomlTable {
  [key: string]: TomlValue;
}

/** A syntax error, with the 1-based line where it was found. */
export class TomlError extends Error {
  override name = 'TomlError';
  readonly line: number;
  constructor(message: string, line: number, options?: ErrorOptions) {
    super(`line ${line}: ${message}`, options);
    this.line = line;
  }
}

export function isTable(v: TomlValue | undefined): v is TomlTable {
  return typeof v === 'object' && !Array.isArray(v) && !(v instanceof Date);
}

/** Parse a TOML document into plain objects. Throws {@link TomlError}. */
export function parseToml(text: string): TomlTable {
  try {
    return parse(text.startsWith('\uFEFF') ? text.slice(1) : text);
  } catch (error) {
    if (!(error instanceof SmolTomlError)) throw error;
    // smol-toml's message is "Invalid TOML document: <what>" followed by a code excerpt.
    const what = /^Invalid TOML document: ([^\n]*)/.exec(error.message)?.[1] ?? error.message.split('\n')[0];
    throw new TomlError(what ?? 'invalid TOML', error.line, { cause: error });
  }
}

/** A TOML basic string (JSON escapes are valid TOML escapes for what we write). */
export function tomlString(s: string): string {
  return JSON.stringify(s);
}
