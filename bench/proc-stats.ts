/**
 * Memory of a child process, read from /proc/<pid>/status (Linux only).
 *
 * VmHWM is the kernel's own high-water mark of the resident set over the process lifetime, so it
 * catches a peak between two samples; the sampler reports the largest VmRSS it saw as a cross-check
 * and as the peak of a window (VmHWM cannot be reset without privileges).
 */
import { readFileSync } from 'node:fs';

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
