import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { readAtMost } from '../../../src/shared/index.ts';

const chunks = (...parts: string[]): Readable => Readable.from(parts.map((p) => Buffer.from(p)));

describe('readAtMost', () => {
  it('reads a body of up to max bytes whole', async () => {
    expect((await readAtMost(chunks('ab', 'cd'), 4))?.toString()).toBe('abcd');
    expect((await readAtMost(chunks(), 4))?.length).toBe(0);
  });

  it('gives up past max and destroys the stream (nothing is left half-read)', async () => {
    let pulled = 0;
    const body = new Readable({
      read() {
        pulled++;
        this.push(Buffer.alloc(1024));
      },
    });
    expect(await readAtMost(body, 4096)).toBeUndefined();
    expect(body.destroyed).toBe(true);
    expect(pulled).toBeLessThan(10);
  });

  it('accepts string and Uint8Array chunks', async () => {
    const body = Readable.from(['a', new Uint8Array([98])], { objectMode: true });
    expect((await readAtMost(body, 2))?.toString()).toBe('ab');
  });
});
