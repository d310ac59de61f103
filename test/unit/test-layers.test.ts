/**
 * `npm run test:unit`, `test:integration` and `test:e2e` together run exactly what `npm test` runs:
 * every test file the vitest config includes lies in exactly one of the three layers.
 */
import { readdir, readFile } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { describe, expect, it } from 'vitest';
import config from '../../vitest.config.ts';

const root = join(import.meta.dirname, '../..');
const pkg = JSON.parse(await readFile(join(root, 'package.json'), 'utf8')) as {
  scripts: Record<string, string>;
};
const LAYERS = ['test/unit', 'test/integration', 'test/e2e'] as const;

describe('the test layers', () => {
  it('have one npm script each, beside npm test running the whole config', () => {
    expect(pkg.scripts['test']).toBe('vitest run');
    for (const layer of LAYERS) {
      expect(pkg.scripts[`test:${layer.slice('test/'.length)}`]).toBe(`vitest run ${layer}`);
    }
    expect(config.test?.include).toEqual(['test/**/*.test.ts']);
  });

  it('cover every test file exactly once (a file outside them would run only in npm test)', async () => {
    const files = (await readdir(join(root, 'test'), { recursive: true }))
      .filter((f) => f.endsWith('.test.ts'))
      .map((f) =>
        relative(root, join(root, 'test', f))
          .split(sep)
          .join('/'),
      );
    expect(files.length).toBeGreaterThan(50);
    // vitest's CLI filters match file paths by substring.
    const outside = files.filter((f) => LAYERS.filter((l) => f.includes(l)).length !== 1);
    expect(outside).toEqual([]);
    for (const layer of LAYERS) expect(files.some((f) => f.startsWith(`${layer}/`))).toBe(true);
  });
});
