/**
 * The operator's view of what was pulled: per upstream/repository/tag, the digests seen, who pulled
 * them and when, what the policy said, who signed, how old the image is and whether the tag moved.
 * Built from the audit trail (one streaming pass) and, for image age, the config blobs in the cache.
 * Backs `pullwarden inventory` and the admin page. Reads only: safe while the proxy runs.
 */
import { queryAuditDir } from '../audit/index.ts';
import type { AuditGate, AuditRecord } from '../audit/index.ts';
import { isDigest, parseManifest } from '../oci/index.ts';
import type { Digest } from '../oci/index.ts';
import type { DecisionResult } from '../shared/index.ts';
import type { SignerIdentity } from '../shared/index.ts';

/** One tag of one repository (or one digest pulled without a tag). */
export interface InventoryEntry {
  upstream: string;
  repository: string;
  /** Undefined for digests pulled without a tag the proxy saw. */
  tag?: string;
  /** The digest of the newest pull. */
  digest?: string;
  /** Every digest this tag resolved to, oldest first. */
  digests: string[];
  mediaType?: string;
  firstPull: string;
  lastPull: string;
  /** Manifest requests (HEAD or GET) for this tag or its digests. */
  pulls: number;
  /** Distinct client addresses, and distinct authenticated identities. */
  clients: number;
  identities: number;
  /** Of the newest request that was decided. */
  decision?: DecisionResult;
  policy?: string;
  reasons?: string[];
  /** Requests denied (403). */
  denials: number;
  /** Verified signers of the newest decision: `issuer subject` (keyless) or `key:<name>`. */
  signers: string[];
  gates: AuditGate[];
  /** Image config `created` of the newest digest (the first platform of an index), when cached. */
  created?: string;
  moves: { time: string; old: string; new: string }[];
}

/** A denied request, for the "recent denials" list. */
export interface InventoryDenial {
  time: string;
  client: string;
  identity?: string;
  upstream: string;
  repository: string;
  reference: string;
  tag?: string;
  digest?: string;
  policy?: string;
  reasons: string[];
  status: number;
}

export interface Inventory {
  entries: InventoryEntry[];
  /** Newest first. */
  denials: InventoryDenial[];
  /** Newest first, every repository. */
  moves: { time: string; upstream: string; repository: string; tag: string; old: string; new: string }[];
  /** How manifest and blob requests were answered: from the cache, fetched, or served stale. */
  cache: { hit: number; miss: number; stale: number };
  /** Manifest requests and denials per bucket (oldest first), for a chart. */
  series: { start: string; pulls: number; denials: number }[];
}

export interface InventoryOptions {
  /** Events at or after this time only. */
  since?: Date | undefined;
  /** Repository glob (as `audit query --repository`). */
  repository?: string | undefined;
  /** Only entries with at least one denial. */
  denied?: boolean | undefined;
  /** Only entries whose newest decision had no verified signer. */
  unsigned?: boolean | undefined;
  /** Only entries whose image was created longer ago than this (ms); unknown ages do not match. */
  olderThanMs?: number | undefined;
  /** Denials kept for {@link Inventory.denials} (default 50). */
  denialLimit?: number;
  /** Bucket of {@link Inventory.series} in ms (default 1 h) and how many buckets (default 24). */
  bucketMs?: number;
  buckets?: number;
  now?: Date;
}

export interface InventorySources {
  /**
   * The audit trail: one chain directory, or several (replicas on a shared storage directory each
   * write their own chain); their events are merged by time.
   */
  auditDir: string | readonly string[];
  /** A verified blob from the cache, for image age; undefined when not cached. */
  readBlob?: (digest: Digest, maxBytes: number) => Promise<Buffer | undefined>;
}

interface Building extends InventoryEntry {
  clientSet: Set<string>;
  identitySet: Set<string>;
  /** Times of the events the digest and the decision were taken from (chains are merged unordered). */
  digestAt: string;
  decidedAt: string;
}

/** `issuer subject` or `key:<name>`. */
export function signerLabel(s: SignerIdentity): string {
  return s.kind === 'key' ? `key:${s.key}` : `${s.issuer} ${s.subject}`;
}

