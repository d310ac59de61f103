/**
 * The Kubernetes manifests in deploy/kubernetes: every file parses and is listed by its kustomization,
 * every built-in object validates against the Kubernetes OpenAPI schemas (kubernetes-models, offline)
 * with unknown fields refused, the ServiceMonitor (a CRD) against a schema kept here, the pullwarden
 * config in the ConfigMap loads with the real loader in the environment the pod gives it, and the
 * hosts.toml files are what `pullwarden hosts-toml` writes for the Service address.
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { z } from 'zod';
import { validate as vNamespace } from 'kubernetes-models/_schemas/IoK8sApiCoreV1Namespace';
import { validate as vConfigMap } from 'kubernetes-models/_schemas/IoK8sApiCoreV1ConfigMap';
import { validate as vService } from 'kubernetes-models/_schemas/IoK8sApiCoreV1Service';
import { validate as vDeployment } from 'kubernetes-models/_schemas/IoK8sApiAppsV1Deployment';
import { validate as vStatefulSet } from 'kubernetes-models/_schemas/IoK8sApiAppsV1StatefulSet';
import { validate as vDaemonSet } from 'kubernetes-models/_schemas/IoK8sApiAppsV1DaemonSet';
import { validate as vPdb } from 'kubernetes-models/_schemas/IoK8sApiPolicyV1PodDisruptionBudget';
import { validate as vNetworkPolicy } from 'kubernetes-models/_schemas/IoK8sApiNetworkingV1NetworkPolicy';
import { runCli } from '../support/cli.ts';
import { containerdHostDirs } from '../../src/cli/setup/index.ts';
import { ConfigError, loadConfig } from '../../src/config/index.ts';

const root = fileURLToPath(new URL('../../', import.meta.url));
const k8sDir = join(root, 'deploy/kubernetes');

// ---------------------------------------------------------------------------------------------------
// Types and helpers

type Obj = Record<string, unknown>;
interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  [key: string]: unknown;
}
interface Container {
  name: string;
  image: string;
  imagePullPolicy?: string;
  args?: string[];
  env?: { name: string; value?: string; valueFrom?: { secretKeyRef?: { name: string; key: string } } }[];
  envFrom?: { secretRef?: { name: string; optional?: boolean } }[];
  ports?: { name?: string; containerPort: number }[];
  readinessProbe?: { httpGet?: { path: string; port: string | number } };
  livenessProbe?: { httpGet?: { path: string; port: string | number } };
  startupProbe?: { httpGet?: { path: string; port: string | number } };
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  securityContext?: Obj;
  volumeMounts?: { name: string; mountPath: string; readOnly?: boolean; subPath?: string }[];
}
interface PodSpec {
  securityContext?: Obj;
  containers: Container[];
  initContainers?: Container[];
  volumes?: ({ name: string } & Obj)[];
  hostNetwork?: boolean;
  automountServiceAccountToken?: boolean;
}
interface Workload extends K8sObject {
  spec: {
    replicas?: number;
    selector: { matchLabels: Record<string, string> };
    template: { metadata: { labels: Record<string, string> }; spec: PodSpec };
  };
}

const id = (o: K8sObject) => `${o.apiVersion} ${o.kind} ${o.metadata.namespace ?? '-'}/${o.metadata.name}`;

async function walk(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await walk(p)));
    else out.push(p);
  }
  return out.sort();
}

async function parseYamlFile(file: string): Promise<unknown[]> {
  const docs = parseAllDocuments(await readFile(file, 'utf8'));
  const list = Array.isArray(docs) ? docs : [docs];
  const problems = list.flatMap((d) => [...d.errors, ...d.warnings].map((e) => e.message));
  if (problems.length > 0) throw new Error(`${relative(root, file)}: ${problems.join('; ')}`);
  return list.map((d) => d.toJS() as unknown).filter((d) => d !== null && d !== undefined);
}

function sortKeys(x: unknown): unknown {
  if (Array.isArray(x)) return x.map(sortKeys);
  if (x !== null && typeof x === 'object') {
    return Object.fromEntries(
      Object.keys(x)
        .sort()
        .map((k) => [k, sortKeys((x as Obj)[k])]),
    );
  }
  return x;
}

// ---------------------------------------------------------------------------------------------------
// A renderer for exactly the kustomization features these files use (anything else is an error here,
// so that the test never silently renders something kustomize would render differently). Where
// kubectl is installed, its `kubectl kustomize` output is compared with this one.

const KUSTOMIZATION_KEYS = new Set([
  'apiVersion',
  'kind',
  'resources',
  'bases',
  'generatorOptions',
  'configMapGenerator',
]);

interface Kustomization {
  resources?: string[];
  bases?: string[];
  generatorOptions?: { disableNameSuffixHash?: boolean };
  configMapGenerator?: { name: string; namespace?: string; files: string[] }[];
}

async function readKustomization(dir: string): Promise<Kustomization> {
  const [doc] = await parseYamlFile(join(dir, 'kustomization.yaml'));
  const k = doc as Kustomization;
  for (const key of Object.keys(k)) {
    if (!KUSTOMIZATION_KEYS.has(key))
      throw new Error(`${relative(root, dir)}: renderer does not support "${key}"`);
  }
  return k;
}

/** `key=path` or `path` (key: the file name). */
function generatorFile(entry: string): { key: string; path: string } {
  const eq = entry.indexOf('=');
  return eq < 0
    ? { key: entry.slice(entry.lastIndexOf('/') + 1), path: entry }
    : { key: entry.slice(0, eq), path: entry.slice(eq + 1) };
}

