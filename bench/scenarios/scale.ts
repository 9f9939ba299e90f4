import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fixed, type Scenario } from '../lib/report.js';
import { startBenchRedis, type BenchRedis } from '../lib/redis.js';
import { TEMPLATE, writeBenchCsv } from '../lib/rows.js';
import { startSimulatorProcess, type SimulatorProcess } from '../lib/simulator.js';
import { build } from './enqueue.js';

/** Row counts, smallest first: BENCH_SCALE_ROWS=2000,20000 for a quicker look at the slopes. */
const SIZES = (process.env.BENCH_SCALE_ROWS ?? '10000,100000').split(',').map(Number);
const RENDER_MS = 100;
const PLAN_CAP = 64;
const CONCURRENCY = 64;

interface ScaleRun {
  rows: number;
  done: number;
  ms: number;
  rowsPerSecond: number;
  peakRssMB: number;
  /** Redis used_memory after the run minus before it, per finished row. */
  redisBytesPerRow: number;
  redisUsedMB: number;
  /** results.jsonl + results.csv + the review page(s). */
  reportMB: number;
  firstPageKB: number;
}

async function sizeOf(path: string): Promise<number> {
  const info = await stat(path).catch(() => undefined);
  if (!info) return 0;
  if (!info.isDirectory()) return info.size;
  let sum = 0;
  for (const name of await readdir(path)) sum += await sizeOf(join(path, name));
  return sum;
}

async function usedMemory(redis: BenchRedis): Promise<number> {
  return Number(/used_memory:(\d+)/.exec(await redis.admin.info('memory'))?.[1]);
}

