/**
 * The read-only admin page, rendered on the server as plain HTML: tables that work without
 * JavaScript, and the chart as inline SVG (no script at all, so the CSP can forbid every script).
 * Every value from the audit trail is escaped with {@link esc}: repository names, tags, reasons and
 * user agents come from clients and upstreams.
 */
import type { Inventory, InventoryEntry } from '../../service/index.ts';

export interface AdminView {
  inventory: Inventory;
  cache: { bytes: number; blobs: number };
  /** How far back the page looks, in ms. */
  windowMs: number;
  now: Date;
}

const ESCAPES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};

/** HTML-escape text for element content and quoted attribute values. */
export function esc(value: string | number | undefined): string {
  return String(value ?? '').replace(/[&<>"']/g, (c) => ESCAPES[c] ?? c);
}

function short(d: string | undefined): string {
  if (d === undefined) return '-';
  const colon = d.indexOf(':');
  return colon < 0 ? d : `${d.slice(0, colon + 1)}${d.slice(colon + 1, colon + 13)}`;
}

function when(iso: string): string {
  return iso.slice(0, 19).replace('T', ' ');
}

function age(iso: string | undefined, now: Date): string {
  if (iso === undefined) return '-';
  const ms = now.getTime() - Date.parse(iso);
  if (!Number.isFinite(ms)) return '-';
  const days = Math.floor(ms / 86_400_000);
  return days >= 1 ? `${days} d` : `${Math.max(0, Math.floor(ms / 3_600_000))} h`;
}

function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${v.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

function image(e: { upstream: string; repository: string; tag?: string | undefined }): string {
  return `${e.upstream}/${e.repository}${e.tag !== undefined ? `:${e.tag}` : ''}`;
}

function inventoryRow(e: InventoryEntry, now: Date): string {
  const gates = e.gates.map((g) => `${g.gate}: ${g.result}`).join(', ');
  return `<tr class="${e.decision === 'deny' ? 'deny' : ''}">
<td>${esc(image(e))}</td><td title="${esc(e.digest)}"><code>${esc(short(e.digest))}</code>${e.digests.length > 1 ? ` <small>(${e.digests.length} digests)</small>` : ''}</td>
<td>${esc(e.decision ?? '-')}</td><td>${esc(e.policy ?? '-')}</td><td class="n">${e.pulls}</td><td class="n">${e.clients}</td><td class="n">${e.identities}</td><td class="n">${e.denials}</td>
<td>${esc(when(e.firstPull))}</td><td>${esc(when(e.lastPull))}</td><td>${esc(age(e.created, now))}</td>
<td>${e.signers.length > 0 ? e.signers.map(esc).join('<br>') : '<span class="warn">unsigned</span>'}</td><td>${esc(gates || '-')}</td><td class="n">${e.moves.length}</td></tr>`;
}

function chart(series: Inventory['series']): string {
  const w = 720;
  const h = 160;
  const pad = 24;
  const max = Math.max(1, ...series.map((s) => s.pulls));
  const bw = (w - pad) / Math.max(1, series.length);
  const bars = series
    .map((s, i) => {
      const x = pad + i * bw;
      const ph = ((h - pad) * s.pulls) / max;
      const dh = ((h - pad) * s.denials) / max;
      const label = `${when(s.start)}: ${s.pulls} pulls, ${s.denials} denials`;
      return `<g><title>${esc(label)}</title><rect x="${x.toFixed(1)}" y="${(h - pad - ph).toFixed(1)}" width="${(bw - 2).toFixed(1)}" height="${ph.toFixed(1)}" fill="#4a78b5"/><rect x="${x.toFixed(1)}" y="${(h - pad - dh).toFixed(1)}" width="${(bw - 2).toFixed(1)}" height="${dh.toFixed(1)}" fill="#c0392b"/></g>`;
    })
    .join('');
  const first = series[0];
  const last = series[series.length - 1];
  return `<svg id="chart" role="img" aria-label="pulls and denials over time" viewBox="0 0 ${w} ${h}" width="${w}" height="${h}">
<line x1="${pad}" y1="${h - pad}" x2="${w}" y2="${h - pad}" stroke="#888"/>
<text x="0" y="12" font-size="11" fill="#333">${max}</text><text x="0" y="${h - pad}" font-size="11" fill="#333">0</text>
${bars}
<text x="${pad}" y="${h - 6}" font-size="11" fill="#333">${esc(first ? when(first.start) : '')}</text>
<text x="${w}" y="${h - 6}" font-size="11" fill="#333" text-anchor="end">${esc(last ? when(last.start) : '')}</text>
</svg>`;
}

/** The whole page. */
export function renderAdminPage(view: AdminView): string {
  const inv = view.inventory;
  const { hit, miss, stale } = inv.cache;
  const total = hit + miss + stale;
  const ratio = total === 0 ? '-' : `${((100 * hit) / total).toFixed(1)} %`;
  const days = Math.round(view.windowMs / 86_400_000);
  const denials = inv.denials
    .map(
      (
        d,
      ) => `<tr><td>${esc(when(d.time))}</td><td>${esc(d.identity ?? d.client)}</td><td>${esc(image(d))}${d.reference !== d.tag ? ` <code>${esc(short(d.reference))}</code>` : ''}</td><td>${esc(d.policy ?? '-')}</td><td class="n">${d.status}</td>
<td><ul>${(d.reasons.length > 0 ? d.reasons : ['(no reason recorded)']).map((r) => `<li>${esc(r)}</li>`).join('')}</ul></td></tr>`,
    )
    .join('\n');
  const moves = inv.moves
    .map(
      (m) =>
        `<tr><td>${esc(when(m.time))}</td><td>${esc(image(m))}</td><td><code>${esc(short(m.old))}</code></td><td><code>${esc(short(m.new))}</code></td></tr>`,
    )
    .join('\n');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>pullwarden</title>
<link rel="stylesheet" href="/admin.css">
</head>
<body>
<header><h1>pullwarden</h1><p>Read-only view of the last ${days} day${days === 1 ? '' : 's'}, generated ${esc(when(view.now.toISOString()))} UTC.</p></header>
<section id="summary"><h2>Cache</h2>
<dl><dt>Size</dt><dd id="cache-size">${esc(bytes(view.cache.bytes))} in ${view.cache.blobs} blobs</dd>
<dt>Hit ratio</dt><dd id="hit-ratio">${esc(ratio)} <small>(${hit} hits, ${miss} fetched, ${stale} stale)</small></dd></dl></section>
<section><h2>Pulls and denials per hour</h2>${chart(inv.series)}<p class="legend"><span class="pull">■</span> pulls <span class="den">■</span> denials</p></section>
<section><h2>Recent denials</h2>
<table id="denials"><thead><tr><th>Time</th><th>Client</th><th>Image</th><th>Policy</th><th>Status</th><th>Why</th></tr></thead>
<tbody>${denials || '<tr><td colspan="6">No denials.</td></tr>'}</tbody></table></section>
<section><h2>Inventory</h2>
<table id="inventory"><thead><tr><th>Image</th><th>Digest</th><th>Decision</th><th>Policy</th><th>Pulls</th><th>Clients</th><th>Identities</th><th>Denied</th><th>First pull</th><th>Last pull</th><th>Age</th><th>Signers</th><th>Gates</th><th>Moves</th></tr></thead>
<tbody>${inv.entries.map((e) => inventoryRow(e, view.now)).join('\n') || '<tr><td colspan="14">Nothing pulled yet.</td></tr>'}</tbody></table></section>
<section><h2>Tag moves</h2>
<table id="moves"><thead><tr><th>Time</th><th>Tag</th><th>From</th><th>To</th></tr></thead>
<tbody>${moves || '<tr><td colspan="4">No tag moved.</td></tr>'}</tbody></table></section>
</body>
</html>
`;
}

/** The stylesheet (served from /admin.css: the CSP allows no inline style). */
export const ADMIN_CSS = `body{font:14px/1.4 system-ui,sans-serif;margin:1.5rem;color:#222;background:#fafafa}
h1{margin:0}h2{margin-top:2rem;font-size:1.1rem}header p{color:#555;margin:.2rem 0}
table{border-collapse:collapse;width:100%;background:#fff}th,td{border:1px solid #ddd;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#eee}td.n{text-align:right}tr.deny td{background:#fdecea}code{font-size:12px}
ul{margin:0;padding-left:1.1rem}.warn{color:#a15c00}dl{display:grid;grid-template-columns:8rem auto;gap:.2rem 1rem}dd{margin:0}
.legend .pull{color:#4a78b5}.legend .den{color:#c0392b}svg{background:#fff;border:1px solid #ddd;max-width:100%;height:auto}
`;