/** Files (absolute) a kustomization reads directly, and the directories it builds on. */
async function kustomizationInputs(dir: string): Promise<{ files: string[]; dirs: string[] }> {
  const k = await readKustomization(dir);
  const files = [...(k.resources ?? [])].map((r) => resolve(dir, r));
  for (const g of k.configMapGenerator ?? [])
    files.push(...g.files.map((f) => resolve(dir, generatorFile(f).path)));
  return { files, dirs: (k.bases ?? []).map((b) => resolve(dir, b)) };
}

async function render(dir: string): Promise<K8sObject[]> {
  const k = await readKustomization(dir);
  const out: K8sObject[] = [];
  for (const base of k.bases ?? []) out.push(...(await render(resolve(dir, base))));
  for (const r of k.resources ?? []) out.push(...((await parseYamlFile(resolve(dir, r))) as K8sObject[]));
  if ((k.configMapGenerator ?? []).length > 0 && k.generatorOptions?.disableNameSuffixHash !== true) {
    throw new Error('renderer expects generatorOptions.disableNameSuffixHash: true');
  }
  for (const g of k.configMapGenerator ?? []) {
    const data: Record<string, string> = {};
    for (const f of g.files) {
      const { key, path } = generatorFile(f);
      data[key] = await readFile(resolve(dir, path), 'utf8');
    }
    const metadata: K8sObject['metadata'] = { name: g.name };
    if (g.namespace !== undefined) metadata.namespace = g.namespace;
    out.push({ apiVersion: 'v1', kind: 'ConfigMap', metadata, data });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Schema validation. kubernetes-models ships the Kubernetes OpenAPI schemas compiled to validators;
// those schemas (like the API server's) do not forbid unknown fields, so the object is validated
// through a proxy that records which fields the validator looked at: a field of an object the
// validator inspected but never read is not in the schema (a typo such as `readinesProbe`, or a
// field at the wrong level). Objects the schema leaves open (labels, data) are read key by key.

type Validator = ((data: unknown) => boolean) & {
  errors?: { instancePath: string; message?: string; keyword: string; params: unknown }[] | null;
};

const SCHEMAS: Record<string, Validator> = {
  'v1/Namespace': vNamespace,
  'v1/ConfigMap': vConfigMap,
  'v1/Service': vService,
  'apps/v1/Deployment': vDeployment,
  'apps/v1/StatefulSet': vStatefulSet,
  'apps/v1/DaemonSet': vDaemonSet,
  'policy/v1/PodDisruptionBudget': vPdb,
  'networking.k8s.io/v1/NetworkPolicy': vNetworkPolicy,
};

export function validateStrict(validate: Validator, data: unknown): string[] {
  const read = new WeakMap<object, Set<string>>();
  const wrap = (value: unknown): unknown => {
    if (value === null || typeof value !== 'object') return value;
    return new Proxy(value, {
      get(target, key, receiver) {
        if (typeof key === 'string') {
          let keys = read.get(target);
          if (keys === undefined) read.set(target, (keys = new Set()));
          keys.add(key);
        }
        return wrap(Reflect.get(target, key, receiver));
      },
    });
  };
  const problems: string[] = [];
  if (!validate(wrap(data))) {
    for (const e of validate.errors ?? []) {
      problems.push(`${e.instancePath || '/'}: ${e.keyword} ${JSON.stringify(e.params)}`);
    }
  }
  const check = (value: unknown, path: string) => {
    if (value === null || typeof value !== 'object') return;
    if (Array.isArray(value)) {
      value.forEach((v, i) => check(v, `${path}/${i}`));
      return;
    }
    const keys = read.get(value);
    if (keys === undefined) return; // not inspected: a free-form value
    for (const [k, v] of Object.entries(value)) {
      if (!keys.has(k)) problems.push(`${path}/${k}: unknown field`);
      else check(v, `${path}/${k}`);
    }
  };
  check(data, '');
  return problems;
}

/** A minimal schema for the one custom resource (monitoring.coreos.com/v1 ServiceMonitor). */
const labels = z.record(z.string(), z.string());
const serviceMonitorSchema = z.strictObject({
  apiVersion: z.literal('monitoring.coreos.com/v1'),
  kind: z.literal('ServiceMonitor'),
  metadata: z.strictObject({
    name: z.string().min(1),
    namespace: z.string().min(1),
    labels: labels.optional(),
  }),
  spec: z.strictObject({
    selector: z.strictObject({ matchLabels: labels }),
    namespaceSelector: z
      .union([
        z.strictObject({ matchNames: z.array(z.string()).min(1) }),
        z.strictObject({ any: z.boolean() }),
      ])
      .optional(),
    endpoints: z
      .array(
        z.strictObject({
          port: z.string().min(1),
          path: z.string().startsWith('/').optional(),
          scheme: z.enum(['http', 'https']).optional(),
          interval: z
            .string()
            .regex(/^\d+(ms|s|m|h)$/)
            .optional(),
          scrapeTimeout: z
            .string()
            .regex(/^\d+(ms|s|m|h)$/)
            .optional(),
        }),
      )
      .min(1),
  }),
});

// ---------------------------------------------------------------------------------------------------

let kustomizationDirs: string[] = [];
const rendered = new Map<string, K8sObject[]>();
let all: K8sObject[] = [];
let tmp: string;

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'pw-deploy-'));
  kustomizationDirs = (await walk(k8sDir)).filter((f) => f.endsWith('/kustomization.yaml')).map(dirname);
  for (const dir of kustomizationDirs) rendered.set(dir, await render(dir));
  const byId = new Map<string, K8sObject>();
  for (const objs of rendered.values()) for (const o of objs) byId.set(id(o), o);
  all = [...byId.values()];
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/** `namespace` null: a cluster-scoped object. T: the shape the test expects (not checked here). */
// eslint-disable-next-line @typescript-eslint/no-unnecessary-type-parameters
function find<T extends K8sObject = K8sObject>(
  kind: string,
  name: string,
  namespace: string | null = 'pullwarden',
): T {
  const o = all.find(
    (x) => x.kind === kind && x.metadata.name === name && (x.metadata.namespace ?? null) === namespace,
  );
  if (o === undefined) throw new Error(`no ${kind} ${namespace}/${name}`);
  return o as T;
}
const workloads = () =>
  all.filter((o) => ['Deployment', 'StatefulSet', 'DaemonSet'].includes(o.kind)) as Workload[];
