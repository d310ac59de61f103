/** The result table: one row per measurement, Markdown, printed and written to bench/results/. */

export type Verdict = 'pass' | 'MISSED' | 'info';

export interface Row {
  measurement: string;
  pullwarden: string;
  /** The reference measured in the same run, named: "peer 1,234 req/s", "direct 3.10 s". */
  reference: string;
  ratio: string;
  target: string;
  result: Verdict;
}

export function fmt(n: number, digits = 0): string {
  return n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

export function ratio(a: number, b: number): string {
  return b === 0 ? 'n/a' : `${fmt(a / b, 2)}x`;
}

export function mib(bytes: number): string {
  return `${fmt(bytes / 1024 / 1024, 0)} MiB`;
}

export function markdownTable(rows: readonly Row[]): string {
  const header = ['Measurement', 'pullwarden', 'reference', 'ratio', 'target', 'result'];
  const cells = rows.map((r) => [
    r.measurement,
    r.pullwarden,
    r.reference,
    r.ratio,
    r.target,
    r.result === 'MISSED' ? '**MISSED**' : r.result,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: readonly string[]): string => `| ${c.map((s, i) => s.padEnd(widths[i]!)).join(' | ')} |`;
  return [line(header), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...cells.map(line)].join('\n');
}
