import { readFileSync } from 'node:fs';

/** CPU seconds a process has used so far (Linux /proc), or undefined elsewhere. */
export function cpuSecondsOf(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces) start at ") ".
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]);
    return Number.isFinite(ticks) ? ticks / 100 : undefined;
  } catch {
    return undefined;
  }
}

/** CPU seconds of this process (all threads). */
export function ownCpuSeconds(): number {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1e6;
}

/** CPU used by each named process between start() and stop(). */
export function cpuMeter(pids: Record<string, number | undefined>): { stop(): Record<string, number> } {
  const before = Object.fromEntries(Object.entries(pids).map(([name, pid]) => [name, cpuSecondsOf(pid)]));
  const ownBefore = ownCpuSeconds();
  return {
    stop() {
      const used: Record<string, number> = { bench: ownCpuSeconds() - ownBefore };
      for (const [name, pid] of Object.entries(pids)) {
        const start = before[name];
        const end = cpuSecondsOf(pid);
        if (start !== undefined && end !== undefined) used[name] = end - start;
      }
      return used;
    },
  };
}