const podContainers = (w: Workload) => [
  ...(w.spec.template.spec.initContainers ?? []),
  ...w.spec.template.spec.containers,
];
const base = () => join(k8sDir, 'base');

describe('deploy/kubernetes files', () => {
  it('has a base and a monitoring overlay', () => {
    expect(kustomizationDirs.map((d) => relative(k8sDir, d)).sort()).toEqual(['base', 'overlays/monitoring']);
  });

  it('parses every YAML document', async () => {
    const yamlFiles = (await walk(k8sDir)).filter((f) => /\.ya?ml$/.test(f));
    expect(yamlFiles.length).toBeGreaterThan(8);
    for (const f of yamlFiles) expect((await parseYamlFile(f)).length, relative(root, f)).toBeGreaterThan(0);
  });

  it('lists every file in a kustomization, and every listed file exists', async () => {
    const listed = new Set<string>();
    for (const dir of kustomizationDirs) {
      const { files, dirs } = await kustomizationInputs(dir);
      for (const f of files) {
        expect(f.startsWith(dir + '/'), `${relative(root, f)} lies inside ${relative(root, dir)}`).toBe(true);
        await expect(readFile(f), relative(root, f)).resolves.toBeDefined();
        expect(listed.has(f), `${relative(root, f)} listed twice`).toBe(false);
        listed.add(f);
      }
      for (const d of dirs) expect(kustomizationDirs, relative(root, d)).toContain(d);
    }
    const unlisted = (await walk(k8sDir)).filter((f) => !f.endsWith('/kustomization.yaml') && !listed.has(f));
    expect(unlisted.map((f) => relative(root, f))).toEqual([]);
  });

  it('builds with kubectl kustomize to the same objects (Debian package: kubernetes-client)', () => {
    for (const dir of kustomizationDirs) {
      const r = spawnSync('kubectl', ['kustomize', dir], { encoding: 'utf8' });
      if (r.error !== undefined) {
        throw new Error(
          `kubectl not found (${r.error.message}): install it (Debian: apt-get install kubernetes-client) to check that kustomize builds deploy/kubernetes`,
        );
      }
      expect(r.status, r.stderr).toBe(0);
      const built = parseAllDocuments(r.stdout).map((d) => d.toJS() as K8sObject);
      const mine = rendered.get(dir) ?? [];
      expect(built.map(id).sort()).toEqual(mine.map(id).sort());
      const byId = new Map(mine.map((o) => [id(o), o]));
      for (const o of built) expect(sortKeys(o), id(o)).toEqual(sortKeys(byId.get(id(o))));
    }
  });
});