/** Build the inventory in one pass over the audit trail. */
export async function buildInventory(
  sources: InventorySources,
  options: InventoryOptions = {},
): Promise<Inventory> {
  const now = options.now ?? new Date();
  const bucketMs = options.bucketMs ?? 3_600_000;
  const buckets = options.buckets ?? 24;
  const seriesStart = Math.floor(now.getTime() / bucketMs) * bucketMs - (buckets - 1) * bucketMs;
  const series = Array.from({ length: buckets }, (_, i) => ({
    start: new Date(seriesStart + i * bucketMs).toISOString(),
    pulls: 0,
    denials: 0,
  }));
  const byKey = new Map<string, Building>();
  /** digest → key of the tag entry it belongs to (per repository), for digest pulls without a tag. */
  const denials: InventoryDenial[] = [];
  const moves: Inventory['moves'] = [];
  const denialLimit = options.denialLimit ?? 50;
  const cache = { hit: 0, miss: 0, stale: 0 };

  const query = { since: options.since, repository: options.repository };
  const dirs = typeof sources.auditDir === 'string' ? [sources.auditDir] : sources.auditDir;
  for await (const r of mergedChains(dirs, query)) {
    if (r.type === 'tag-moved') {
      if (r.tag !== undefined && r.old !== undefined && r.new !== undefined) {
        const move = { time: r.time, old: r.old, new: r.new };
        moves.push({ ...move, upstream: r.upstream, repository: r.repository, tag: r.tag });
        entryFor(byKey, r, r.tag).moves.push(move);
      }
      continue;
    }
    if (r.cache !== undefined && r.cache in cache) cache[r.cache] += 1;
    const denied = r.decision === 'deny' || r.status === 403;
    // Every refusal is a denial to show (tag lists, referrers and blobs too), the newest kept.
    if (denied) {
      denials.push(denialOf(r));
      if (denials.length > denialLimit * 4)
        denials.sort((a, b) => b.time.localeCompare(a.time)).splice(denialLimit);
    }
    if (r.type !== 'manifest') continue;
    const t = Date.parse(r.time);
    const b = Math.floor((t - seriesStart) / bucketMs);
    const slot = series[b];
    if (slot) {
      slot.pulls += 1;
      if (denied) slot.denials += 1;
    }
    const e = entryFor(byKey, r, r.tag);
    e.pulls += 1;
    if (r.time < e.firstPull) e.firstPull = r.time;
    if (r.time >= e.lastPull) e.lastPull = r.time;
    if (r.client !== '') e.clientSet.add(r.client);
    if (r.identity !== undefined) e.identitySet.add(r.identity);
    if (denied) e.denials += 1;
    // The tag's digest is the one its by-tag requests resolved to (digest requests of the story carry
    // the tag too, but name a child manifest of an index).
    const byTag = r.tag !== undefined && r.reference === r.tag;
    if (r.digest !== undefined && (byTag || r.tag === undefined)) {
      if (!e.digests.includes(r.digest)) e.digests.push(r.digest);
      if (r.time >= e.digestAt) {
        e.digestAt = r.time;
        e.digest = r.digest;
        if (r.mediaType !== undefined) e.mediaType = r.mediaType;
      }
    }
    const decides = byTag || r.tag === undefined || e.decision === undefined;
    if (r.decision !== undefined && decides && r.time >= e.decidedAt) {
      e.decidedAt = r.time;
      e.decision = r.decision;
      if (r.policy !== undefined) e.policy = r.policy;
      else delete e.policy;
      if (r.reasons !== undefined) e.reasons = r.reasons;
      else delete e.reasons;
      e.signers = (r.signers ?? []).map(signerLabel);
      e.gates = r.gates ?? [];
    }
  }

  const entries: InventoryEntry[] = [];
  for (const e of byKey.values()) {
    if (e.pulls === 0) continue; // tag moves of a tag nobody pulled in the window
    const entry: InventoryEntry & Partial<Building> = { ...e };
    delete entry.clientSet;
    delete entry.identitySet;
    delete entry.digestAt;
    delete entry.decidedAt;
    const { clientSet, identitySet } = e;
    entry.moves.sort((a, b) => a.time.localeCompare(b.time));
    entry.clients = clientSet.size;
    entry.identities = identitySet.size;
    if (sources.readBlob && entry.digest !== undefined && entry.mediaType !== undefined) {
      const created = await imageCreated(sources.readBlob, entry.digest, entry.mediaType);
      if (created !== undefined) entry.created = created;
    }
    entries.push(entry);
  }
  const olderThan = options.olderThanMs;
  const filtered = entries.filter(
    (e) =>
      (options.denied !== true || e.denials > 0) &&
      (options.unsigned !== true || e.signers.length === 0) &&
      (olderThan === undefined ||
        (e.created !== undefined && now.getTime() - Date.parse(e.created) > olderThan)),
  );
  filtered.sort(
    (a, b) =>
      a.upstream.localeCompare(b.upstream) ||
      a.repository.localeCompare(b.repository) ||
      (a.tag ?? '').localeCompare(b.tag ?? '') ||
      (a.digest ?? '').localeCompare(b.digest ?? ''),
  );
  const byTime = <T extends { time: string }>(a: T, b: T) => b.time.localeCompare(a.time);
  return {
    entries: filtered,
    denials: denials.sort(byTime).slice(0, denialLimit),
    moves: moves.sort(byTime),
    cache,
    series,
  };
}

