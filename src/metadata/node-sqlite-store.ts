import { EventEmitter } from 'node:events';
import { DatabaseSync } from 'node:sqlite';
import type { StatementSync } from 'node:sqlite';
import type { KeyvStoreAdapter, StoredData } from 'keyv';

export interface NodeSqliteStoreOptions {
  /** Database file, or ":memory:". The directory must exist. */
  path: string;
  /** Table name (an SQL identifier). Default "keyv". */
  table?: string;
  /** How long a writer waits for another connection's lock before failing (SQLITE_BUSY). Default 5000. */
  busyTimeoutMs?: number;
  /** Expired rows are deleted at most this often, on a write. Default 60000. */
  purgeIntervalMs?: number;
}

/** What keyv reads from `store.opts`: `dialect` and `url` make `Keyv#iterator` available. */
export interface NodeSqliteStoreOpts {
  dialect: 'sqlite';
  url: string;
  table: string;
  busyTimeoutMs: number;
  purgeIntervalMs: number;
}

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** SQLite allows 32766 bound parameters; stay far below for IN (…) lists. */
const CHUNK = 500;
const ITERATE_PAGE = 100;

/**
 * A keyv storage adapter on Node's built-in `node:sqlite` (no native addon to compile).
 *
 * Keyv hands adapters keys that already carry its namespace (`<namespace>:<key>`) and values it has
 * already serialized (a JSON string with `expires` inside). The adapter also stores the expiry in its
 * own column so that expired rows are invisible to `get`/`has` even for readers that do not parse
 * the value, and so that they can be purged with an index instead of a table scan.
 *
 * One `DatabaseSync` per instance. WAL mode lets several connections (other instances, other
 * processes on the same host) read while one writes; `busy_timeout` makes a writer wait for a lock
 * instead of failing at once. Calls are synchronous underneath; the async methods turn SQLite
 * errors into rejections and never swallow them.
 */
export class NodeSqliteStore extends EventEmitter implements KeyvStoreAdapter {
  readonly opts: NodeSqliteStoreOpts;
  /** Set by Keyv; scopes `clear()` and `iterator()`. */
  namespace?: string | undefined;

  readonly #db: DatabaseSync;
  readonly #get: StatementSync;
  readonly #has: StatementSync;
  readonly #set: StatementSync;
  readonly #delete: StatementSync;
  readonly #deleteAll: StatementSync;
  readonly #deleteRange: StatementSync;
  readonly #purge: StatementSync;
  readonly #page: StatementSync;
  readonly #pageRange: StatementSync;
  #lastPurge = 0;

