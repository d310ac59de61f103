import { readFile } from 'node:fs/promises';
import type { LoadedConfig } from '../config/index.ts';

/** The TLS key, certificate chain and client CA bundle of `server.tls`, as read at start and on every change. */
export async function readTlsMaterial(
  tls: NonNullable<LoadedConfig['server']['tls']>,
): Promise<{ key: Buffer; cert: Buffer; ca?: Buffer }> {
  return {
    key: await readFile(tls.keyFile),
    cert: await readFile(tls.certFile),
    ...(tls.clientCAFile === undefined ? {} : { ca: await readFile(tls.clientCAFile) }),
  };
}
