import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // e2e suites start real registries and container runtimes; they share ports and root-owned state.
    fileParallelism: false,
    reporters: ['default'],
  },
});
