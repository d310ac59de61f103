import { createHash } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { GENESIS, HASH_SUFFIX_LENGTH, chainFieldsOf, sortAuditFiles } from './chain.ts';
import { checkpointProblem } from './checkpoint.ts';
import type { AuditCheckpoint } from './checkpoint.ts';
import { forEachLine, lineChunks } from './lines.ts';

/** Where the chain breaks: file name, 1-based line number in that file, and what is wrong. */
export interface AuditBreak {
  file: string;
  line: number;
  problem: string;
}

export interface AuditVerifyResult {
  ok: boolean;
  /** Audit files examined. */
  files: number;
  /** Complete lines checked (up to the first break). */
  lines: number;
  firstBreak?: AuditBreak;
  /**
   * Bytes after the last `\n` of a file: a write cut short by a crash. Not tampering — the next file
   * (if any) continues the chain from the last complete line, which the check above covers.
   */
  incomplete: { file: string; line: number; bytes: number }[];
  /** The newest complete line: record it elsewhere to detect a cut at the end later. */
  head?: { file: string; line: number; seq: number; hash: string };
  /**
   * Seq of the first line present. Greater than 1 when older files were removed (retention): the
   * first `prev` then cannot be checked.
   */
  firstSeq?: number;
  /** Checkpoint lines seen. */
  checkpoints: number;
  /** The newest checkpoint (with `key`: the newest signed by it). */
  lastCheckpoint?: { file: string; line: number; seq: number; time: string; signed: boolean };
  /** With `key`: complete lines after the newest signed checkpoint (not anchored by a signature yet). */
  unanchored?: number;
}

export interface AuditVerifyOptions {
  /**
   * Ed25519 public key of `audit.checkpoint`: every checkpoint after the first signed one must carry a
   * valid signature by it, and at least one must: rewriting or deleting lines before the newest signed
   * checkpoint, or removing files beyond what retention recorded, is then a break even when every hash
   * was recomputed.
   */
  key?: KeyObject;
  /** A head kept elsewhere (`audit head`): the trail must contain a line with this hash (and seq). */
  expectHead?: { seq?: number; hash: string };
  /** With `key`: the newest signed checkpoint must be younger than this (the writer signs every interval). */
  maxAgeMs?: number;
  now?: Date;
}

const CHECKPOINT_MEMBER = Buffer.from(',"type":"checkpoint",');
/**
 * Check every hash chain in an audit directory (format in chain.ts) and report the first break.
 *
 * Detects an edited line (its content no longer matches its hash), a line rewritten with a recomputed
 * hash (the next line's prev no longer matches), deleted, inserted, duplicated or reordered lines (seq
 * and prev), lines removed from the start of a file (its name carries its first seq), a removed or
 * swapped file (the cross-file link). A torn last line is reported in `incomplete`, not as a break.
 * @throws when the directory cannot be read.
 */
