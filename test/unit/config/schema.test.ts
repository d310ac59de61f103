import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  configSchema,
  jsonSchema,
  loadConfig,
  parseDuration,
  parseSize,
  redactConfig,
  REDACTED,
} from '../../../src/config/index.ts';

const example = fileURLToPath(new URL('../../../config/pullwarden.example.yaml', import.meta.url));

describe('config/pullwarden.example.yaml', () => {
  it('validates, with every upstream of the embedded defaults', async () => {
    const config = await loadConfig(example, {}, { resolveSecrets: false });
    expect(Object.keys(config.upstreams)).toHaveLength(6);
    expect(config.upstreams['ghcr.io']?.tagTTL).toBe(60_000);
  });

  it('mentions every key of the schema', async () => {
    const text = await readFile(example, 'utf8');
    // Keys, set or commented out ("# passwordFile: ..."), one per line.
    const keys = new Set(
      text.split('\n').flatMap((line) => /^\s*(?:#\s*)?([A-Za-z][\w.-]*):(?:\s|$)/.exec(line)?.[1] ?? []),
    );
    const schemaKeys = new Set<string>();
    const walkSchema = (node: unknown) => {
      if (node === null || typeof node !== 'object') return;
      const props = (node as { properties?: Record<string, unknown> }).properties;
      for (const [k, v] of Object.entries(props ?? {})) {
        schemaKeys.add(k);
        walkSchema(v);
      }
      walkSchema((node as { additionalProperties?: unknown }).additionalProperties);
    };
    walkSchema(jsonSchema());
    expect([...schemaKeys].filter((k) => !keys.has(k))).toEqual([]);
  });
});

describe('jsonSchema', () => {
  it('is JSON with upstreams required, durations and sizes as patterned strings', () => {
    const schema = JSON.parse(JSON.stringify(jsonSchema())) as {
      required: string[];
      additionalProperties: boolean;
      properties: Record<string, { additionalProperties: { properties: Record<string, unknown> } }>;
    };
    expect(schema.required).toContain('upstreams');
    expect(schema.additionalProperties).toBe(false);
    const tagTTL = schema.properties['upstreams']?.additionalProperties.properties['tagTTL'];
    expect(tagTTL).toMatchObject({
      default: '30s',
      anyOf: [{ type: 'string', pattern: expect.any(String) as string }, { type: 'number' }],
    });
  });
});

describe('units', () => {
  it('parses durations into milliseconds; a bare number is seconds', () => {
    expect(parseDuration('250ms')).toBe(250);
    expect(parseDuration('30s')).toBe(30_000);
    expect(parseDuration('1.5h')).toBe(5_400_000);
    expect(parseDuration(30)).toBe(30_000);
    expect(parseDuration('30 minutes')).toBeUndefined();
    expect(parseDuration(-1)).toBeUndefined();
  });

  it('parses sizes into bytes; a bare number is bytes', () => {
    expect(parseSize('4MiB')).toBe(4 * 1024 * 1024);
    expect(parseSize('500MB')).toBe(500_000_000);
    expect(parseSize(1024)).toBe(1024);
    expect(parseSize('5 parsecs')).toBeUndefined();
  });

  it('accepts the same strings the JSON Schema pattern accepts', () => {
    expect(configSchema.safeParse({ upstreams: { 'a.io': { tagTTL: '7d' } } }).success).toBe(true);
    expect(configSchema.safeParse({ upstreams: { 'a.io': { tagTTL: '7 days' } } }).success).toBe(false);
  });
});

describe('redactConfig', () => {
  it('replaces passwords and URL credentials, leaving everything else', () => {
    const config = {
      upstreams: { 'ghcr.io': { username: 'bot', password: 's3cret', url: 'https://ghcr.io' } },
      metadata: { url: 'redis://:r3dis@redis:6379/0', password: 'r3dis' },
    };
    const redacted = redactConfig(config);
    expect(redacted).toEqual({
      upstreams: { 'ghcr.io': { username: 'bot', password: REDACTED, url: 'https://ghcr.io' } },
      metadata: { url: `redis://:${REDACTED}@redis:6379/0`, password: REDACTED },
    });
    expect(JSON.stringify(redacted)).not.toMatch(/s3cret|r3dis/);
    expect(config.upstreams['ghcr.io'].password).toBe('s3cret');
  });
});

describe('README.md', () => {
  it('documents every key of the schema', async () => {
    const readme = await readFile(fileURLToPath(new URL('../../../README.md', import.meta.url)), 'utf8');
    // Leaf keys (values, not sections): named in backticks, by full path or by name.
    const leaves: string[] = [];
    const walk = (node: unknown, path: string[]) => {
      if (node === null || typeof node !== 'object') return;
      const n = node as {
        properties?: Record<string, unknown>;
        additionalProperties?: unknown;
        items?: unknown;
        anyOf?: unknown[];
      };
      for (const [k, v] of Object.entries(n.properties ?? {})) {
        const child = v as { properties?: unknown };
        if (child.properties === undefined) leaves.push([...path, k].join('.'));
        walk(v, [...path, k]);
      }
      if (typeof n.additionalProperties === 'object') walk(n.additionalProperties, [...path, '*']);
      if (n.items !== undefined) walk(n.items, [...path, '#']);
      for (const option of n.anyOf ?? []) walk(option, path);
    };
    walk(jsonSchema(), []);
    // Named in backticks (`tagTTL`, `upstreams.<host>.tagTTL`) or as a key in a YAML example.
    const documented = (path: string) => {
      const name = path.split('.').at(-1) ?? '';
      return new RegExp(`(?:\`|\\.|^\\s*(?:- )?|[{,] *)${name}(?=[\`:.= ]|$)`, 'm').test(readme);
    };
    expect([...new Set(leaves)].filter((p) => !documented(p))).toEqual([]);
  });
});