describe('Kubernetes schemas', () => {
  it('validates every built-in object against the Kubernetes OpenAPI schema, unknown fields refused', () => {
    const builtIn = all.filter((o) => !o.apiVersion.includes('monitoring.coreos.com'));
    expect(builtIn.length).toBeGreaterThan(10);
    for (const o of builtIn) {
      const validate = SCHEMAS[`${o.apiVersion}/${o.kind}`];
      expect(validate, `a schema for ${o.apiVersion} ${o.kind} (add it to SCHEMAS)`).toBeDefined();
      if (validate !== undefined) expect(validateStrict(validate, o), id(o)).toEqual([]);
    }
  });

  it('the strict validation catches wrong types, unknown and misplaced fields', () => {
    const deployment = structuredClone(find<Workload>('Deployment', 'pullwarden'));
    const c = deployment.spec.template.spec.containers[0] as Container & Obj;
    c['readinesProbe'] = c.readinessProbe;
    (c.ports as Obj[])[0]!['containerPort'] = '5050';
    (deployment.spec.template.spec as unknown as Obj)['readOnlyRootFilesystem'] = true;
    const problems = validateStrict(vDeployment, deployment);
    expect(problems).toContain('/spec/template/spec/containers/0/readinesProbe: unknown field');
    expect(problems).toContain('/spec/template/spec/readOnlyRootFilesystem: unknown field');
    expect(
      problems.some((p) => p.startsWith('/spec/template/spec/containers/0/ports/0/containerPort: type')),
    ).toBe(true);
    // Free-form maps are not flagged.
    expect(problems.some((p) => p.includes('/labels/'))).toBe(false);
  });

  it('validates the ServiceMonitor against the schema kept here, and it selects the Service port', () => {
    const sm = all.filter((o) => o.kind === 'ServiceMonitor');
    expect(sm).toHaveLength(1);
    const monitor = serviceMonitorSchema.parse(sm[0]);
    const svc = find<K8sObject & { spec: { ports: { name: string }[] } }>('Service', 'pullwarden');
    expect(svc.metadata.labels).toMatchObject(monitor.spec.selector.matchLabels);
    expect(monitor.spec.namespaceSelector).toEqual({ matchNames: [svc.metadata.namespace] });
    expect(svc.spec.ports.map((p) => p.name)).toContain(monitor.spec.endpoints[0]?.port);
    expect(monitor.spec.endpoints[0]?.path).toBe('/metrics');
    expect(() =>
      serviceMonitorSchema.parse({ ...sm[0], spec: { ...((sm[0] as Obj)['spec'] as Obj), endpoint: [] } }),
    ).toThrow();
  });

  it('keeps the ServiceMonitor (a CRD) out of the base', () => {
    expect((rendered.get(base()) ?? []).map((o) => o.kind)).not.toContain('ServiceMonitor');
  });
});

