import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { forEachLine, lineChunks, lineChunksFromEnd } from '../../../src/audit/lines.ts';
import { tempDir } from './helpers.ts';

let dir: string;
let cleanup: () => Promise<void>;
beforeEach(async () => {
  ({ dir, cleanup } = await tempDir());
});
afterEach(async () => {
  await cleanup();
});

const LINES = Array.from({ length: 60 }, (_, i) => `line-${i}-${'x'.repeat((i * 37) % 150)}`);

async function forward(path: string, chunk: number) {
  const lines: string[] = [];
  let rest: string | undefined;
  for await (const part of lineChunks(path, chunk)) {
    if (part.rest) rest = part.rest.toString();
    else forEachLine(part.lines, (l) => lines.push(l.toString()) > 0);
  }
  return { lines, rest };
}
async function backward(path: string, chunk: number) {
  const lines: string[] = [];
  for await (const part of lineChunksFromEnd(path, chunk)) {
    const inChunk: string[] = [];
    forEachLine(part, (l) => inChunk.push(l.toString()) > 0);
    lines.push(...inChunk.reverse());
  }
  return lines;
}

describe('line readers', () => {
  it.each([7, 64, 100, 1000, 1 << 20])(
    'read whole lines forwards and backwards with %i-byte reads',
    async (chunk) => {
      const path = join(dir, 'a');
      await writeFile(path, `${LINES.join('\n')}\n`);
      expect(await forward(path, chunk)).toEqual({ lines: LINES, rest: undefined });
      expect(await backward(path, chunk)).toEqual([...LINES].reverse());
    },
  );

  it.each([7, 64, 1 << 20])('leave out a torn last line (%i-byte reads)', async (chunk) => {
    const path = join(dir, 'b');
    await writeFile(path, `${LINES.join('\n')}\n{"seq":61,"prev":"${'y'.repeat(120)}`);
    expect(await forward(path, chunk)).toEqual({
      lines: LINES,
      rest: `{"seq":61,"prev":"${'y'.repeat(120)}`,
    });
    expect(await backward(path, chunk)).toEqual([...LINES].reverse());
  });

  it('read an empty file as nothing', async () => {
    const path = join(dir, 'c');
    await writeFile(path, '');
    expect(await forward(path, 64)).toEqual({ lines: [], rest: undefined });
    expect(await backward(path, 64)).toEqual([]);
  });
});