export async function verifyAuditDir(
  dir: string,
  options: AuditVerifyOptions = {},
): Promise<AuditVerifyResult> {
  const files = sortAuditFiles(await readdir(dir));
  const result: AuditVerifyResult = {
    ok: true,
    files: files.length,
    lines: 0,
    incomplete: [],
    checkpoints: 0,
  };
  const key = options.key;
  const expect = options.expectHead;
  let expectFound = false;
  let firstLine: { file: string; seq: number; prev: string } | undefined;
  /** The newest checkpoint that counts (with a key: signed by it), and its trail start. */
  let anchor: { firstSeq: number; firstPrev: string } | undefined;
  let signedSeen = false;
  let seq = 0; // seq of the last complete line, 0 before the first
  let hash = GENESIS;
  let lastAt: { file: string; line: number } | undefined;

  for (const f of files) {
    let lineNo = 0;
    let firstInFile = true;
    let broken: AuditBreak | undefined;
    const fail = (problem: string) => {
      broken = { file: f.name, line: lineNo, problem };
      return false;
    };
    const check = (buf: Buffer): boolean => {
      lineNo += 1;
      const fields = chainFieldsOf(buf);
      if (!fields.ok) return fail(fields.problem);
      const digest = createHash('sha256')
        .update(buf.subarray(0, buf.length - HASH_SUFFIX_LENGTH))
        .digest('hex');
      if (digest !== fields.hash) return fail('the content does not match its hash: the line was edited');
      // No JSON.parse: the hash covers every byte, so a line the sink did not write this way is a line
      // rewritten with its hash recomputed, which the next prev shows (parsing would double the time).
      if (firstInFile && fields.seq !== f.firstSeq) {
        return fail(
          `the first line has seq ${fields.seq} but the file name says ${f.firstSeq}: ` +
            'lines were removed from the start of the file, or the file was renamed',
        );
      }
      const where =
        lastAt === undefined
          ? 'the start of the trail'
          : lastAt.file === f.name
            ? `line ${lastAt.line}`
            : `${lastAt.file} line ${lastAt.line} (the previous file)`;
      if (lastAt === undefined) {
        // The first line present. seq 1 is the genesis; a later seq means older files were removed.
        if (fields.seq === 1 && fields.prev !== GENESIS) {
          return fail('the first line of the trail (seq 1) does not have the genesis prev');
        }
        result.firstSeq = fields.seq;
        firstLine = { file: f.name, seq: fields.seq, prev: fields.prev };
      } else if (fields.seq !== seq + 1) {
        const gap = fields.seq - seq - 1;
        return fail(
          fields.seq > seq + 1
            ? `expected seq ${seq + 1} after ${where}, found ${fields.seq}: ${gap} line${gap === 1 ? '' : 's'} deleted before this one, or lines reordered`
            : `seq ${fields.seq} after seq ${seq} (${where}): lines reordered or duplicated`,
        );
      } else if (fields.prev !== hash) {
        return fail(
          firstInFile
            ? `prev does not match the hash of ${where}: the chain across rotation is broken`
            : `prev does not match the hash of ${where}: that line was rewritten (hash recomputed) or this prev was changed`,
        );
      }
      const at = buf.subarray(0, 200).indexOf(CHECKPOINT_MEMBER);
      if (at >= 0) {
        let c: AuditCheckpoint;
        try {
          c = JSON.parse(buf.toString('utf8')) as AuditCheckpoint;
        } catch {
          return fail('a checkpoint line that is not JSON');
        }
        result.checkpoints += 1;
        const signed = c.sig !== undefined;
        if (key && (signed || signedSeen)) {
          const problem = checkpointProblem(key, fields.seq, fields.prev, c);
          if (problem !== undefined) return fail(problem);
          signedSeen = true;
        }
        if (!key || signedSeen) {
          anchor = { firstSeq: c.firstSeq, firstPrev: c.firstPrev };
          result.lastCheckpoint = { file: f.name, line: lineNo, seq: fields.seq, time: c.time, signed };
          if (key) result.unanchored = -1; // this line itself is counted below
        }
      }
      if (expect && fields.hash === expect.hash) {
        if (expect.seq !== undefined && expect.seq !== fields.seq) {
          return fail(`the expected head ${expect.hash} is at seq ${fields.seq}, not at seq ${expect.seq}`);
        }
        expectFound = true;
      }
      if (result.unanchored !== undefined) result.unanchored += 1;
      seq = fields.seq;
      hash = fields.hash;
      lastAt = { file: f.name, line: lineNo };
      firstInFile = false;
      result.lines += 1;
      return true;
    };
    let incomplete: number | undefined;
    for await (const part of lineChunks(join(dir, f.name))) {
      if (part.rest) incomplete = part.rest.length;
      else if (!forEachLine(part.lines, check)) break;
    }
    if (broken) {
      result.ok = false;
      result.firstBreak = broken;
      return result;
    }
    if (incomplete !== undefined)
      result.incomplete.push({ file: f.name, line: lineNo + 1, bytes: incomplete });
  }
  if (lastAt) result.head = { ...lastAt, seq, hash };
  const broken = (b: AuditBreak) => {
    result.ok = false;
    result.firstBreak = b;
    return result;
  };
  // Retention writes a checkpoint with the new start before it deletes: a trail that starts later
  // than the newest checkpoint says lost files someone else removed.
  if (firstLine && anchor) {
    if (firstLine.seq > anchor.firstSeq) {
      return broken({
        file: firstLine.file,
        line: 1,
        problem: `the trail starts at seq ${firstLine.seq}, but the newest checkpoint keeps it from seq ${anchor.firstSeq}: files were removed outside retention`,
      });
    }
    if (firstLine.seq === anchor.firstSeq && firstLine.prev !== anchor.firstPrev && anchor.firstPrev !== '') {
      return broken({
        file: firstLine.file,
        line: 1,
        problem:
          'the first line does not continue from the hash the newest checkpoint recorded for it: it was replaced',
      });
    }
  }
  const end = { file: lastAt?.file ?? '', line: lastAt?.line ?? 0 };
  if (key && !signedSeen) {
    return broken({
      ...end,
      problem:
        'no checkpoint signed by the given key: nothing anchors the chain (recomputed, or checkpoints off)',
    });
  }
  if (key && options.maxAgeMs !== undefined && result.lastCheckpoint) {
    const age = (options.now ?? new Date()).getTime() - Date.parse(result.lastCheckpoint.time);
    if (!(age <= options.maxAgeMs)) {
      return broken({
        ...end,
        problem: `the newest signed checkpoint (seq ${result.lastCheckpoint.seq}, ${result.lastCheckpoint.time}) is older than allowed: the tail after it may have been cut`,
      });
    }
  }
  if (expect && !expectFound) {
    const before = expect.seq !== undefined && firstLine !== undefined && expect.seq < firstLine.seq;
    return broken({
      ...end,
      problem: before
        ? `the expected head (seq ${expect.seq}) is older than the trail's first line (seq ${firstLine?.seq}): deleted by retention, cannot be checked`
        : `the expected head ${expect.hash} is not in the trail: lines after it were cut, or the chain was rewritten`,
    });
  }
  return result;
}
