import { cpus, loadavg, release, totalmem, type as osType } from 'node:os';

/** One line of the results table. */
export interface Figure {
  scenario: string;
  metric: string;
  talkbatch: string;
  baseline: string;
  target: string;
  /** undefined: informational, no target. */
  met?: boolean;
}

export interface ScenarioResult {
  name: string;
  figures: Figure[];
  /** Raw numbers, kept in bench/results/*.json. */
  details: Record<string, unknown>;
  seconds: number;
}

export interface Scenario {
  name: string;
  describe: string;
  run(log: (line: string) => void): Promise<Omit<ScenarioResult, 'seconds' | 'name'>>;
}

export function quantile(values: readonly number[], q: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[index] ?? NaN;
}

export const fixed = (value: number, digits = 2): string => (Number.isFinite(value) ? value.toFixed(digits) : 'n/a');
export const seconds = (ms: number): string => `${fixed(ms / 1000, 1)} s`;
export const millis = (ms: number): string => `${Math.round(ms)} ms`;

export function markdownTable(figures: readonly Figure[]): string {
  const header = '| scenario | metric | talkbatch | baseline | target | met |\n| --- | --- | --- | --- | --- | --- |';
  const lines = figures.map(
    (f) => `| ${f.scenario} | ${f.metric} | ${f.talkbatch} | ${f.baseline} | ${f.target} | ${f.met === undefined ? '' : f.met ? 'yes' : '**no**'} |`,
  );
  return [header, ...lines].join('\n');
}

export function machineLine(redisVersion: string): string {
  const cpu = cpus();
  return `${cpu.length} × ${cpu[0]?.model.trim() ?? 'unknown CPU'}, ${Math.round(totalmem() / 2 ** 30)} GiB RAM, ${osType()} ${release()}, Node ${process.version}, Redis ${redisVersion}, load average at start ${loadavg().map((l) => l.toFixed(2)).join(' ')}`;
}
