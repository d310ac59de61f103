/**
 * The CISA Known Exploited Vulnerabilities catalog from a local file (the JSON CISA publishes:
 * `{ catalogVersion, vulnerabilities: [{ cveID, ... }] }`), reloaded when the file changes. Nothing is
 * fetched: operators mirror the file (air-gapped sites included) and pullwarden watches it.
 *
 * A catalog that cannot be read is not an empty catalog: `problem` is set, and a gate that asks about
 * known exploits fails closed with that reason.
 */
import { createHash } from 'node:crypto';
import { readFileSync, unwatchFile, watchFile } from 'node:fs';
import type { KnownExploitedCatalog } from './predicates/types.ts';

export interface KevCatalogOptions {
  /** How often the file's mtime is polled (ms, default 5000). */
  intervalMs?: number;
  /** Told after a reload (or a failed one). */
  onReload?: (catalog: KevCatalog) => void;
}

/** Parse the CISA KEV JSON format into the set of CVE IDs it lists. Throws on another shape. */
export function parseKevCatalog(bytes: Buffer): { ids: Set<string>; catalogVersion: string } {
  let json: unknown;
  try {
    json = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw new Error('KEV catalog is not valid JSON');
  }
  const list = (json as { vulnerabilities?: unknown } | null)?.vulnerabilities;
  if (!Array.isArray(list))
    throw new Error('KEV catalog has no "vulnerabilities" list (CISA KEV JSON format)');
  const ids = new Set<string>();
  for (const v of list as unknown[]) {
    const id = (v as { cveID?: unknown } | null)?.cveID;
    if (typeof id === 'string') ids.add(id.toUpperCase());
  }
  const catalogVersion = (json as { catalogVersion?: unknown }).catalogVersion;
  return { ids, catalogVersion: typeof catalogVersion === 'string' ? catalogVersion : '' };
}

/** A KEV catalog file, watched. `close()` stops watching. */
export class KevCatalog implements KnownExploitedCatalog {
  readonly file: string;
  #ids = new Set<string>();
  #version = '';
  #problem: string | undefined;
  readonly #options: KevCatalogOptions;
  readonly #listener = (): void => {
    this.reload();
    this.#options.onReload?.(this);
  };

  constructor(file: string, options: KevCatalogOptions = {}) {
    this.file = file;
    this.#options = options;
    this.reload();
    watchFile(file, { interval: options.intervalMs ?? 5_000, persistent: false }, this.#listener);
  }

  get version(): string {
    return this.#version;
  }

  get problem(): string | undefined {
    return this.#problem;
  }

  /** Entries listed. */
  get size(): number {
    return this.#ids.size;
  }

  has(id: string): boolean {
    return this.#ids.has(id.toUpperCase());
  }

  /** Read the file again now (also done on change). A failed read keeps nothing: fail closed. */
  reload(): void {
    try {
      const bytes = readFileSync(this.file);
      const { ids } = parseKevCatalog(bytes);
      this.#ids = ids;
      this.#problem = undefined;
      this.#version = createHash('sha256').update(bytes).digest('hex');
    } catch (err) {
      this.#ids = new Set();
      this.#problem = `KEV catalog ${this.file}: ${err instanceof Error ? err.message : String(err)}`;
      this.#version = `error:${this.#problem}`;
    }
  }

  close(): void {
    unwatchFile(this.file, this.#listener);
  }
}
