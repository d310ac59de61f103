import { open } from 'node:fs/promises';

/** Read size of the line readers: large enough that a 1 GB trail is a few hundred reads. */
export const CHUNK_BYTES = 4 * 1024 * 1024;

/**
 * The lines of `path` in chunks: each `lines` buffer ends right after a `\n` and holds whole lines
 * only; a final `rest` holds the bytes after the last `\n`, if any (a torn write). Buffers are reused:
 * one is valid until the next iteration. Faster than readline: no string per line unless the caller
 * makes one, and a filter can search a whole chunk at once.
 */
export async function* lineChunks(
  path: string,
  chunkBytes = CHUNK_BYTES,
): AsyncGenerator<{ lines: Buffer; rest?: never } | { rest: Buffer; lines?: never }> {
  const handle = await open(path, 'r');
  try {
    const buf = Buffer.allocUnsafe(chunkBytes);
    let carry: Buffer | undefined;
    let position = 0;
    for (;;) {
      const { bytesRead } = await handle.read(buf, 0, chunkBytes, position);
      if (bytesRead === 0) break;
      position += bytesRead;
      let data = buf.subarray(0, bytesRead);
      if (carry) {
        data = Buffer.concat([carry, data]);
        carry = undefined;
      }
      const last = data.lastIndexOf(0x0a);
      if (last < 0) {
        carry = Buffer.from(data);
        continue;
      }
      if (last < data.length - 1) carry = Buffer.from(data.subarray(last + 1));
      yield { lines: data.subarray(0, last + 1) };
    }
    if (carry && carry.length > 0) yield { rest: carry };
  } finally {
    await handle.close();
  }
}

/** Call `onLine` for each line of a chunk of whole lines (without the `\n`); it returns false to stop. */
export function forEachLine(chunk: Buffer, onLine: (line: Buffer) => boolean): boolean {
  let start = 0;
  while (start < chunk.length) {
    const end = chunk.indexOf(0x0a, start);
    if (end < 0) break;
    if (!onLine(chunk.subarray(start, end))) return false;
    start = end + 1;
  }
  return true;
}

/**
 * The complete lines of `path` in chunks from the end of the file to its start (each chunk holds whole
 * lines in file order; the caller walks them backwards). Bytes after the last `\n` (a torn write) are
 * skipped. For "the newest N": only the end of the newest file is read.
 */
export async function* lineChunksFromEnd(path: string, chunkBytes = CHUNK_BYTES): AsyncGenerator<Buffer> {
  const handle = await open(path, 'r');
  try {
    let position = (await handle.stat()).size;
    const buf = Buffer.allocUnsafe(chunkBytes);
    let carry: Buffer | undefined; // the start of the chunk read before: whole lines, ending with "\n"
    let torn = true; // still skipping bytes after the last "\n"
    while (position > 0) {
      const start = Math.max(0, position - chunkBytes);
      const length = position - start;
      let got = 0;
      while (got < length) {
        const { bytesRead } = await handle.read(buf, got, length - got, start + got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
      position = start;
      let data = buf.subarray(0, got);
      if (torn) {
        const last = data.lastIndexOf(0x0a);
        data = data.subarray(0, last + 1);
        if (last < 0) continue;
        torn = false;
      }
      if (carry) data = Buffer.concat([data, carry]);
      carry = undefined;
      if (start > 0) {
        // The bytes up to the first "\n" belong to a line that starts in an earlier chunk.
        const nl = data.indexOf(0x0a);
        if (nl < 0 || nl === data.length - 1) {
          carry = Buffer.from(data);
          continue;
        }
        carry = Buffer.from(data.subarray(0, nl + 1));
        data = data.subarray(nl + 1);
      }
      if (data.length > 0) yield data;
    }
    if (carry && carry.length > 0) yield carry;
  } finally {
    await handle.close();
  }
}
