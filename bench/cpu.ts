/**
 * CPU measurements for the benchmark: a full GC before a measured phase, and the CPU time of a
 * child process read from /proc (Linux only).
 *
 * Wall time on the shared 2-core machine moves with whatever else runs (registries, other rows'
 * background work, other sessions); CPU time of the thread or process that did the work does not.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/** A full garbage collection, so a measured phase does not pay for the garbage of the one before. */
export const collectGarbage: () => void = (() => {
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
})();

/**
 * CPU ms (user + system) of this thread while `fn` runs, and its wall ms; after a full collection
 * unless `collect` is false (repeated full GCs age bytecode until V8 flushes it, so a loop of warm
 * calls would measure recompilation).
 */
export function threadCpu<T>(fn: () => T, collect = true): { value: T; cpuMs: number; wallMs: number } {
  if (collect) collectGarbage();
  const c = process.threadCpuUsage();
  const w = performance.now();
  const value = fn();
  const wallMs = performance.now() - w;
  const d = process.threadCpuUsage(c);
  return { value, cpuMs: (d.user + d.system) / 1000, wallMs };
}

/**
 * CPU time of process `pid` so far in ms, summed over all its threads (main thread, libuv pool, V8
 * GC helpers), from `/proc/<pid>/task/<tid>/schedstat` (nanoseconds on CPU; `/proc/<pid>/stat`
 * counts whole clock ticks of 10 ms, too coarse for one decision). Undefined when the process is gone.
 */
export function processCpuMs(pid: number): number | undefined {
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return undefined;
  }
  let ns = 0;
  for (const tid of tids) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      // A thread that ended between the listing and the read: its time is gone with it.
    }
  }
  return ns / 1e6;
}

/**
 * CPU time in ms of this process's children that have ended and been waited for (`cutime` + `cstime`
 * of /proc/self/stat, in clock ticks of 10 ms): the delta around one `hey` run is hey's own CPU.
 */
export function reapedChildrenCpuMs(): number {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  // Fields after the parenthesised command name, which may itself hold spaces.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // cutime and cstime are fields 16 and 17 of stat(5); fields[0] here is field 3.
  return (Number(fields[13]) + Number(fields[14])) * 10;
}
