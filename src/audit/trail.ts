/**
 * A trail of one or several hash chains. One deployment writes one chain (its primary is the one
 * writer for every worker); replicas sharing a storage directory (`storage.shared`) write one each,
 * in a subdirectory of the audit base named after the replica. `audit verify` and `audit query` read
 * the whole trail: a base holding chain subdirectories is never mistaken for an empty chain.
 */
import { readdir } from 'node:fs/promises';
import { basename } from 'node:path';
import { sortAuditFiles } from './chain.ts';
import { auditChainDirs, queryAuditDir } from './query.ts';
import type { AuditQuery, AuditQueryOptions } from './query.ts';
import type { AuditRecord } from './types.ts';
import { verifyAuditDir } from './verify.ts';
import type { AuditVerifyOptions, AuditVerifyResult } from './verify.ts';

/**
 * The chains of `dir`: `dir` itself when it holds audit files, else each subdirectory that does
 * (sorted); `[dir]` when there are none (an empty chain).
 * @throws when `dir` cannot be read.
 */
export async function auditChains(dir: string): Promise<string[]> {
  if (sortAuditFiles(await readdir(dir)).length > 0) return [dir];
  const subs = await auditChainDirs(dir);
  return subs.length > 0 ? subs : [dir];
}

export interface AuditTrailVerifyResult {
  ok: boolean;
  chains: Array<AuditVerifyResult & { dir: string }>;
}

/** {@link verifyAuditDir} for every chain of the trail; ok only when every one is. */
export async function verifyAuditTrail(
  dir: string,
  options: AuditVerifyOptions = {},
): Promise<AuditTrailVerifyResult> {
  const dirs = await auditChains(dir);
  if (dirs.length > 1 && options.expectHead !== undefined) {
    throw new Error(
      `${dir} holds ${dirs.length} chains (${dirs.map((d) => basename(d)).join(', ')}); a head belongs to one: verify that chain's directory`,
    );
  }
  const chains: AuditTrailVerifyResult['chains'] = [];
  for (const d of dirs) chains.push({ dir: d, ...(await verifyAuditDir(d, options)) });
  return { ok: chains.every((c) => c.ok), chains };
}

/**
 * {@link queryAuditDir} over every chain of the trail, merged by event time (oldest first, or
 * newest first with `newestFirst`); `limit` counts the merged records.
 */
export async function* queryAuditTrail(
  dir: string,
  query: AuditQuery,
  options: AuditQueryOptions = {},
): AsyncGenerator<AuditRecord> {
  const dirs = await auditChains(dir);
  const [only] = dirs;
  if (dirs.length === 1 && only !== undefined) {
    yield* queryAuditDir(only, query, options);
    return;
  }
  const limit = options.limit ?? Infinity;
  if (limit <= 0) return;
  // Each chain is in time order already; take the earliest (latest) head each step.
  const heads: Array<{ it: AsyncGenerator<AuditRecord>; next: AuditRecord | undefined }> = [];
  try {
    for (const d of dirs) {
      const it = queryAuditDir(d, query, options);
      heads.push({ it, next: await nextOf(it) });
    }
    const before = options.newestFirst
      ? (a: AuditRecord, b: AuditRecord) => a.time > b.time
      : (a: AuditRecord, b: AuditRecord) => a.time < b.time;
    for (let n = 0; n < limit; n++) {
      let pick: (typeof heads)[number] | undefined;
      for (const h of heads) {
        if (h.next !== undefined && (pick?.next === undefined || before(h.next, pick.next))) pick = h;
      }
      if (pick?.next === undefined) return;
      yield pick.next;
      pick.next = await nextOf(pick.it);
    }
  } finally {
    await Promise.all(heads.map((h) => h.it.return(undefined)));
  }
}

async function nextOf(it: AsyncGenerator<AuditRecord>): Promise<AuditRecord | undefined> {
  const r = await it.next();
  return r.done === true ? undefined : r.value;
}