/** `talkbatch run <csv> -q` (the built CLI) with its peak RSS (VmHWM, polled) and wall time. */
function cliRun(cli: string, env: Record<string, string>, csv: string, batchId: string, cwd: string): Promise<{ ms: number; peakRssMB: number; output: string }> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const proc = spawn(process.execPath, [cli, 'run', csv, '--template', TEMPLATE, '--batch', batchId, '-q'], {
      cwd,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let peakKB = 0;
    let output = '';
    const sample = (): void => {
      try {
        const kb = Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${proc.pid}/status`, 'utf8'))?.[1]);
        if (Number.isFinite(kb)) peakKB = Math.max(peakKB, kb);
      } catch {
        // Gone already, or not Linux.
      }
    };
    const timer = setInterval(sample, 50);
    proc.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    proc.stderr.on('data', (chunk: Buffer) => (output = (output + chunk.toString()).slice(-20_000)));
    proc.on('error', reject);
    proc.on('close', (code) => {
      clearInterval(timer);
      if (code !== 0) reject(new Error(`talkbatch run exited ${code}:\n${output.slice(-3000)}`));
      else resolve({ ms: performance.now() - started, peakRssMB: peakKB / 1024, output });
    });
  });
}

async function runOnce(cli: string, redis: BenchRedis, sim: SimulatorProcess, rows: number, dir: string, log: (line: string) => void): Promise<ScaleRun> {
  await redis.flush();
  await sim.resetStats();
  const csv = join(dir, `rows-${rows}.csv`);
  await writeBenchCsv(csv, rows);
  const outDir = join(dir, `out-${rows}`);
  const batchId = `scale-${rows}`;
  const before = await usedMemory(redis);
  const env = {
    REDIS_URL: redis.url,
    DID_API_URL: sim.url,
    DID_API_KEY: sim.apiKey,
    TALKBATCH_CONCURRENCY: String(CONCURRENCY),
    TALKBATCH_OUT_DIR: outDir,
    TALKBATCH_LOG_LEVEL: 'error',
  };
  const result = await cliRun(cli, env, csv, batchId, dir);
  const after = await usedMemory(redis);
  const done = Number(/finished: (\d+) done/.exec(result.output)?.[1] ?? NaN);
  const batchDir = join(outDir, batchId);
  const reportBytes = (await sizeOf(join(batchDir, 'results.jsonl'))) + (await sizeOf(join(batchDir, 'results.csv'))) + (await sizeOf(join(batchDir, 'index.html'))) + (await sizeOf(join(batchDir, 'review')));
  const run: ScaleRun = {
    rows,
    done,
    ms: result.ms,
    rowsPerSecond: (rows / result.ms) * 1000,
    peakRssMB: result.peakRssMB,
    redisBytesPerRow: (after - before) / rows,
    redisUsedMB: after / 2 ** 20,
    reportMB: reportBytes / 1e6,
    firstPageKB: (await sizeOf(join(batchDir, 'index.html'))) / 1e3,
  };
  log(
    `${rows} rows: ${fixed(run.ms / 1000, 1)} s, ${fixed(run.rowsPerSecond, 0)} rows/s, peak RSS ${fixed(run.peakRssMB, 0)} MB, ` +
      `Redis +${fixed(run.redisBytesPerRow, 0)} B/row (${fixed(run.redisUsedMB, 1)} MB used), reports ${fixed(run.reportMB, 1)} MB, first page ${fixed(run.firstPageKB, 0)} kB, done ${done}`,
  );
  await rm(outDir, { recursive: true, force: true });
  return run;
}

export const scale: Scenario = {
  name: 'scale',
  describe: `\`talkbatch run\` (built) of ${SIZES.map((n) => n.toLocaleString('en')).join(' and ')} rows, render ${RENDER_MS} ms, plan cap ${PLAN_CAP}, TALKBATCH_CONCURRENCY=${CONCURRENCY}: peak RSS, rows/s and Redis memory per finished row stay flat`,
  async run(log) {
    const dir = await mkdtemp(join(tmpdir(), 'tb-bench-scale-'));
    const redis = await startBenchRedis();
    const sim = await startSimulatorProcess({ renderMs: RENDER_MS, maxConcurrent: PLAN_CAP });
    try {
      log('building talkbatch into .tmp/bench-dist');
      const cli = join(build(), 'cli', 'main.js');
      const runs: ScaleRun[] = [];
      for (const rows of SIZES) runs.push(await runOnce(cli, redis, sim, rows, dir, log));
      const small = runs[0] as ScaleRun;
      const big = runs.at(-1) as ScaleRun;
      const growth = big.peakRssMB - small.peakRssMB;
      const speed = big.rowsPerSecond / small.rowsPerSecond;
      const label = (n: number): string => n.toLocaleString('en');
      const allDone = runs.every((run) => run.done === run.rows);
      return {
        figures: [
          {
            scenario: 'scale',
            metric: `peak RSS of \`talkbatch run\` (built), ${label(small.rows)} → ${label(big.rows)} rows`,
            talkbatch: `${fixed(small.peakRssMB, 0)} → ${fixed(big.peakRssMB, 0)} MB (+${fixed(growth, 0)})`,
            baseline: '',
            target: '< 250 MB, growth < 50 MB',
            met: big.peakRssMB < 250 && growth < 50,
          },
          {
            scenario: 'scale',
            metric: `rows/s of \`talkbatch run\`, ${label(big.rows)} vs ${label(small.rows)} rows`,
            talkbatch: `${fixed(speed)} (${fixed(big.rowsPerSecond, 0)} vs ${fixed(small.rowsPerSecond, 0)} rows/s)`,
            baseline: '',
            target: '≥ 0.90',
            met: speed >= 0.9 && allDone,
          },
          {
            scenario: 'scale',
            metric: `Redis used_memory per finished row, ${label(big.rows)} rows`,
            talkbatch: `${fixed(big.redisBytesPerRow, 0)} B (${fixed(small.redisBytesPerRow, 0)} B at ${label(small.rows)})`,
            baseline: '',
            target: '≤ 1 KB',
            met: big.redisBytesPerRow <= 1024,
          },
          {
            scenario: 'scale',
            metric: `report files, ${label(big.rows)} rows (first review page)`,
            talkbatch: `${fixed(big.reportMB, 1)} MB (${fixed(big.firstPageKB, 0)} kB)`,
            baseline: '',
            target: 'first page < 2 MB',
            met: big.firstPageKB < 2000,
          },
        ],
        details: { runs, renderMs: RENDER_MS, planCap: PLAN_CAP, concurrency: CONCURRENCY },
      };
    } finally {
      await sim.stop();
      await redis.stop();
      await rm(dir, { recursive: true, force: true });
    }
  },
};
