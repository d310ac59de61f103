import { describe, expect, it } from 'vitest';
import { compileMatcher, globProblem, policyGlob as globToRegExp } from '../../../src/policy/index.ts';

const matches = (glob: string, subject: string) => globToRegExp(glob).test(subject);

describe('policy globs over <upstream>/<repository>', () => {
  it('"*" matches within one path component only', () => {
    expect(matches('docker.io/library/*', 'docker.io/library/nginx')).toBe(true);
    expect(matches('docker.io/library/*', 'docker.io/library/a/b')).toBe(false);
    expect(matches('docker.io/library/*', 'docker.io/acme/nginx')).toBe(false);
    expect(matches('docker.io/library/ng*x', 'docker.io/library/nginx')).toBe(true);
    expect(matches('*/library/nginx', 'quay.io/library/nginx')).toBe(true);
  });

  it('"a/**" matches one or more components below a', () => {
    expect(matches('ghcr.io/acme/**', 'ghcr.io/acme/app')).toBe(true);
    expect(matches('ghcr.io/acme/**', 'ghcr.io/acme/team/app')).toBe(true);
    expect(matches('ghcr.io/acme/**', 'ghcr.io/acme')).toBe(false);
    expect(matches('ghcr.io/acme/**', 'ghcr.io/acmecorp/app')).toBe(false);
    expect(matches('ghcr.io/acme/**', 'evil.io/ghcr.io/acme/app')).toBe(false);
  });

  it('"**" alone matches everything; in the middle or in front it may match nothing', () => {
    expect(matches('**', 'docker.io/library/nginx')).toBe(true);
    expect(matches('**', 'a/b/c/d/e')).toBe(true);
    expect(matches('ghcr.io/**/app', 'ghcr.io/app')).toBe(true);
    expect(matches('ghcr.io/**/app', 'ghcr.io/acme/team/app')).toBe(true);
    expect(matches('ghcr.io/**/app', 'ghcr.io/acme/app2')).toBe(false);
    expect(matches('**/nginx', 'docker.io/library/nginx')).toBe(true);
    expect(matches('**/nginx', 'docker.io/library/nginx-x')).toBe(false);
  });

  it('treats dots, ports and other regex characters literally', () => {
    expect(matches('127.0.0.1:5000/acme/*', '127.0.0.1:5000/acme/app')).toBe(true);
    expect(matches('127.0.0.1:5000/acme/*', '127.0.0.1:5001/acme/app')).toBe(false);
    expect(matches('127.0.0.1:5000/acme/*', '127x0x0x1:5000/acme/app')).toBe(false);
    expect(matches('ghcr.io/a+b/(x)', 'ghcr.io/a+b/(x)')).toBe(true);
    expect(matches('ghcr.io/a+b/(x)', 'ghcr.io/aab/x')).toBe(false);
  });

  it('ignores the case of the host', () => {
    expect(matches('ghcr.io/acme/*', 'GHCR.io/acme/app')).toBe(true);
  });

  it('compiles a list of globs into one predicate', () => {
    const m = compileMatcher(['docker.io/library/*', 'ghcr.io/acme/**']);
    expect(m('docker.io/library/nginx')).toBe(true);
    expect(m('ghcr.io/acme/a/b')).toBe(true);
    expect(m('quay.io/acme/app')).toBe(false);
    expect(compileMatcher([])('docker.io/library/nginx')).toBe(false);
  });

  it('explains unusable globs', () => {
    expect(globProblem('ghcr.io/acme/**')).toBeUndefined();
    expect(globProblem('**')).toBeUndefined();
    expect(globProblem('')).toMatch(/expected a glob/);
    expect(globProblem('ghcr.io')).toMatch(/<upstream host>\/<repository glob>/);
    expect(globProblem('ghcr.io/acme**')).toMatch(/whole path component/);
    expect(globProblem('ghcr.io//acme')).toMatch(/empty path components/);
    expect(globProblem('ghcr.io/acme/')).toMatch(/empty path components/);
    expect(globProblem('ghcr.io/ac me')).toMatch(/whitespace/);
    expect(() => globToRegExp('ghcr.io')).toThrow(/invalid policy glob "ghcr.io"/);
  });
});