describe('workloads', () => {
  it('uses fully qualified, tagged images (never latest), pulled only when not present', () => {
    for (const w of workloads()) {
      for (const c of podContainers(w)) {
        const where = `${id(w)} ${c.name}`;
        expect(c.image, where).toMatch(
          /^[a-z0-9.-]+\.[a-z]+\/[a-z0-9._/-]+:[A-Za-z0-9._-]+(@sha256:[0-9a-f]{64})?$/,
        );
        expect(c.image, where).not.toMatch(/:latest(@|$)/);
        expect(c.imagePullPolicy, where).toBe('IfNotPresent');
      }
    }
  });

  it('runs every pod of the pullwarden namespace under the restricted Pod Security Standard', () => {
    const ns = find('Namespace', 'pullwarden', null);
    expect(ns.metadata.labels?.['pod-security.kubernetes.io/enforce']).toBe('restricted');
    const inNs = workloads().filter((w) => w.metadata.namespace === 'pullwarden');
    expect(inNs.map((w) => w.kind).sort()).toEqual(['Deployment', 'StatefulSet']);
    for (const w of inNs) {
      const pod = w.spec.template.spec;
      expect(pod.securityContext, id(w)).toMatchObject({
        runAsNonRoot: true,
        seccompProfile: { type: 'RuntimeDefault' },
      });
      expect(pod.automountServiceAccountToken, id(w)).toBe(false);
      expect(pod.hostNetwork, id(w)).toBeUndefined();
      for (const v of pod.volumes ?? [])
        expect(Object.keys(v), `${id(w)} volume ${v.name}`).not.toContain('hostPath');
      for (const c of podContainers(w)) {
        expect(c.securityContext, `${id(w)} ${c.name}`).toEqual({
          runAsNonRoot: true,
          readOnlyRootFilesystem: true,
          allowPrivilegeEscalation: false,
          capabilities: { drop: ['ALL'] },
          seccompProfile: { type: 'RuntimeDefault' },
        });
        expect(c.resources?.requests?.['memory'], `${id(w)} ${c.name}`).toBeDefined();
        expect(c.resources?.limits?.['memory'], `${id(w)} ${c.name}`).toBeDefined();
      }
    }
  });

  it('runs the pullwarden Deployment as 2 replicas with probes on /readyz and /healthz', () => {
    const d = find<Workload>('Deployment', 'pullwarden');
    expect(d.spec.replicas).toBe(2);
    const [c] = d.spec.template.spec.containers;
    expect(d.spec.template.spec.containers).toHaveLength(1);
    expect(c?.readinessProbe?.httpGet).toEqual({ path: '/readyz', port: 'http' });
    expect(c?.livenessProbe?.httpGet).toEqual({ path: '/healthz', port: 'http' });
    expect(c?.startupProbe?.httpGet).toEqual({ path: '/healthz', port: 'http' });
    expect(c?.ports).toEqual([{ name: 'http', containerPort: 5050, protocol: 'TCP' }]);
    expect(c?.args).toEqual(['serve', '--config', '/etc/pullwarden/pullwarden.yaml']);
    // The config directory is the ConfigMap itself (no subPath): updates reach the file, and the
    // watcher reloads the policy.
    const mount = c?.volumeMounts?.find((m) => m.mountPath === '/etc/pullwarden');
    expect(mount).toEqual({ name: 'config', mountPath: '/etc/pullwarden', readOnly: true });
    expect(d.spec.template.spec.volumes?.find((v) => v.name === 'config')).toEqual({
      name: 'config',
      configMap: { name: 'pullwarden-config' },
    });
  });

  it('selects the proxy pods with the Service, the PodDisruptionBudget and the NetworkPolicy', () => {
    const d = find<Workload>('Deployment', 'pullwarden');
    const podLabels = d.spec.template.metadata.labels;
    expect(podLabels).toMatchObject(d.spec.selector.matchLabels);
    const svc = find<K8sObject & { spec: { selector: Record<string, string> } }>('Service', 'pullwarden');
    expect(podLabels).toMatchObject(svc.spec.selector);
    const pdb = find<
      K8sObject & { spec: { minAvailable: number; selector: { matchLabels: Record<string, string> } } }
    >('PodDisruptionBudget', 'pullwarden');
    expect(pdb.spec.minAvailable).toBeLessThan(d.spec.replicas ?? 1);
    expect(podLabels).toMatchObject(pdb.spec.selector.matchLabels);
    const redis = find<Workload>('StatefulSet', 'pullwarden-redis');
    expect(redis.spec.template.metadata.labels).not.toMatchObject(svc.spec.selector);
  });
});

