import { isDigest, truncate } from '../oci/index.ts';
import type { Digest } from '../oci/index.ts';

/*
 * Key scheme — the same keys in SQLite and in Redis, so a dump of either reads the same:
 *
 *   <prefix>:tag:<upstream>/<repository>:<tag>          TagRecord (no TTL: the last verified digest
 *                                                        must outlive upstream outages)
 *   <prefix>:manifest:<upstream>/<repository>@<digest>  ManifestRecord
 *   <prefix>:blob-link:<upstream>/<repository>@<digest> 1
 *   <prefix>:kv:<namespace>:<key>                       generic values
 *   <prefix>:kv:<gate-kind>:<scope>:<upstream>/<repository>@<digest>
 *                                                       the gate's records: decision, admitted-blob,
 *                                                       admitted-child (TTL; <scope> = policy + trust
 *                                                       material version, so a change orphans them)
 *   <prefix>:kv:<tag-kind>:<upstream>/<repository>:<tag>
 *                                                       tag state: tag-verified, tag-history, tag-pin
 *                                                       (no TTL)
 *   <prefix>:ping                                       never written; read by ping()
 *
 * <prefix> is `metadata.namespace` from the config, so several deployments can share one Redis.
 *
 * Why this is unambiguous: every component is percent-escaped for exactly the characters that
 * terminate it, so a value can never run into the next field.
 *   - <prefix> and the generic <namespace> end at the first ':'   → they escape '%' and ':'
 *   - <upstream> ends at the first '/'; it keeps ':' because hosts carry ports ("127.0.0.1:5000",
 *     "[::1]:5000")                                               → escapes '%', '/', '@'
 *   - <repository> ends at the next ':' (tag) or '@' (digest); it keeps '/' ("library/nginx")
 *                                                               → escapes '%', ':', '@'
 *   - <tag> is the rest after that ':' (the service may append "#<accept-hash>")
 *                                                               → escapes '%', ':', '/', '@'
 *   - <digest> is validated (`algorithm:hex`) and is the last field
 *   - a gate <scope> ends at the next ':'                         → escapes '%', ':', '/', '@'
 *   - the generic <key> is the rest of the string, so it may contain anything.
 * The typed kinds live under `kv:` because they were written as generic values before they had
 * methods of their own: for valid names the tag-state keys are byte-identical to those
 * (`kv:tag-pin:<upstream>/<repository>:<tag>`), so pins, history and verified tags survive an
 * upgrade. Gate records changed shape once (their scope used to hold unescaped ':'); they are caches
 * with a TTL and are rewritten at the next decision, as after a policy change.
 * The kinds (tag, manifest, blob-link, kv) are fixed words, so two kinds never share a key.
 * Valid OCI names never contain the escaped characters, so real keys stay human-readable.
 */

/** Records of the trust gate, scoped by policy and trust material version. */
export type GateKind = 'decision' | 'admitted-blob' | 'admitted-child';
/** Records of a tag that outlive every TTL. */
export type TagStateKind = 'tag-verified' | 'tag-history' | 'tag-pin';

function escape(value: string, chars: RegExp): string {
  return value.replace(chars, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`);
}

const PREFIX_CHARS = /[%:]/g;
const UPSTREAM_CHARS = /[%/@]/g;
const REPOSITORY_CHARS = /[%:@]/g;
const TAG_CHARS = /[%:/@]/g;

function nonEmpty(what: string, value: string): string {
  if (value.length === 0) throw new TypeError(`metadata key: empty ${what}`);
  return value;
}

function checkedDigest(digest: Digest): Digest {
  // Branded type, but values may come from JSON or casts: the digest is the last field, so it must
  // not carry a separator of its own.
  if (!isDigest(digest)) throw new TypeError(`metadata key: invalid digest "${truncate(digest)}"`);
  return digest;
}

/** Builds the keys of one store; see the scheme above. */
export class MetadataKeys {
  readonly #prefix: string;

  constructor(prefix: string) {
    this.#prefix = escape(nonEmpty('namespace', prefix), PREFIX_CHARS);
  }

  #scope(upstream: string, repository: string): string {
    return `${escape(nonEmpty('upstream', upstream), UPSTREAM_CHARS)}/${escape(nonEmpty('repository', repository), REPOSITORY_CHARS)}`;
  }

  tag(upstream: string, repository: string, tag: string): string {
    return `${this.#prefix}:tag:${this.#scope(upstream, repository)}:${escape(nonEmpty('tag', tag), TAG_CHARS)}`;
  }

  manifest(upstream: string, repository: string, digest: Digest): string {
    return `${this.#prefix}:manifest:${this.#scope(upstream, repository)}@${checkedDigest(digest)}`;
  }

  blobLink(upstream: string, repository: string, digest: Digest): string {
    return `${this.#prefix}:blob-link:${this.#scope(upstream, repository)}@${checkedDigest(digest)}`;
  }

  /** A gate record: a decision or a closure entry, under the scope it was made in. */
  gate(kind: GateKind, scope: string, upstream: string, repository: string, digest: Digest): string {
    return `${this.#prefix}:kv:${kind}:${escape(nonEmpty('scope', scope), TAG_CHARS)}:${this.#scope(upstream, repository)}@${checkedDigest(digest)}`;
  }

  /** A tag's durable state (verified digest, history, pin). */
  tagState(kind: TagStateKind, upstream: string, repository: string, tag: string): string {
    return `${this.#prefix}:kv:${kind}:${this.#scope(upstream, repository)}:${escape(nonEmpty('tag', tag), TAG_CHARS)}`;
  }

  generic(namespace: string, key: string): string {
    return `${this.#prefix}:kv:${escape(nonEmpty('namespace', namespace), PREFIX_CHARS)}:${nonEmpty('key', key)}`;
  }

  /** A key no record uses, read by `ping()`. */
  ping(): string {
    return `${this.#prefix}:ping`;
  }
}
