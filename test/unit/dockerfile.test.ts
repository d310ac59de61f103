import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { validate } from 'dockerfile-utils';
import { describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '../..');
const dockerfile = await readFile(join(root, 'Dockerfile'), 'utf8');
/** Instructions with line continuations joined, comments dropped. */
const instructions = dockerfile
  .replace(/\\\n/g, ' ')
  .split('\n')
  .map((l) => l.trim())
  .filter((l) => l !== '' && !l.startsWith('#'));
const stages = instructions.filter((l) => /^FROM\s/i.test(l));
const final = instructions.slice(instructions.lastIndexOf(stages.at(-1)!));

describe('Dockerfile (no Docker engine here: linted and checked statically)', () => {
  it('has no lint findings (dockerfile-utils, the validator of the Dockerfile language server)', () => {
    const findings = validate(dockerfile).map((d) => {
      const message = typeof d.message === 'string' ? d.message : d.message.value;
      return `line ${d.range.start.line + 1}: ${message}`;
    });
    expect(findings).toEqual([]);
  });

  it('is multi-stage on Node 24 and ships production dependencies only', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    expect(dockerfile).toMatch(/ARG NODE_IMAGE=node:24-/);
    expect(final.some((l) => /npm (ci|install)/.test(l))).toBe(false);
    expect(dockerfile).toMatch(/npm prune --omit=dev/);
  });

  it('runs as a non-root user with a health check, OCI labels and data on a volume', () => {
    const user = final.filter((l) => l.startsWith('USER ')).at(-1);
    expect(user).toBeDefined();
    expect(user).not.toMatch(/USER\s+(root|0)\b/);
    expect(final.some((l) => l.startsWith('HEALTHCHECK '))).toBe(true);
    for (const label of ['title', 'description', 'version', 'licenses', 'source']) {
      expect(dockerfile).toContain(`org.opencontainers.image.${label}=`);
    }
    expect(final.some((l) => l.startsWith('VOLUME '))).toBe(true);
    expect(dockerfile).toContain('PULLWARDEN_STORAGE_DIR=/var/lib/pullwarden');
  });

  it('pins base images only by real digests, and says how to pin when none could be looked up', () => {
    for (const from of stages) {
      // A digest here must have been looked up, never invented; without one the pinning step is documented.
      if (from.includes('@sha256:')) expect(from).toMatch(/@sha256:[a-f0-9]{64}/);
    }
    if (!dockerfile.includes('@sha256:')) expect(dockerfile).toMatch(/Pin before you ship/);
  });

  it('copies only paths that exist in the repository', () => {
    for (const line of instructions.filter((l) => l.startsWith('COPY ') && !l.includes('--from='))) {
      const parts = line.split(/\s+/).slice(1, -1);
      for (const src of parts) expect(existsSync(join(root, src)), src).toBe(true);
    }
  });
});
