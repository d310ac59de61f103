import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { stringify } from 'yaml';
import { startServer } from '../../src/app.ts';
import type { ServerHandle } from '../../src/app.ts';
import { loadConfig } from '../../src/config/index.ts';
import type { LoadedConfig } from '../../src/config/index.ts';

export interface TestProxy {
  /** `http://127.0.0.1:<port>` */
  url: string;
  /** `127.0.0.1:<port>` */
  host: string;
  handle: ServerHandle;
  config: LoadedConfig;
  /** Storage directory (kept across `restart()`). */
  dir: string;
  /** Stop and start again on the same storage and metadata (a process restart). */
  restart(): Promise<TestProxy>;
  /** Stop the server; with `{ keepData: true }` the storage stays for another proxy. */
  close(options?: { keepData?: boolean }): Promise<void>;
}

/**
 * Start the real app on port 0 from a real YAML config file (written to a temp dir and loaded with
 * `loadConfig`, as `pullwarden serve --config` does). `config` is merged over a minimal base whose
 * storage lives in the temp dir.
 */
export async function startTestProxy(config: Record<string, unknown>, dir?: string): Promise<TestProxy> {
  const base = dir ?? (await mkdtemp(join(tmpdir(), 'pw-proxy-')));
  const file = join(base, 'pullwarden.yaml');
  const full = {
    listen: '127.0.0.1:0',
    storage: { dir: join(base, 'data') },
    log: { level: 'silent' },
    ...config,
  };
  await writeFile(file, stringify(full));
  const loaded = await loadConfig(file, {});
  const logger = pino({ level: process.env.PW_TEST_LOG ?? 'silent' });
  const handle = await startServer(loaded, { logger, defaultMetrics: false });
  const url = handle.address;
  const proxy: TestProxy = {
    url,
    host: url.replace(/^https?:\/\//, ''),
    handle,
    config: loaded,
    dir: base,
    async restart() {
      await handle.close();
      return startTestProxy(config, base);
    },
    async close(options = {}) {
      await handle.close();
      if (!options.keepData) await rm(base, { recursive: true, force: true });
    },
  };
  return proxy;
}
