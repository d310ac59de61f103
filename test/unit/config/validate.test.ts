import { execFile } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import bcrypt from 'bcryptjs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FILE_KEYS, jsonSchema } from '../../../src/config/index.ts';
import { createTestSigstore } from '../../support/signer.ts';
import { runCli } from '../../support/cli.ts';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const execFileP = promisify(execFile);

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pw-validate-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function validate(...args: string[]) {
  const r = await runCli(['config', 'validate', ...args], dir);
  return { ...r, lines: r.stderr.split('\n').filter((l) => l !== '') };
}

const publicKeyPem = () =>
  generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'pem' });

/** A self-signed certificate and its key, made by openssl (as an operator would). */
async function selfSigned(name: string): Promise<void> {
  await execFileP(
    'openssl',
    [
      ...['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'],
      ...['-keyout', `${name}.key`, '-out', `${name}.pem`, '-days', '1', '-subj', `/CN=${name}`],
    ],
    { cwd: dir },
  );
}

/** The line number (1-based) of the first line of `text` that contains `needle` after `after`. */
function lineOf(text: string, needle: string, after = 0): number {
  const lines = text.split('\n');
  const i = lines.findIndex((l, n) => n >= after && l.includes(needle));
  if (i < 0) throw new Error(`"${needle}" not in the test file`);
  return i + 1;
}

