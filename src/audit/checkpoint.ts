/**
 * Checkpoints: lines of the audit chain that anchor it.
 *
 *     {"seq":N,"prev":"<hash of line N-1>","time":"…","type":"checkpoint","reason":"interval",
 *      "count":N-1,"firstSeq":F,"firstPrev":"<prev of line F>","key":"<key id>","sig":"<base64>","hash":"…"}
 *
 * - `prev` is the chain head the checkpoint covers (the hash of line N-1, which commits to every line
 *   before it), `count` the number of lines before it since the genesis.
 * - `firstSeq`/`firstPrev`: where the trail on disk starts after retention deleted older files, and the
 *   hash that first kept line continues from. `audit verify` checks the first line present against the
 *   newest checkpoint: files removed beyond what retention recorded are a break.
 * - `key`/`sig`: with `audit.checkpoint` configured, an Ed25519 signature over {@link checkpointMessage}.
 *   Without a key the sink still writes (unsigned) checkpoints when retention deletes files.
 *
 * A chain alone can be recomputed by anyone who can write the files; a signed checkpoint cannot be
 * forged without the private key, so rewriting or deleting anything before the newest signed
 * checkpoint is detected by `audit verify --key`.
 */
import { createHash, createPrivateKey, createPublicKey, sign, verify } from 'node:crypto';
import type { KeyObject } from 'node:crypto';

/** Why a checkpoint was written. */
export type CheckpointReason = 'events' | 'interval' | 'retention' | 'close';

/** The members of a checkpoint line besides seq, prev and hash. */
export interface AuditCheckpoint {
  type: 'checkpoint';
  time: string;
  reason: CheckpointReason;
  /** Lines in the chain before this one (= seq - 1). */
  count: number;
  /** Seq of the oldest line kept on disk. */
  firstSeq: number;
  /** `prev` of that line: the hash it continues from. */
  firstPrev: string;
  /** Id of the signing key ({@link keyId}); absent when unsigned. */
  key?: string;
  /** Base64 Ed25519 signature over {@link checkpointMessage}. */
  sig?: string;
}

/** The bytes a checkpoint signature covers: its place in the chain and every member but `sig`. */
export function checkpointMessage(seq: number, prev: string, c: Omit<AuditCheckpoint, 'sig'>): Buffer {
  return Buffer.from(
    [
      'pullwarden-audit-checkpoint-v1',
      seq,
      prev,
      c.time,
      c.reason,
      c.count,
      c.firstSeq,
      c.firstPrev,
      c.key ?? '',
    ].join('\n'),
    'utf8',
  );
}

/** Short id of a public key: the first 16 hex digits of sha256 over its SPKI DER encoding. */
export function keyId(key: KeyObject): string {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  return createHash('sha256')
    .update(pub.export({ type: 'spki', format: 'der' }))
    .digest('hex')
    .slice(0, 16);
}

/**
 * An Ed25519 private key from PEM (PKCS#8, as `openssl genpkey -algorithm ed25519` writes it).
 * @throws Error naming what is wrong (never the key material).
 */
export function signingKey(pem: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch {
    throw new Error('not a PEM private key (expected `openssl genpkey -algorithm ed25519` output)');
  }
  if (key.asymmetricKeyType !== 'ed25519') {
    throw new Error(`expected an Ed25519 key, got ${key.asymmetricKeyType ?? 'an unknown key type'}`);
  }
  return key;
}

/** An Ed25519 public key from PEM (a private key is accepted: its public half is used). */
export function verifyingKey(pem: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPublicKey(pem);
  } catch {
    throw new Error('not a PEM public key (expected `openssl pkey -pubout` output)');
  }
  if (key.asymmetricKeyType !== 'ed25519') {
    throw new Error(`expected an Ed25519 key, got ${key.asymmetricKeyType ?? 'an unknown key type'}`);
  }
  return key;
}

/** Sign a checkpoint that will be line `seq` after `prev`. */
export function signCheckpoint(
  key: KeyObject,
  seq: number,
  prev: string,
  c: Omit<AuditCheckpoint, 'sig' | 'key'>,
): AuditCheckpoint {
  const unsigned = { ...c, key: keyId(key) };
  const sig = sign(null, checkpointMessage(seq, prev, unsigned), key).toString('base64');
  return { ...unsigned, sig };
}

/** Why a checkpoint does not verify with `key`, or undefined when it does. */
export function checkpointProblem(
  key: KeyObject,
  seq: number,
  prev: string,
  c: AuditCheckpoint,
): string | undefined {
  if (c.sig === undefined || c.key === undefined) return 'the checkpoint is not signed';
  const id = keyId(key);
  if (c.key !== id) return `the checkpoint is signed by key ${c.key}, not by the given key ${id}`;
  if (c.count !== seq - 1) return `the checkpoint's count ${c.count} does not match its seq ${seq}`;
  let ok: boolean;
  try {
    ok = verify(null, checkpointMessage(seq, prev, c), key, Buffer.from(c.sig, 'base64'));
  } catch {
    ok = false;
  }
  return ok ? undefined : 'the checkpoint signature does not verify: the chain before it was rewritten';
}
