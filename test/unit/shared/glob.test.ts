import { describe, expect, it } from 'vitest';
import { anyGlobToRegExp, globToRegExp, PATH_GLOB, pathGlobProblem } from '../../../src/shared/index.ts';
import type { GlobOptions } from '../../../src/shared/index.ts';

const ANY: GlobOptions = { star: 'any' };
const COMPONENT: GlobOptions = { star: 'component' };
const matches = (glob: string, options: GlobOptions, text: string) => globToRegExp(glob, options).test(text);

describe('the one glob compiler', () => {
  it('anchors every glob at both ends, whatever the dialect', () => {
    for (const options of [ANY, COMPONENT, PATH_GLOB, { star: 'component', doubleStar: 'any' } as const]) {
      expect(matches('acme/app', options, 'acme/app')).toBe(true);
      expect(matches('acme/app', options, 'evil/acme/app')).toBe(false);
      expect(matches('acme/app', options, 'acme/app-fork')).toBe(false);
    }
    expect(matches('https://github.com/acme/*', ANY, 'x https://github.com/acme/a')).toBe(false);
  });

  it('keeps every character but the wildcards literal, regex metacharacters included', () => {
    expect(matches('a.b', ANY, 'axb')).toBe(false);
    expect(matches('a+(b)?[c]{1}|^$\\', ANY, 'a+(b)?[c]{1}|^$\\')).toBe(true);
    expect(matches('127.0.0.1:5000/acme/*', PATH_GLOB, '127.0.0.1:5000/acme/app')).toBe(true);
    expect(matches('127.0.0.1:5000/acme/*', PATH_GLOB, '127x0x0x1:5000/acme/app')).toBe(false);
  });

  it("lets * cross '/' only with star: 'any'", () => {
    expect(matches('acme/*', ANY, 'acme/a/b')).toBe(true);
    expect(matches('acme/*', COMPONENT, 'acme/a')).toBe(true);
    expect(matches('acme/*', COMPONENT, 'acme/a/b')).toBe(false);
    expect(matches('a*c', COMPONENT, 'abbc')).toBe(true);
  });

  it('reads ** by doubleStar: path components, any run, or two stars', () => {
    // path: whole components; trailing = one or more, middle = zero or more, leading = zero or more.
    expect(matches('**', PATH_GLOB, 'anything/at/all')).toBe(true);
    expect(matches('ghcr.io/acme/**', PATH_GLOB, 'ghcr.io/acme/team/app')).toBe(true);
    expect(matches('ghcr.io/acme/**', PATH_GLOB, 'ghcr.io/acme')).toBe(false);
    expect(matches('a/**/b', PATH_GLOB, 'a/b')).toBe(true);
    expect(matches('a/**/b', PATH_GLOB, 'a/x/y/b')).toBe(true);
    expect(matches('**/b/c', PATH_GLOB, 'b/c')).toBe(true);
    expect(matches('**/b/c', PATH_GLOB, 'x/y/b/c')).toBe(true);
    // any: a run that crosses '/', wherever it stands.
    const anyRun: GlobOptions = { star: 'component', doubleStar: 'any' };
    expect(matches('acme/**', anyRun, 'acme/a/b')).toBe(true);
    expect(matches('ac**', anyRun, 'acme/a/b')).toBe(true);
    // neither: two single stars, still within one component.
    expect(matches('acme/**', COMPONENT, 'acme/a/b')).toBe(false);
  });

  it('rejects a path glob the grammar does not allow, and throws on compiling it', () => {
    expect(pathGlobProblem('ghcr.io/acme/**')).toBeUndefined();
    expect(pathGlobProblem('ghcr.io')).toMatch(/<upstream host>\/<repository glob>/);
    expect(pathGlobProblem('ghcr.io/acme**')).toMatch(/whole path component/);
    expect(() => globToRegExp('ghcr.io', PATH_GLOB)).toThrow(/invalid policy glob "ghcr.io"/);
    // Other dialects have no grammar to break: "acme**" is a glob like any other.
    expect(matches('acme**', { star: 'component', doubleStar: 'any' }, 'acme/x')).toBe(true);
  });

  it('reads ? as one character only when asked, and never as / within components', () => {
    expect(matches('ngin?', { star: 'any', question: true }, 'nginx')).toBe(true);
    expect(matches('ngin?', ANY, 'nginx')).toBe(false);
    expect(matches('ngin?', ANY, 'ngin?')).toBe(true);
    expect(matches('a?b', { star: 'component', question: true }, 'a/b')).toBe(false);
    expect(matches('a?b', { star: 'any', question: true }, 'a/b')).toBe(true);
  });

  it('ignores case only with ignoreCase', () => {
    expect(matches('GHCR.io/acme/*', PATH_GLOB, 'ghcr.IO/acme/app')).toBe(true);
    expect(matches('Latest', { star: 'any', question: true }, 'latest')).toBe(false);
  });

  it('unions globs into one expression that matches none when there are none', () => {
    const re = anyGlobToRegExp(['docker.io/library/*', 'ghcr.io/acme/**'], PATH_GLOB);
    expect(re.test('docker.io/library/nginx')).toBe(true);
    expect(re.test('ghcr.io/acme/a/b')).toBe(true);
    expect(re.test('quay.io/x/y')).toBe(false);
    expect(anyGlobToRegExp([], PATH_GLOB).test('')).toBe(false);
  });
});