describe('config validate: everything serve would refuse, in one run', () => {
  it('lists schema, reference and file problems together, each at its own key', async () => {
    await writeFile(join(dir, 'notakey.pem'), 'hello\n');
    await writeFile(join(dir, 'users.htpasswd'), 'alice:plaintext\n');
    const text = [
      'upstreams:',
      '  ghcr.io: { tagTTL: later }',
      'defaultUpstream: ghcr.oi',
      'trust:',
      '  roots:',
      '    private: { file: missing-root.json }',
      '  keys:',
      '    release: { file: missing.pem }',
      '    scanner: { file: notakey.pem }',
      '  kevCatalog: kev.json',
      'auth:',
      '  htpasswd: users.htpasswd',
      'policies:',
      '  - name: first',
      "    match: ['ghcr.io/acme/**']",
      '    action: verfy',
      '    signatures:',
      '      attestors: [{ key: relase }]',
      '  - name: second',
      "    match: ['**']",
      '    action: verify',
      '    signatures:',
      '      attestors:',
      '        - keyless: { root: private, issuer: https://token.actions.githubusercontent.com, subject: x }',
      '        - key: nokey',
      '',
    ].join('\n');
    await writeFile(join(dir, 'pw.yaml'), text);
    const result = await validate('pw.yaml');
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    const at = (needle: string, col: number, rest: string, after = 0) =>
      `<dir>/pw.yaml:${lineOf(text, needle, after)}:${col}: ${rest}`;
    // Every expected line, in the order of the file.
    expect(result.lines.map((l) => l.replaceAll(dir, '<dir>'))).toEqual([
      at(
        'tagTTL',
        14,
        'upstreams.ghcr.io.tagTTL: expected a duration such as "30s" (number + ms, s, m, h or d)',
      ),
      at(
        'defaultUpstream',
        1,
        'defaultUpstream: expected one of the configured upstreams ("ghcr.io") (did you mean "ghcr.io"?)',
      ),
      at(
        'missing-root.json',
        16,
        'trust.roots.private.file: cannot read <dir>/missing-root.json: no such file',
      ),
      at('missing.pem', 16, 'trust.keys.release.file: cannot read <dir>/missing.pem: no such file'),
      at('notakey.pem', 16, 'trust.keys.scanner.file: <dir>/notakey.pem: key scanner: not a PEM public key'),
      at('kevCatalog', 3, 'trust.kevCatalog: cannot read <dir>/kev.json: no such file'),
      at('htpasswd', 3, 'auth.htpasswd: <dir>/users.htpasswd:1: expected "user:<bcrypt hash>" (htpasswd -B)'),
      at('verfy', 5, 'policies.0.action: expected one of "allow", "deny", "verify" (did you mean "verify"?)'),
      at(
        'relase',
        21,
        'policies.0.signatures.attestors.0.key: unknown key "relase" (did you mean "release"?) (known: release, scanner)',
      ),
      at(
        'key: nokey',
        11,
        'policies.1.signatures.attestors.1.key: unknown key "nokey" (known: release, scanner)',
      ),
    ]);
  });

  it('accepts the same files when they are what serve needs, and says ok', async () => {
    await writeFile(join(dir, 'release.pub'), publicKeyPem());
    const sigstore = await createTestSigstore();
    await writeFile(join(dir, 'trusted_root.json'), JSON.stringify(sigstore.trustedRootJSON));
    await writeFile(join(dir, 'kev.json'), JSON.stringify({ catalogVersion: '1', vulnerabilities: [] }));
    await writeFile(join(dir, 'users.htpasswd'), `alice:${bcrypt.hashSync('pw', 4)}\n`);
    await selfSigned('server');
    await selfSigned('clients');
    await writeFile(
      join(dir, 'pw.yaml'),
      [
        'upstreams: { ghcr.io: { caFile: clients.pem } }',
        'storage: { dir: data/cache }',
        'trust:',
        '  roots: { private: { file: trusted_root.json } }',
        '  keys: { release: { file: release.pub } }',
        '  kevCatalog: kev.json',
        'auth: { htpasswd: users.htpasswd }',
        'server: { tls: { certFile: server.pem, keyFile: server.key, clientCAFile: clients.pem } }',
        'policies: [{ name: p, match: ["**"], action: verify, signatures: { attestors: [{ key: release }] } }]',
        '',
      ].join('\n'),
    );
    expect(await validate('pw.yaml')).toMatchObject({ code: 0, stdout: 'pw.yaml: ok (1 upstream)\n' });
  });

  it('finds a trusted root that is not one, TLS files that do not parse or belong together, an empty CA bundle, a directory that is a file', async () => {
    await writeFile(join(dir, 'root.json'), JSON.stringify({ mediaType: 'application/json' }));
    await writeFile(join(dir, 'kev.json'), '{"vulnerabilities": 3}');
    await selfSigned('server');
    await selfSigned('other');
    await writeFile(join(dir, 'ca.pem'), 'not a certificate\n');
    await writeFile(join(dir, 'plainfile'), 'x');
    await writeFile(
      join(dir, 'pw.yaml'),
      [
        'upstreams: { ghcr.io: { caFile: ca.pem } }',
        'storage: { dir: plainfile/cache }',
        'trust: { roots: { private: { file: root.json } }, kevCatalog: kev.json }',
        'server: { tls: { certFile: server.pem, keyFile: other.key } }',
        "policies: [{ name: all, match: ['**'], action: allow }]",
        '',
      ].join('\n'),
    );
    const { code, lines } = await validate('pw.yaml');
    expect(code).toBe(1);
    const text = lines.map((l) => l.replaceAll(dir, '<dir>')).join('\n');
    expect(text).toContain(
      '<dir>/pw.yaml:1:25: upstreams.ghcr.io.caFile: <dir>/ca.pem: no PEM certificate in the CA bundle',
    );
    expect(text).toContain(
      '<dir>/pw.yaml:2:12: storage.dir: cannot create <dir>/plainfile/cache: <dir>/plainfile is not a directory',
    );
    expect(text).toContain(
      'trust.roots.private.file: <dir>/root.json: the file is not a Sigstore trusted root (mediaType application/json)',
    );
    expect(text).toContain(
      'trust.kevCatalog: <dir>/kev.json: KEV catalog has no "vulnerabilities" list (CISA KEV JSON format)',
    );
    expect(text).toContain('server.tls.keyFile: the private key does not belong to server.tls.certFile');
    expect(lines).toHaveLength(5);
  });

  it('reports missing secret variables and token files with the schema problems, at their own keys', async () => {
    await writeFile(
      join(dir, 'pw.yaml'),
      [
        'upstreams: { ghcr.io: { username: u, passwordEnv: GHCR_TOKEN } }',
        'log: { level: loud }',
        'auth:',
        '  tokens:',
        '    - { name: ci, tokenFile: ci-token, repositories: ["**"] }',
        '    - { name: bot, tokenEnv: BOT_TOKEN, repositories: ["**"] }',
        '',
      ].join('\n'),
    );
    const { code, lines } = await validate('pw.yaml');
    expect(code).toBe(1);
    expect(lines.map((l) => l.replaceAll(dir, '<dir>'))).toEqual([
      '<dir>/pw.yaml:1:38: upstreams.ghcr.io.passwordEnv: environment variable GHCR_TOKEN is not set or empty',
      expect.stringMatching(/^<dir>\/pw\.yaml:2:8: log\.level: expected one of/) as string,
      '<dir>/pw.yaml:5:19: auth.tokens.0.tokenFile: cannot read secret file <dir>/ci-token: no such file',
      '<dir>/pw.yaml:6:20: auth.tokens.1.tokenEnv: environment variable BOT_TOKEN is not set or empty',
    ]);
  });

  it('checks an inline PEM key as serve loads it', async () => {
    await writeFile(
      join(dir, 'pw.yaml'),
      'upstreams: { ghcr.io: {} }\ntrust:\n  keys:\n    k: { pem: "-----BEGIN PUBLIC KEY-----\\nMFkw\\n-----END PUBLIC KEY-----" }\n',
    );
    const { code, lines } = await validate('pw.yaml');
    expect(code).toBe(1);
    expect(lines.map((l) => l.replaceAll(dir, '<dir>'))).toEqual([
      '<dir>/pw.yaml:4:10: trust.keys.k.pem: key k: not a PEM public key',
    ]);
  });

  it('skips file checks with --skip-files and secrets with --skip-secrets', async () => {
    await writeFile(
      join(dir, 'pw.yaml'),
      'upstreams: { ghcr.io: { username: u, passwordFile: secret } }\ntrust: { keys: { k: { file: k.pem } } }\n',
    );
    const both = await validate('pw.yaml');
    expect(both.lines.map((l) => l.replaceAll(dir, '<dir>'))).toEqual([
      '<dir>/pw.yaml:1:38: upstreams.ghcr.io.passwordFile: cannot read secret file <dir>/secret: no such file',
      '<dir>/pw.yaml:2:23: trust.keys.k.file: cannot read <dir>/k.pem: no such file',
    ]);
    expect((await validate('--skip-files', 'pw.yaml')).lines).toHaveLength(1);
    expect((await validate('--skip-secrets', 'pw.yaml')).lines).toHaveLength(1);
    expect(await validate('--skip-secrets', '--skip-files', '--config', 'pw.yaml')).toMatchObject({
      code: 0,
    });
  });

  it('reports a schema problem and a missing file of the same run in a real process', async () => {
    await writeFile(
      join(dir, 'pw.yaml'),
      'upstreams: { ghcr.io: {} }\nlog: { level: verbose }\nauth: { htpasswd: nope }\n',
    );
    const result = await execFileP(
      process.execPath,
      [join(root, 'src/cli/run.ts'), 'config', 'validate', 'pw.yaml'],
      {
        cwd: dir,
        env: {},
      },
    ).then(
      () => ({ code: 0, stderr: '' }),
      (e: unknown) => e as { code: number; stderr: string },
    );
    expect(result.code).toBe(1);
    expect(result.stderr.replaceAll(dir, '<dir>')).toBe(
      '<dir>/pw.yaml:2:8: log.level: expected one of "fatal", "error", "warn", "info", "debug", "trace", "silent"\n' +
        '<dir>/pw.yaml:3:9: auth.htpasswd: cannot read <dir>/nope: no such file\n',
    );
  });
});

describe('FILE_KEYS', () => {
  it('lists every key of the schema that names a file or directory', () => {
    const found: string[] = [];
    const walk = (node: unknown, path: string[]) => {
      if (node === null || typeof node !== 'object') return;
      const n = node as {
        properties?: Record<string, unknown>;
        additionalProperties?: unknown;
        items?: unknown;
        anyOf?: unknown[];
      };
      for (const [k, v] of Object.entries(n.properties ?? {})) {
        if (/(?:^file|File|Dir|^dir|htpasswd|kevCatalog)$/.test(k)) found.push([...path, k].join('.'));
        walk(v, [...path, k]);
      }
      if (n.additionalProperties !== undefined) walk(n.additionalProperties, [...path, '*']);
      if (n.items !== undefined) walk(n.items, [...path, '#']);
      for (const option of n.anyOf ?? []) walk(option, path);
    };
    walk(jsonSchema(), []);
    // policies.#.gates… are not files; every other match must be checked.
    const listed = new Set(FILE_KEYS.map((k) => k.path.join('.')));
    expect([...new Set(found)].filter((p) => !listed.has(p))).toEqual([]);
  });
});
