#!/usr/bin/env node
// Entry point of the published package: runs the compiled CLI (npm run build writes dist/).
//
// Run directly (`./bin/pullwarden.js`), the shebang picks whatever `node` is first on PATH, often
// an older system Node. The CLI needs node:sqlite and the Node versions our dependencies support
// (package.json `engines`), so check the running version first and say in one line what to do,
// instead of a stack trace from the first import that needs a newer runtime.
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const pkgFile = fileURLToPath(new URL('../package.json', import.meta.url));
const needed = JSON.parse(readFileSync(pkgFile, 'utf8')).engines.node;

/** @returns {boolean | undefined} undefined when semver is not installed (no `npm ci` yet) */
function supported() {
  try {
    const semver = require('semver');
    return semver.satisfies(process.versions.node, needed);
  } catch {
    return undefined;
  }
}

const ok = supported();
if (ok === false) {
  process.stderr.write(
    `pullwarden: needs Node.js ${needed}, this is ${process.version} (${process.execPath}); ` +
      'run `npm ci` in the pullwarden checkout, then `npm start` or `npx pullwarden …` ' +
      '(both use the Node 24 that npm ci installs), or install Node 24 from https://nodejs.org\n',
  );
  process.exit(2);
}
if (ok === undefined) {
  process.stderr.write(
    'pullwarden: dependencies are not installed: run `npm ci` in the pullwarden checkout\n',
  );
  process.exit(2);
}
if (!existsSync(fileURLToPath(new URL('../dist/cli/main.js', import.meta.url)))) {
  process.stderr.write(
    'pullwarden: dist/ is not built: run `npm run build` (or `npm start`) in the pullwarden checkout\n',
  );
  process.exit(2);
}

const { runCli } = await import('../dist/cli/main.js');
await runCli(process.argv.slice(2));
