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

/** `./x/` or `../x/` (any depth): the process zone's files sit at `src/` (app.ts) and below it. */
const REL = String.raw`^(\./|(\.\./)+)`;
/** @param {string[]} names */
const pastIndex = (names) => ({
  regex: String.raw`${REL}${oneOf(names)}/(?!index\.ts$)`,
  message: 'import another module through its index.ts (its only public surface), not past it.',
});

/**
 * The process zone, no exceptions:
 * - cli (commands, their output) → app, config, oci, shared. It reaches every module below through
 *   the app only: src/app.ts (the server side, loaded lazily by `serve` and `check`) or
 *   src/app/tools.ts (the commands that start no server: audit query/verify of a trail, inventory,
 *   tag pins, config file checks). Pure offline tools go through app/tools.ts too, so that no command
 *   builds an adapter (a second composition root). config's values are the cli's to use: loading,
 *   validating and printing a config happens above app.
 * - app (src/app.ts, the composition root src/app/compose.ts, the lifecycle src/app/lifecycle.ts …)
 *   → everything below it, each module through its index.ts; never cli; its files never import the
 *   src/app.ts surface back.
 * - cluster (the primary: storage lock, the one audit writer, TUF fetch, reload fan-out; the worker's
 *   IPC) sits beside app, which starts it and hands it nothing but config: → config, audit, cache,
 *   oci, shared; never app, cli, http, service or the other adapters.
 */
function processFences() {
  const below = MODULES.filter((m) => !['cli', 'app'].includes(m));
  const cliMay = ['config', 'oci', 'shared'];
  const clusterMay = ['config', 'audit', 'cache', 'oci', 'shared'];
  /** @param {string[]} files @param {Array<Record<string, unknown>>} patterns */
  const block = (files, patterns) => ({
    files,
    rules: { '@typescript-eslint/no-restricted-imports': ['error', { patterns }] },
  });
  return [
    block(
      ['src/cli/**/*.ts'],
      [
        {
          regex: String.raw`${UP}${oneOf(below.filter((m) => !cliMay.includes(m)))}/`,
          message: `cli may import app (src/app.ts, src/app/tools.ts), ${cliMay.join(', ')}: every other module through the app (no second composition root in a command).`,
        },
        {
          regex: String.raw`${UP}app/(?!tools\.ts$)`,
          message: 'cli reaches the app through src/app.ts or src/app/tools.ts, not past them.',
        },
        pastIndex(cliMay),
      ],
    ),
    block(
      ['src/app.ts', 'src/app/**/*.ts'],
      [
        { regex: String.raw`${REL}cli/`, message: 'app never imports cli (cli → app).' },
        {
          regex: String.raw`^\.\./app\.ts$`,
          message: 'src/app/ files import each other, not the src/app.ts surface (no cycle through it).',
        },
        pastIndex(below),
      ],
    ),
    block(
      ['src/cluster/**/*.ts'],
      [
        {
          regex: String.raw`${UP}(${oneOf(MODULES.filter((m) => m !== 'cluster' && !clusterMay.includes(m)))}/|app(\.ts$|/))`,
          message: `cluster may import ${clusterMay.join(', ')}: app starts it and hands it the rest.`,
        },
        pastIndex(clusterMay),
      ],
    ),
  ];
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
  // --- import boundaries: the process zone (cli → app → everything below; cluster beside app) ---
  ...processFences(),
  {
    files: ['test/**', 'bench/**'],
    rules: {
      '@typescript-eslint/no-non-null-assertion': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
    },
  },
);