describe('network policies', () => {
  type Peer = { podSelector?: { matchLabels: Record<string, string> } };
  type Rule = { from?: Peer[]; to?: Peer[]; ports?: { port: number; protocol: string }[] };
  type NetPol = K8sObject & {
    spec: {
      podSelector: { matchLabels?: Record<string, string> };
      policyTypes: string[];
      ingress?: Rule[];
      egress?: Rule[];
    };
  };
  const proxyLabels = () => find<Workload>('Deployment', 'pullwarden').spec.template.metadata.labels;
  const redisLabels = () => find<Workload>('StatefulSet', 'pullwarden-redis').spec.template.metadata.labels;

  it('denies by default in both namespaces', () => {
    for (const ns of ['pullwarden', 'pullwarden-node-config']) {
      const p = find<NetPol>('NetworkPolicy', 'default-deny', ns);
      expect(p.spec).toEqual({ podSelector: {}, policyTypes: ['Ingress', 'Egress'] });
    }
  });

  it('lets anything in the cluster reach the proxy on 5050, and the proxy reach DNS, 443 and Redis', () => {
    const p = find<NetPol>('NetworkPolicy', 'pullwarden');
    expect(proxyLabels()).toMatchObject(p.spec.podSelector.matchLabels ?? {});
    expect(p.spec.ingress).toEqual([{ ports: [{ port: 5050, protocol: 'TCP' }] }]);
    const egress = p.spec.egress ?? [];
    const ports = (r: Rule) => (r.ports ?? []).map((x) => `${x.port}/${x.protocol}`).sort();
    expect(egress.find((r) => r.to === undefined && ports(r).includes('53/UDP'))).toBeDefined();
    expect(egress.find((r) => r.to === undefined && ports(r).join() === '443/TCP')).toBeDefined();
    const toRedis = egress.find((r) => ports(r).join() === '6379/TCP');
    expect(redisLabels()).toMatchObject(toRedis?.to?.[0]?.podSelector?.matchLabels ?? { none: 'none' });
    expect(egress).toHaveLength(3);
  });

  it('lets only the proxy pods reach Redis, and Redis reach nothing', () => {
    const p = find<NetPol>('NetworkPolicy', 'pullwarden-redis');
    expect(redisLabels()).toMatchObject(p.spec.podSelector.matchLabels ?? {});
    expect(p.spec.policyTypes).toEqual(['Ingress', 'Egress']);
    expect(p.spec.egress).toBeUndefined();
    expect(p.spec.ingress).toHaveLength(1);
    const selector = p.spec.ingress?.[0]?.from?.[0]?.podSelector?.matchLabels ?? {};
    expect(proxyLabels()).toMatchObject(selector);
    expect(redisLabels()).not.toMatchObject(selector);
  });
});

