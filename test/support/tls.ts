import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface TestCertificate {
  keyFile: string;
  certFile: string;
  key: Buffer;
  cert: Buffer;
}

/**
 * A throwaway self-signed certificate for 127.0.0.1 (P-256, 2 days), made with the real `openssl`:
 * its `certFile` doubles as the CA file (`caFile`) of a client that must trust it.
 */
export async function selfSignedCertificate(dir: string, name = 'server'): Promise<TestCertificate> {
  const keyFile = join(dir, `${name}.key`);
  const certFile = join(dir, `${name}.pem`);
  await run('openssl', [
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-keyout',
    keyFile,
    '-out',
    certFile,
    '-days',
    '2',
    '-subj',
    '/CN=127.0.0.1',
    '-addext',
    'subjectAltName=IP:127.0.0.1',
  ]);
  return { keyFile, certFile, key: await readFile(keyFile), cert: await readFile(certFile) };
}
