/**
 * Memory of a child process, read from /proc/<pid>/status (Linux only).
 *
 * VmHWM is the kernel's own high-water mark of the resident set over the process lifetime, so it
 * catches a peak between two samples; the sampler reports the largest VmRSS it saw as a cross-check
 * and as the peak of a window (VmHWM cannot be reset without privileges).
 */
import { readdirSync, readFileSync } from 'node:fs';

/** A `Vm*` field of /proc/<pid>/status in bytes, or undefined when the process is gone. */
export function readVmField(pid: number, field: 'VmRSS' | 'VmHWM'): number | undefined {
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return undefined;
  }
  const m = new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(status);
  return m === null ? undefined : Number(m[1]) * 1024;
}

export interface RssSampler {
  /** Stops sampling; resolves to the largest VmRSS seen and VmHWM at the end (bytes). */
  stop(): { maxRss: number; hwm: number };
}

/** Samples VmRSS of `pid` every `intervalMs` until `stop()`. */
export function sampleRss(pid: number, intervalMs = 50): RssSampler {
  let maxRss = readVmField(pid, 'VmRSS') ?? 0;
  let hwm = readVmField(pid, 'VmHWM') ?? 0;
  const timer = setInterval(() => {
    maxRss = Math.max(maxRss, readVmField(pid, 'VmRSS') ?? 0);
    hwm = Math.max(hwm, readVmField(pid, 'VmHWM') ?? 0);
  }, intervalMs);
  return {
    stop() {
      clearInterval(timer);
      maxRss = Math.max(maxRss, readVmField(pid, 'VmRSS') ?? 0);
      hwm = Math.max(hwm, readVmField(pid, 'VmHWM') ?? 0);
      return { maxRss, hwm };
    },
  };
}

/** Child process ids of `pid` (its cluster workers), from `/proc/<pid>/task/<tid>/children`. */
export function childPids(pid: number): number[] {
  const out: number[] = [];
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tids) {
    try {
      const text = readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim();
      if (text !== '') out.push(...text.split(' ').map(Number));
    } catch {
      // The thread ended between the listing and the read.
    }
  }
  return out;
}

export interface ProcessTreePeak {
  /** Peak per process (max of sampled VmRSS and VmHWM), the primary first. */
  perProcess: { pid: number; peak: number }[];
  /** Largest sum of the VmRSS of every process sampled at one moment. */
  total: number;
}

export interface ProcessTreeSampler {
  stop(): ProcessTreePeak;
}

/**
 * Samples VmRSS of `pid` and of its children (looked up again at every tick) every `intervalMs`
 * until `stop()`: the peak of each process, and the peak of their sum at one moment.
 */
export function sampleRssTree(pid: number, intervalMs = 50): ProcessTreeSampler {
  const peaks = new Map<number, number>();
  let total = 0;
  const tick = (): void => {
    let sum = 0;
    for (const p of [pid, ...childPids(pid)]) {
      const rss = readVmField(p, 'VmRSS') ?? 0;
      const hwm = readVmField(p, 'VmHWM') ?? 0;
      peaks.set(p, Math.max(peaks.get(p) ?? 0, rss, hwm));
      sum += rss;
    }
    total = Math.max(total, sum);
  };
  tick();
  const timer = setInterval(tick, intervalMs);
  return {
    stop() {
      clearInterval(timer);
      tick();
      return { perProcess: [...peaks].map(([p, peak]) => ({ pid: p, peak })), total };
    },
  };
}
