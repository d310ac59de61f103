/**
 * Examples shown by `--help` for commands whose help text has none of its own ("Example:" in the
 * help wins). One table, so that every command shows one; a test keeps it complete.
 */
export const EXAMPLES: Readonly<Record<string, readonly string[]>> = {
  serve: [
    'pullwarden serve --config /etc/pullwarden/pullwarden.yaml',
    'PULLWARDEN_LISTEN=0.0.0.0:5050 pullwarden serve        # embedded defaults, all interfaces',
  ],
  check: [
    'pullwarden check --config pullwarden.yaml ghcr.io/acme/app:1.4.2',
    'pullwarden check --config pullwarden.yaml --policy candidate.yaml --json nginx:1.27',
  ],
  'config schema': ['pullwarden config schema > pullwarden.schema.json'],
  'audit query': [
    'pullwarden audit query --config pullwarden.yaml --decision deny --since 24h',
    'pullwarden audit query --dir /var/lib/pullwarden/audit --digest sha256:… --json',
  ],
  'tags history': ['pullwarden tags history --config pullwarden.yaml ghcr.io/acme/app:1.4'],
  'tags pin': ['pullwarden tags pin --config pullwarden.yaml ghcr.io/acme/app:1.4 sha256:…'],
  'tags unpin': ['pullwarden tags unpin --config pullwarden.yaml ghcr.io/acme/app:1.4'],
  'hosts-toml': [
    'pullwarden hosts-toml --config pullwarden.yaml --proxy http://pullwarden.internal:5050 --out /etc/containerd/certs.d',
  ],
  'registries-conf': [
    'pullwarden registries-conf --config pullwarden.yaml --proxy http://pullwarden.internal:5050 \\',
    '    --out /etc/containers/registries.conf.d/pullwarden.conf --policy-json /etc/containers/policy.json',
  ],
  doctor: [
    'pullwarden doctor --config pullwarden.yaml --proxy http://pullwarden.internal:5050 \\',
    '    --canary docker.io/library/busybox:1.36',
  ],
};