describe('the pullwarden config in the ConfigMap', () => {
  /** The environment the container sees: the image's ENV (Dockerfile), then the pod's env. */
  async function podEnv(secret: string | undefined): Promise<NodeJS.ProcessEnv> {
    const dockerfile = await readFile(join(root, 'Dockerfile'), 'utf8');
    const env: NodeJS.ProcessEnv = {};
    const block = /^ENV ((?:.*\\\n)*.*)$/m.exec(dockerfile)?.[1] ?? '';
    for (const m of block.matchAll(/([A-Z_][A-Z0-9_]*)=(\S+)/g)) env[m[1]!] = m[2];
    expect(env['PULLWARDEN_LISTEN']).toBeDefined();
    const [c] = find<Workload>('Deployment', 'pullwarden').spec.template.spec.containers;
    for (const e of c?.env ?? []) {
      if (e.value !== undefined) env[e.name] = e.value;
      else if (e.valueFrom?.secretKeyRef !== undefined && secret !== undefined) env[e.name] = secret;
    }
    return env;
  }

  async function writeConfig(): Promise<string> {
    const cm = find<K8sObject & { data: Record<string, string> }>('ConfigMap', 'pullwarden-config');
    expect(Object.keys(cm.data)).toEqual(['pullwarden.yaml']);
    const file = join(tmp, 'pullwarden.yaml');
    await writeFile(file, cm.data['pullwarden.yaml'] ?? '');
    return file;
  }

  it('loads with the real loader, on Redis, with the storage and audit on the data volume', async () => {
    const config = await loadConfig(await writeConfig(), await podEnv('redis-secret'));
    expect(config.metadata.url).toBe('redis://pullwarden-redis:6379');
    expect(config.metadata.password).toBe('redis-secret');
    const d = find<Workload>('Deployment', 'pullwarden');
    const [c] = d.spec.template.spec.containers;
    const data = c?.volumeMounts?.find((m) => m.name === 'data');
    expect(data?.mountPath).toBe('/var/lib/pullwarden');
    expect(d.spec.template.spec.volumes?.find((v) => v.name === 'data')).toMatchObject({ emptyDir: {} });
    expect(config.storage.dir).toBe(data?.mountPath);
    expect(config.audit.dir.startsWith(`${data?.mountPath}/`)).toBe(true);
    expect(config.audit.stdout).toBe(true);
    expect(config.listen).toBe(`0.0.0.0:${c?.ports?.[0]?.containerPort}`);
    expect(c?.volumeMounts?.find((m) => m.mountPath === '/tmp')).toBeDefined();
    // Graceful shutdown fits into the termination grace period (pullwarden forces exit 5 s later).
    const grace = (d.spec.template.spec as unknown as Obj)['terminationGracePeriodSeconds'] as number;
    expect(config.server.shutdownGrace / 1000 + 5).toBeLessThan(grace);
    // The Redis Service the URL names exists in the same namespace, on that port.
    const redis = find<K8sObject & { spec: { ports: { port: number }[] } }>('Service', 'pullwarden-redis');
    expect(redis.spec.ports.map((p) => p.port)).toEqual([6379]);
    // Every policy is evaluated in order and ends with a catch-all.
    expect(config.policies.at(-1)?.match).toEqual(['**']);
  });

  it('needs the Redis password from the Secret', async () => {
    const file = await writeConfig();
    await expect(loadConfig(file, await podEnv(undefined))).rejects.toBeInstanceOf(ConfigError);
    const d = find<Workload>('Deployment', 'pullwarden');
    const redis = find<Workload>('StatefulSet', 'pullwarden-redis');
    const ref = (w: Workload) =>
      w.spec.template.spec.containers[0]?.env?.find((e) => e.name === 'REDIS_PASSWORD')?.valueFrom
        ?.secretKeyRef;
    expect(ref(d)).toEqual({ name: 'pullwarden-redis', key: 'password' });
    expect(ref(redis)).toEqual(ref(d));
    // Upstream credentials: every key of an optional Secret becomes a variable for passwordEnv.
    expect(d.spec.template.spec.containers[0]?.envFrom).toEqual([
      { secretRef: { name: 'pullwarden-upstream-credentials', optional: true } },
    ]);
  });

  it('allows the images the deployment itself runs', async () => {
    const config = await loadConfig(await writeConfig(), await podEnv('x'));
    const own = workloads().flatMap((w) => podContainers(w).map((c) => c.image.replace(/:[^/]+$/, '')));
    for (const image of own) {
      const repo = image.replace(/^docker\.io\/(?!library\/)/, 'docker.io/');
      const first = config.policies.find((p) => p.match.some((g) => globMatch(g, repo)));
      expect(first?.action, image).toBe('allow');
    }
  });
});

