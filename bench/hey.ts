/**
 * Load generation with `hey` (rakyll/hey): a Go HTTP client that reads every body to the end and
 * prints a summary, which is parsed here. Every run is bounded: by `-z` (duration) or `-n` (count),
 * and by a hard process timeout.
 */
import { run } from '../test/support/proc.ts';

export interface HeyResult {
  requestsPerSec: number;
  totalSecs: number;
  /** Body bytes read, summed over all responses. */
  totalBytes: number;
  /** Responses per HTTP status. */
  statuses: Map<number, number>;
  /** Transport errors (`Error distribution`), e.g. requests cut off when `-z` ran out. */
  errors: number;
}

export interface HeyOptions {
  method?: 'GET' | 'HEAD';
  headers?: Record<string, string>;
  concurrency: number;
  /** Exactly one of `requests` (count) and `duration` (seconds). */
  requests?: number;
  duration?: number;
  timeoutMs?: number;
}

export function parseHey(out: string): HeyResult {
  const num = (re: RegExp): number => {
    const m = re.exec(out);
    if (m === null) throw new Error(`hey output did not match ${String(re)}:\n${out}`);
    return Number(m[1]);
  };
  const statuses = new Map<number, number>();
  for (const m of out.matchAll(/^\s+\[(\d{3})\]\s+(\d+) responses$/gm))
    statuses.set(Number(m[1]), Number(m[2]));
  let errors = 0;
  const errSection = out.split('Error distribution:')[1];
  if (errSection !== undefined)
    for (const m of errSection.matchAll(/^\s+\[(\d+)\]/gm)) errors += Number(m[1]);
  const data = /Total data:\s+(\d+) bytes/.exec(out);
  return {
    requestsPerSec: num(/Requests\/sec:\s+([\d.]+)/),
    totalSecs: num(/Total:\s+([\d.]+) secs/),
    totalBytes: data === null ? 0 : Number(data[1]),
    statuses,
    errors,
  };
}

/** Runs hey against `url` and fails unless every completed response had status 200. */
export async function hey(url: string, opts: HeyOptions): Promise<HeyResult> {
  const args = ['-c', String(opts.concurrency), '-m', opts.method ?? 'GET', '-t', '60'];
  if (opts.duration !== undefined) args.push('-z', `${opts.duration}s`);
  else args.push('-n', String(opts.requests ?? 200));
  for (const [k, v] of Object.entries(opts.headers ?? {})) args.push('-H', `${k}: ${v}`);
  args.push(url);
  const { stdout } = await run('hey', args, {
    timeoutMs: opts.timeoutMs ?? ((opts.duration ?? 0) + 120) * 1000,
  });
  const result = parseHey(stdout);
  const bad = [...result.statuses].filter(([s]) => s !== 200);
  const ok = result.statuses.get(200) ?? 0;
  if (bad.length > 0 || ok === 0) {
    throw new Error(`hey ${url}: non-200 responses ${JSON.stringify(bad)} (200: ${ok})\n${stdout}`);
  }
  return result;
}