/** The records of several chains, one after another (the caller merges by time where it matters). */
async function* mergedChains(
  dirs: readonly string[],
  query: Parameters<typeof queryAuditDir>[1],
): AsyncGenerator<AuditRecord> {
  for (const dir of dirs) yield* queryAuditDir(dir, query);
}

function entryFor(map: Map<string, Building>, r: AuditRecord, tag: string | undefined): Building {
  const key = JSON.stringify([
    r.upstream,
    r.repository,
    tag ?? null,
    tag === undefined ? (r.digest ?? r.reference) : null,
  ]);
  let e = map.get(key);
  if (!e) {
    e = {
      upstream: r.upstream,
      repository: r.repository,
      ...(tag === undefined ? {} : { tag }),
      digests: [],
      firstPull: r.time,
      lastPull: r.time,
      pulls: 0,
      clients: 0,
      identities: 0,
      denials: 0,
      signers: [],
      gates: [],
      moves: [],
      clientSet: new Set(),
      identitySet: new Set(),
      digestAt: '',
      decidedAt: '',
    };
    map.set(key, e);
  }
  return e;
}

function denialOf(r: AuditRecord): InventoryDenial {
  const d: InventoryDenial = {
    time: r.time,
    client: r.client,
    upstream: r.upstream,
    repository: r.repository,
    reference: r.reference,
    reasons: r.reasons ?? [],
    status: r.status,
  };
  if (r.identity !== undefined) d.identity = r.identity;
  if (r.tag !== undefined) d.tag = r.tag;
  if (r.digest !== undefined) d.digest = r.digest;
  if (r.policy !== undefined) d.policy = r.policy;
  return d;
}

const MAX_JSON = 4 * 1024 * 1024;

/** Config `created` of a cached manifest (for an index: its first platform manifest that is cached). */
async function imageCreated(
  readBlob: NonNullable<InventorySources['readBlob']>,
  digest: string,
  mediaType: string,
): Promise<string | undefined> {
  try {
    if (!isDigest(digest)) return undefined;
    const bytes = await readBlob(digest, MAX_JSON);
    if (!bytes) return undefined;
    let manifest = parseManifest(bytes, mediaType);
    if (manifest.kind === 'index') {
      let child: typeof manifest | undefined;
      for (const d of manifest.manifests) {
        if (d.platform?.os === 'unknown') continue; // attestation manifests of buildkit
        const b = await readBlob(d.digest, MAX_JSON);
        if (!b) continue;
        child = parseManifest(b, d.mediaType);
        break;
      }
      if (!child) return undefined;
      manifest = child;
    }
    if (!manifest.config) return undefined;
    const config = await readBlob(manifest.config.digest, MAX_JSON);
    if (!config) return undefined;
    const created = (JSON.parse(config.toString('utf8')) as { created?: unknown }).created;
    return typeof created === 'string' && !Number.isNaN(Date.parse(created)) ? created : undefined;
  } catch {
    return undefined; // unknown age, never an error of the whole inventory
  }
}
