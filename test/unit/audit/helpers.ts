import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sortAuditFiles } from '../../../src/audit/index.ts';
import type { AuditEvent, AuditRecord } from '../../../src/audit/index.ts';

/** A manifest event with defaults; override what the test is about. */
export function event(over: Partial<AuditEvent> = {}): AuditEvent {
  return {
    type: 'manifest',
    time: '2025-11-23T16:22:33.123Z',
    requestId: 'req-1',
    client: '10.0.0.1',
    userAgent: 'containerd/1.6',
    method: 'GET',
    upstream: 'docker.io',
    repository: 'library/nginx',
    reference: '1.27',
    tag: '1.27',
    digest: `sha256:${'a'.repeat(64)}`,
    mediaType: 'application/vnd.oci.image.index.v1+json',
    decision: 'allow',
    policy: 'default',
    reasons: [],
    signers: [],
    cache: 'hit',
    bytes: 1234,
    durationMs: 1.5,
    status: 200,
    ...over,
  };
}

export async function tempDir(prefix = 'pw-audit-'): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** Audit file names in chain order. */
export async function auditFiles(dir: string): Promise<string[]> {
  return sortAuditFiles(await readdir(dir)).map((f) => f.name);
}

/** Every complete line of every audit file, parsed, in chain order. */
export async function readRecords(dir: string): Promise<AuditRecord[]> {
  const out: AuditRecord[] = [];
  for (const name of await auditFiles(dir)) {
    const lines = (await readFile(join(dir, name), 'utf8')).split('\n');
    lines.pop();
    for (const l of lines) out.push(JSON.parse(l) as AuditRecord);
  }
  return out;
}
