import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { Metrics } from '../../src/service/metrics.ts';

/**
 * The Grafana dashboard in deploy/grafana is written against the metric names pullwarden exports.
 * These tests keep the two in step: a metric renamed or dropped in src/service/metrics.ts (or in
 * prom-client's default metrics) breaks a panel here, and a metric added there without a panel
 * fails the coverage check.
 */

const dashboardPath = fileURLToPath(
  new URL('../../deploy/grafana/pullwarden-dashboard.json', import.meta.url),
);

interface Target {
  expr?: unknown;
  legendFormat?: unknown;
  datasource?: unknown;
}
interface Panel {
  id?: unknown;
  type?: unknown;
  title?: unknown;
  gridPos?: { h?: unknown; w?: unknown; x?: unknown; y?: unknown };
  datasource?: unknown;
  targets?: Target[];
  panels?: Panel[];
}
interface Dashboard {
  uid?: unknown;
  title?: unknown;
  schemaVersion?: unknown;
  panels?: Panel[];
  templating?: { list?: { name?: unknown; type?: unknown; query?: unknown; definition?: unknown }[] };
}

const HISTOGRAM_SUFFIXES = ['_bucket', '_sum', '_count'] as const;
const METRIC_NAME = /\bpullwarden_[a-zA-Z0-9_:]*/g;

function loadDashboard(): Dashboard {
  return JSON.parse(readFileSync(dashboardPath, 'utf8')) as Dashboard;
}

/** Every panel, rows' nested (collapsed) panels included. */
function allPanels(dashboard: Dashboard): Panel[] {
  const out: Panel[] = [];
  const walk = (list: Panel[] | undefined): void => {
    for (const p of list ?? []) {
      out.push(p);
      walk(p.panels);
    }
  };
  walk(dashboard.panels);
  return out;
}

/** Every PromQL expression: panel targets plus the template variables' queries. */
function expressions(dashboard: Dashboard): { where: string; expr: string }[] {
  const out: { where: string; expr: string }[] = [];
  for (const p of allPanels(dashboard))
    for (const t of p.targets ?? [])
      if (typeof t.expr === 'string') out.push({ where: `panel "${String(p.title)}"`, expr: t.expr });
  for (const v of dashboard.templating?.list ?? []) {
    const q = v.query;
    const text =
      typeof q === 'string'
        ? q
        : typeof q === 'object' && q !== null
          ? (q as { query?: unknown }).query
          : undefined;
    if (typeof text === 'string' && v.type === 'query')
      out.push({ where: `variable $${String(v.name)}`, expr: text });
  }
  return out;
}

function metricNamesIn(expr: string): string[] {
  return [...expr.matchAll(METRIC_NAME)].map((m) => m[0]);
}

/** name -> prom-client type, as the registry exposes it. */
async function exported(metrics: Metrics): Promise<Map<string, string>> {
  const json = await metrics.registry.getMetricsAsJSON();
  return new Map(json.map((m) => [m.name, String(m.type)]));
}

/**
 * The exported metric a name used in PromQL refers to, or undefined. `_bucket` only resolves to a
 * histogram; `_sum`/`_count` to a histogram or summary. A name that is itself exported wins.
 */
function resolve(used: string, known: Map<string, string>): string | undefined {
  if (known.has(used)) return used;
  for (const suffix of HISTOGRAM_SUFFIXES) {
    if (!used.endsWith(suffix)) continue;
    const base = used.slice(0, -suffix.length);
    const type = known.get(base);
    if (type === 'histogram' || (suffix !== '_bucket' && type === 'summary')) return base;
  }
  return undefined;
}

/** Names used in the dashboard that pullwarden does not export, with where they are used. */
function unknownMetrics(dashboard: Dashboard, known: Map<string, string>): string[] {
  const missing: string[] = [];
  for (const { where, expr } of expressions(dashboard))
    for (const name of metricNamesIn(expr))
      if (resolve(name, known) === undefined) missing.push(`${name} (${where})`);
  return missing;
}

/** The exported metrics (after suffix resolution) the dashboard's panels query. */
function usedMetrics(dashboard: Dashboard, known: Map<string, string>): Set<string> {
  const used = new Set<string>();
  for (const p of allPanels(dashboard))
    for (const t of p.targets ?? [])
      if (typeof t.expr === 'string')
        for (const name of metricNamesIn(t.expr)) {
          const base = resolve(name, known);
          if (base !== undefined) used.add(base);
        }
  return used;
}

