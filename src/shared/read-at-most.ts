import type { Readable } from 'node:stream';

/**
 * A whole (small) body read into memory: at most `max` bytes, or undefined once it passes `max` (the
 * caller chooses the error). The stream is always consumed or destroyed, so no socket is left
 * half-read. The one bounded reader of the tree: manifests, tokens, error bodies, trust material,
 * image configs.
 */
export async function readAtMost(body: Readable, max: number): Promise<Buffer | undefined> {
  const chunks: Buffer[] = [];
  let total = 0;
  try {
    for await (const chunk of body as AsyncIterable<Buffer | Uint8Array | string>) {
      const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk);
      total += buf.length;
      if (total > max) return undefined;
      chunks.push(buf);
    }
  } finally {
    if (!body.destroyed) body.destroy();
  }
  return Buffer.concat(chunks, total);
}
