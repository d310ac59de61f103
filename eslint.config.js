// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/*
 * Import boundaries (ARCHITECTURE.md "Modules"): cli → app → http → service →
 * {upstream, cache, metadata, policy, trust, audit} → shared → oci. `shared` holds the words two
 * modules share (units, the glob compiler, signer identity and evidence, decision result, byte range).
 *
 * Encoded with typescript-eslint's `no-restricted-imports` (the core rule plus `allowTypeImports`),
 * one `files` block per module. Every src import is relative with its `.ts` extension, so a module is
 * named by the first path segment after the `../` run; `(\.\./)+upstream/` from `src/cache/x.ts` is
 * `src/upstream/`. The last block that matches a file wins for a rule (flat config does not merge
 * rule options), so each module's block lists its whole fence.
 */

/** Every top-level module of `src/`; a module's only public surface is its `index.ts`. */
const MODULES = [
  'shared',
  'oci',
  'config',
  'upstream',
  'cache',
  'metadata',
  'policy',
  'trust',
  'audit',
  'service',
  'http',
  'cli',
  'cluster',
];
const ADAPTERS = ['upstream', 'cache', 'metadata', 'policy', 'trust', 'audit'];

/**
 * What each module may import (besides itself). `config` below `app` is for types only: that is
 * {@link CONFIG_TYPES_ONLY}, not this table.
 */
const MAY_IMPORT = {
  shared: ['oci'],
  oci: [],
  ...Object.fromEntries(ADAPTERS.map((name) => [name, ['oci', 'shared']])),
  // config composes the adapters' schemas into one; only app/cli/cluster import config's values.
  config: ['oci', 'shared', ...ADAPTERS],
  service: ['oci', 'shared', ...ADAPTERS],
  http: ['oci', 'shared', 'service'],
};
const CONFIG_TYPES_ONLY = new Set([...ADAPTERS, 'service', 'http']);

/** @param {string[]} names */
const oneOf = (names) => `(${names.join('|')})`;
const UP = String.raw`^(\.\./)+`;

/**
 * The fence of one module: a files block for `src/<name>/**`. No file is exempt: a new edge is a
 * change to MAY_IMPORT (and to ARCHITECTURE.md), not a widening for one file.
 * @param {string} name
 */
function fence(name) {
  const allowed = new Set([name, ...(MAY_IMPORT[name] ?? [])]);
  const typesOnly = CONFIG_TYPES_ONLY.has(name);
  const forbidden = MODULES.filter((m) => !allowed.has(m) && !(typesOnly && m === 'config'));
  const layers = `${name} may import ${[...allowed].filter((m) => m !== name).join(', ') || 'nothing in src/'}`;
  /** @type {Array<Record<string, unknown>>} */
  const patterns = [
    {
      regex: `${UP}${oneOf(forbidden)}/`,
      message: `${layers} (ARCHITECTURE.md: cli → app → http → service → adapters → oci; adapters never import each other).`,
    },
    {
      regex: String.raw`${UP}app(\.ts$|/)`,
      message: 'only cli imports the composition root (src/app.ts, src/app/).',
    },
    {
      regex: String.raw`${UP}${oneOf(MODULES.filter((m) => m !== name))}/(?!index\.ts$)`,
      message: 'import another module through its index.ts (its only public surface), not past it.',
    },
  ];
  if (typesOnly) {
    patterns.push({
      regex: String.raw`${UP}config/index\.ts$`,
      allowTypeImports: true,
      message: 'config is imported below app for types only: use `import type`.',
    });
  }
  return {
    files: [`src/${name}/**/*.ts`],
    rules: { '@typescript-eslint/no-restricted-imports': ['error', { patterns }] },
  };
}

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'coverage/**', 'bin/**', 'eslint.config.js'] },
  js.configs.recommended,
  ...tseslint.configs.strictTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/restrict-template-expressions': ['error', { allowNumber: true }],
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-unnecessary-condition': 'off',
      '@typescript-eslint/no-confusing-void-expression': 'off',
    },
  },
  // --- import boundaries: one block per module below app --------------------------------------
  ...Object.keys(MAY_IMPORT).map(fence),
  // --- import boundaries: the process zone (cli, app, cluster) --------------------------------
  // PERMISSIVE FOR NOW: helper "app" (issue 10, branch i10-app) tightens this zone — cli goes
  // through app (no second composition root in cli/commands/tags.ts), cluster beside app. Until
  // then it only forbids deep imports into the modules below it.
  {
    files: ['src/cli/**/*.ts', 'src/app.ts', 'src/app/**/*.ts', 'src/cluster/**/*.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              regex: String.raw`^(\./|(\.\./)+)${oneOf(Object.keys(MAY_IMPORT))}/(?!index\.ts$)`,
              message: 'import a module through its index.ts (its only public surface), not past it.',
            },
          ],
        },
      ],
    },
  },
  {
    files: ['test/**', 'bench/**'],
    rules: {
      '@typescript-eslint/no-non-null-assertion': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
    },
  },
);