describe('grafana dashboard', () => {
  it('is a Grafana dashboard with uid "pullwarden" and well-formed panels', () => {
    const dashboard = loadDashboard();
    expect(dashboard.uid).toBe('pullwarden');
    expect(typeof dashboard.title).toBe('string');
    expect(dashboard.schemaVersion).toBeTypeOf('number');
    expect(dashboard.schemaVersion as number).toBeGreaterThanOrEqual(36);

    const vars = dashboard.templating?.list ?? [];
    const datasource = vars.find((v) => v.name === 'datasource');
    expect(datasource?.type).toBe('datasource');
    expect(datasource?.query).toBe('prometheus');
    expect(vars.map((v) => v.name)).toEqual(expect.arrayContaining(['job', 'instance']));

    const panels = allPanels(dashboard);
    const ids = panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    const queried = panels.filter((p) => p.type !== 'row');
    expect(queried.length).toBeGreaterThan(10);
    for (const p of panels) {
      const { h, w, x, y } = p.gridPos ?? {};
      for (const n of [h, w, x, y]) expect(Number.isInteger(n), `gridPos of "${String(p.title)}"`).toBe(true);
      expect((x as number) + (w as number), `"${String(p.title)}" fits 24 columns`).toBeLessThanOrEqual(24);
    }
    for (const p of queried) {
      const title = String(p.title);
      expect(['timeseries', 'stat'], title).toContain(p.type);
      expect(p.datasource, title).toEqual({ type: 'prometheus', uid: '${datasource}' });
      expect(p.targets?.length, title).toBeGreaterThan(0);
      for (const t of p.targets ?? []) {
        expect(typeof t.expr === 'string' && t.expr.length > 0, title).toBe(true);
        expect(typeof t.legendFormat, title).toBe('string');
        expect(t.datasource, title).toEqual({ type: 'prometheus', uid: '${datasource}' });
      }
    }
  });

  it('filters every panel selector by the $job and $instance variables', () => {
    const dashboard = loadDashboard();
    for (const p of allPanels(dashboard))
      for (const t of p.targets ?? []) {
        const expr = String(t.expr);
        const uses = [...expr.matchAll(/\bpullwarden_[a-zA-Z0-9_:]*(\{[^}]*\})?/g)];
        expect(uses.length, `panel "${String(p.title)}": ${expr}`).toBeGreaterThan(0);
        for (const m of uses) {
          expect(m[1], `${m[0]} in panel "${String(p.title)}"`).toContain('job=~"$job"');
          expect(m[1], `${m[0]} in panel "${String(p.title)}"`).toContain('instance=~"$instance"');
        }
      }
  });

  it('uses only metric names pullwarden exports', async () => {
    const known = await exported(new Metrics({ defaultMetrics: true }));
    expect(unknownMetrics(loadDashboard(), known)).toEqual([]);
  });

  it('has a panel for every pullwarden-specific metric', async () => {
    const dashboard = loadDashboard();
    const known = await exported(new Metrics({ defaultMetrics: true }));
    // The metrics Metrics declares itself: a registry without prom-client's default process metrics.
    const own = [...(await exported(new Metrics({ defaultMetrics: false }))).keys()];
    expect(own.length).toBeGreaterThan(10);
    const used = usedMetrics(dashboard, known);
    expect(own.filter((name) => !used.has(name))).toEqual([]);
  });

  it('uses the process metrics it names, with the pullwarden_ prefix', async () => {
    const used = usedMetrics(loadDashboard(), await exported(new Metrics({ defaultMetrics: true })));
    expect(used).toContain('pullwarden_process_resident_memory_bytes');
    expect(used).toContain('pullwarden_nodejs_eventloop_lag_seconds');
  });

  it('the name check catches renamed, misspelled and mis-suffixed metrics', async () => {
    const known = await exported(new Metrics({ defaultMetrics: true }));
    const baseline = unknownMetrics(loadDashboard(), known);
    const broken = loadDashboard();
    const panel = allPanels(broken).find((p) =>
      p.targets?.some((t) => String(t.expr).includes('pullwarden_tag_moves_total')),
    );
    expect(panel).toBeDefined();
    for (const t of panel?.targets ?? [])
      t.expr = String(t.expr).replaceAll('pullwarden_tag_moves_total', 'pullwarden_tag_changes_total');
    const after = unknownMetrics(broken, known);
    expect(after.filter((m) => !baseline.includes(m))).toEqual([
      expect.stringContaining('pullwarden_tag_changes_total'),
    ]);
    // ...and the renamed metric is then reported as having no panel.
    expect(usedMetrics(broken, known).has('pullwarden_tag_moves_total')).toBe(false);

    // Histogram suffixes resolve only on histograms.
    expect(resolve('pullwarden_http_request_duration_seconds_bucket', known)).toBe(
      'pullwarden_http_request_duration_seconds',
    );
    expect(resolve('pullwarden_audit_write_duration_seconds_count', known)).toBe(
      'pullwarden_audit_write_duration_seconds',
    );
    expect(resolve('pullwarden_http_requests_total_bucket', known)).toBeUndefined();
    expect(resolve('pullwarden_cache_bytes_sum', known)).toBeUndefined();
  });
});