  constructor(options: NodeSqliteStoreOptions) {
    super();
    const table = options.table ?? 'keyv';
    if (!IDENTIFIER.test(table)) throw new TypeError(`NodeSqliteStore: invalid table name "${table}"`);
    this.opts = {
      dialect: 'sqlite',
      url: `sqlite://${options.path}`,
      table,
      busyTimeoutMs: options.busyTimeoutMs ?? 5000,
      purgeIntervalMs: options.purgeIntervalMs ?? 60_000,
    };
    this.#db = new DatabaseSync(options.path, { timeout: this.opts.busyTimeoutMs });
    try {
      this.#db.exec(`PRAGMA busy_timeout = ${Math.trunc(this.opts.busyTimeoutMs)}`);
      this.#db.exec('PRAGMA journal_mode = WAL');
      // NORMAL is safe with WAL (no corruption on power loss; at worst the last commits roll back)
      // and avoids an fsync per write.
      this.#db.exec('PRAGMA synchronous = NORMAL');
      this.#db.exec(
        `CREATE TABLE IF NOT EXISTS ${table} (key TEXT PRIMARY KEY, value TEXT NOT NULL, expires INTEGER)`,
      );
      this.#db.exec(
        `CREATE INDEX IF NOT EXISTS ${table}_expires ON ${table} (expires) WHERE expires IS NOT NULL`,
      );
      const live = '(expires IS NULL OR expires > ?)';
      this.#get = this.#db.prepare(`SELECT value FROM ${table} WHERE key = ? AND ${live}`);
      this.#has = this.#db.prepare(`SELECT 1 AS found FROM ${table} WHERE key = ? AND ${live}`);
      this.#set = this.#db.prepare(
        `INSERT INTO ${table} (key, value, expires) VALUES (?, ?, ?)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires = excluded.expires`,
      );
      this.#delete = this.#db.prepare(`DELETE FROM ${table} WHERE key = ?`);
      this.#deleteAll = this.#db.prepare(`DELETE FROM ${table}`);
      // A namespace is a key range: every key with prefix "ns:" sorts in ["ns:", "ns;") under the
      // default BINARY collation (';' is ':' + 1). Unlike LIKE, this is exact (LIKE is
      // case-insensitive and treats '%'/'_' as wildcards) and it uses the primary key index.
      this.#deleteRange = this.#db.prepare(`DELETE FROM ${table} WHERE key >= ? AND key < ?`);
      this.#purge = this.#db.prepare(`DELETE FROM ${table} WHERE expires IS NOT NULL AND expires <= ?`);
      this.#page = this.#db.prepare(
        `SELECT key, value FROM ${table} WHERE key > ? AND ${live} ORDER BY key LIMIT ${ITERATE_PAGE}`,
      );
      this.#pageRange = this.#db.prepare(
        `SELECT key, value FROM ${table} WHERE key > ? AND key >= ? AND key < ? AND ${live} ORDER BY key LIMIT ${ITERATE_PAGE}`,
      );
      this.purgeExpired();
    } catch (err) {
      this.#db.close();
      throw err;
    }
  }

  get<Value>(key: string): Promise<StoredData<Value> | undefined> {
    return settle(() => {
      const row = this.#get.get(key, Date.now());
      return row === undefined ? undefined : (textOf(row, 'value') as StoredData<Value>);
    });
  }

  getMany<Value>(keys: string[]): Promise<Array<StoredData<Value | undefined>>> {
    return settle(() => {
      const found = new Map<string, string>();
      const now = Date.now();
      for (let i = 0; i < keys.length; i += CHUNK) {
        const chunk = keys.slice(i, i + CHUNK);
        const rows = this.#db
          .prepare(
            `SELECT key, value FROM ${this.opts.table}
             WHERE key IN (${chunk.map(() => '?').join(', ')}) AND (expires IS NULL OR expires > ?)`,
          )
          .all(...chunk, now);
        for (const row of rows) found.set(textOf(row, 'key'), textOf(row, 'value'));
      }
      return keys.map((key) => found.get(key) as StoredData<Value | undefined>);
    });
  }

  has(key: string): Promise<boolean> {
    return settle(() => this.#has.get(key, Date.now()) !== undefined);
  }

  hasMany(keys: string[]): Promise<boolean[]> {
    return settle(() => {
      const now = Date.now();
      return keys.map((key) => this.#has.get(key, now) !== undefined);
    });
  }

  /** `ttl` in milliseconds; absent or 0 means no expiry (keyv passes `undefined` for "forever"). */
  set(key: string, value: unknown, ttl?: number): Promise<boolean> {
    return settle(() => {
      this.#write(key, value, ttl, Date.now());
      this.#maybePurge();
      return true;
    });
  }

  setMany(entries: Array<{ key: string; value: unknown; ttl?: number }>): Promise<void> {
    return settle(() => {
      const now = Date.now();
      this.#transaction(() => {
        for (const { key, value, ttl } of entries) this.#write(key, value, ttl, now);
      });
      this.#maybePurge();
    });
  }

  delete(key: string): Promise<boolean> {
    return settle(() => Number(this.#delete.run(key).changes) > 0);
  }

  /** True when at least one key existed (as @keyv/redis does). */
  deleteMany(keys: string[]): Promise<boolean> {
    return settle(() => {
      let deleted = 0;
      this.#transaction(() => {
        for (const key of keys) deleted += Number(this.#delete.run(key).changes);
      });
      return deleted > 0;
    });
  }

  /** Deletes this namespace's keys, or every key when no namespace is set. */
  clear(): Promise<void> {
    return settle(() => {
      if (this.namespace === undefined || this.namespace === '') this.#deleteAll.run();
      else this.#deleteRange.run(`${this.namespace}:`, `${this.namespace};`);
    });
  }

  /** Live entries as [key, serialized value], in key order; keyv deserializes and unprefixes them. */
  // eslint-disable-next-line @typescript-eslint/require-await -- keyv's contract is an async generator; node:sqlite reads are synchronous
  async *iterator<Value>(
    namespace?: string,
  ): AsyncGenerator<Array<string | Awaited<Value> | undefined>, void> {
    let after = '';
    for (;;) {
      const now = Date.now();
      const rows =
        namespace === undefined || namespace === ''
          ? this.#page.all(after, now)
          : this.#pageRange.all(after, `${namespace}:`, `${namespace};`, now);
      for (const row of rows) {
        after = textOf(row, 'key');
        yield [after, textOf(row, 'value')];
      }
      if (rows.length < ITERATE_PAGE) return;
    }
  }

  /** Deletes expired rows now; returns how many. */
  purgeExpired(): number {
    this.#lastPurge = Date.now();
    return Number(this.#purge.run(this.#lastPurge).changes);
  }

  /** A real statement against the database, for health checks. */
  ping(): Promise<void> {
    return settle(() => {
      this.#db.prepare('SELECT 1').get();
    });
  }

  disconnect(): Promise<void> {
    return settle(() => {
      if (this.#db.isOpen) this.#db.close();
    });
  }

  #write(key: string, value: unknown, ttl: number | undefined, now: number): void {
    if (typeof value !== 'string') {
      // Keyv serializes before it calls the adapter; a non-string means serialization was disabled.
      throw new TypeError('NodeSqliteStore stores serialized (string) values only');
    }
    const expires = typeof ttl === 'number' && ttl > 0 ? now + ttl : null;
    this.#set.run(key, value, expires);
  }

  #maybePurge(): void {
    if (Date.now() - this.#lastPurge >= this.opts.purgeIntervalMs) this.purgeExpired();
  }

  #transaction(work: () => void): void {
    // BEGIN IMMEDIATE takes the write lock up front, so busy_timeout applies to the whole batch
    // instead of failing on a lock upgrade halfway through.
    this.#db.exec('BEGIN IMMEDIATE');
    try {
      work();
      this.#db.exec('COMMIT');
    } catch (err) {
      if (this.#db.isTransaction) this.#db.exec('ROLLBACK');
      throw err;
    }
  }
}

/** Runs synchronous SQLite work and reports its outcome as a promise (a throw becomes a rejection). */
function settle<T>(work: () => T): Promise<T> {
  try {
    return Promise.resolve(work());
  } catch (err) {
    return Promise.reject(err instanceof Error ? err : new Error(String(err)));
  }
}

function textOf(row: Record<string, unknown>, column: string): string {
  const value = row[column];
  if (typeof value !== 'string') throw new TypeError(`NodeSqliteStore: column ${column} is not text`);
  return value;
}