/** `*` within one path component, `**` across components (as in the policy docs). */
function globMatch(glob: string, value: string): boolean {
  const re = glob
    .split('**')
    .map((part) =>
      part
        .split('*')
        .map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
        .join('[^/]*'),
    )
    .join('.*');
  return new RegExp(`^${re}$`).test(value);
}

describe('node configuration (containerd hosts.toml)', () => {
  const hostsConfigMap = () =>
    find<K8sObject & { data: Record<string, string> }>(
      'ConfigMap',
      'pullwarden-hosts-toml',
      'pullwarden-node-config',
    );

  it('points every node at the Service ClusterIP, one hosts.toml per upstream and _default, as `pullwarden hosts-toml` writes it', async () => {
    const svc = find<K8sObject & { spec: { clusterIP: string; ports: { port: number }[] } }>(
      'Service',
      'pullwarden',
    );
    expect(svc.spec.clusterIP).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
    const proxy = `http://${svc.spec.clusterIP}:${svc.spec.ports[0]?.port}`;
    const cm = find<K8sObject & { data: Record<string, string> }>('ConfigMap', 'pullwarden-config');
    const configFile = join(tmp, 'for-hosts-toml.yaml');
    await writeFile(configFile, cm.data['pullwarden.yaml'] ?? '');
    const out = join(tmp, 'certs.d');
    const { code, stderr: errors } = await runCli(
      ['hosts-toml', '--proxy', proxy, '--out', out, '--config', configFile],
      tmp,
    );
    expect(code, errors).toBe(0);
    const config = await loadConfig(configFile, {}, { resolveSecrets: false });
    const expected: Record<string, string> = {};
    for (const upstream of Object.keys(config.upstreams)) {
      const dirs = containerdHostDirs(upstream);
      const key = dirs[0]!; // "<host>_<port>_" for a host with a port: a valid ConfigMap key
      expected[key] = await readFile(join(out, dirs.at(-1)!, 'hosts.toml'), 'utf8');
    }
    // And _default: containerd reads it for every registry that is not an upstream.
    expected['_default'] = await readFile(join(out, '_default', 'hosts.toml'), 'utf8');
    expect(hostsConfigMap().data).toEqual(expected);
  });

  it('copies them into /etc/containerd/certs.d on every node with a DaemonSet', () => {
    const ds = find<Workload>('DaemonSet', 'pullwarden-node-config', 'pullwarden-node-config');
    const pod = ds.spec.template.spec;
    expect(pod.volumes).toEqual(
      expect.arrayContaining([
        { name: 'hosts-toml', configMap: { name: 'pullwarden-hosts-toml' } },
        { name: 'certs-d', hostPath: { path: '/etc/containerd/certs.d', type: 'DirectoryOrCreate' } },
      ]),
    );
    const [init] = pod.initContainers ?? [];
    expect(init?.volumeMounts).toEqual([
      { name: 'hosts-toml', mountPath: '/hosts-toml', readOnly: true },
      { name: 'certs-d', mountPath: '/host/certs.d' },
    ]);
    const script = (init as Container & { command: string[] }).command.join(' ');
    expect(script).toContain('/hosts-toml/*');
    expect(script).toContain('mv -f');
    expect((pod as unknown as Obj)['tolerations']).toEqual([{ operator: 'Exists' }]);
    for (const c of podContainers(ds)) {
      expect(c.securityContext, c.name).toMatchObject({
        readOnlyRootFilesystem: true,
        allowPrivilegeEscalation: false,
        capabilities: { drop: ['ALL'] },
      });
    }
    const ns = find('Namespace', 'pullwarden-node-config', null);
    expect(ns.metadata.labels?.['pod-security.kubernetes.io/enforce']).toBe('privileged');
  });
});
