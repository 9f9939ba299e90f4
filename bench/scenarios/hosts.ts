import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { loadConfig } from '../../src/config/index.js';
import { enqueueRows } from '../../src/queue/producer.js';
import { openQueue } from '../../src/queue/talk-queue.js';
import { createNetnsLab, netnsSupport, type NetnsLab } from '../../test/helpers/netns.js';
import { ROOT } from '../lib/paths.js';
import { excludeFromCounts, startBenchRedis } from '../lib/redis.js';
import { fixed, seconds, type Figure, type Scenario } from '../lib/report.js';
import { benchRows } from '../lib/rows.js';
import { idealOf, listScheduleOf, runTalkbatchOnce, settle, talksOf } from '../lib/runs.js';
import { startSimulatorProcess } from '../lib/simulator.js';

const ROWS = Number(process.env.BENCH_HOSTS_ROWS ?? 2_000);
const RENDER_MS = 2_000;
const JITTER = 0.25;
const CAP = 32;
const PROCESSES = 4;

interface WorkerChild {
  child: ChildProcess;
  ready: Promise<void>;
  exited: Promise<void>;
}

/** A `talkbatch worker` process, as a separate machine would run it (sources through tsx); `exec` prefixes it (`ip netns exec <ns>`). */
function spawnWorker(env: Record<string, string>, exec: readonly string[] = []): WorkerChild {
  const [command, ...prefix] = [...exec, process.execPath];
  const child = spawn(command, [...prefix, '--import', 'tsx', 'src/cli/main.ts', 'worker', '--no-schedules'], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', TALKBATCH_LOG_PRETTY: 'false', TALKBATCH_LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  let markReady: () => void = () => {};
  let markFailed: (error: Error) => void = () => {};
  const ready = new Promise<void>((resolve, reject) => {
    markReady = resolve;
    markFailed = reject;
  });
  const onData = (chunk: Buffer): void => {
    output = (output + chunk.toString()).slice(-20_000);
    if (output.includes('"worker started"')) markReady();
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  const exited = new Promise<void>((resolve) =>
    child.once('exit', (code) => {
      markFailed(new Error(`worker exited (${code}) before it started:\n${output}`));
      resolve();
    }),
  );
  return { child, ready, exited };
}

export const hosts: Scenario = {
  name: 'hosts',
  describe: `N=${ROWS}, T=2 s ±25 %, C=${CAP} (plan cap ${CAP}), polling: ${PROCESSES} worker processes (each in its own network namespace where possible) vs one, same Redis and simulator`,
  async run(log) {
    const rows = benchRows(ROWS);
    // Each worker process on a "host" of its own: a network namespace reaching Redis and the simulator on the lab's bridge.
    const support = netnsSupport((message) => log(message));
    let lab: NetnsLab | undefined;
    if (support.ok) lab = createNetnsLab(PROCESSES);
    else log(`note: worker processes run without network namespaces (${support.reason})`);
    const redis = await startBenchRedis(lab ? { bind: [lab.gateway] } : {});
    const sim = await startSimulatorProcess({ renderMs: RENDER_MS, renderJitter: JITTER, maxConcurrent: CAP, ...(lab ? { host: lab.gateway } : {}) });
    const figures: Figure[] = [];
    const details: Record<string, unknown> = { rows: ROWS, renderMs: RENDER_MS, jitter: JITTER, cap: CAP, processes: PROCESSES, namespaces: lab !== undefined, nominalIdealMs: (ROWS * RENDER_MS) / CAP };
    const workers: WorkerChild[] = [];
    const outDir = await mkdtemp(join(tmpdir(), 'tb-bench-hosts-'));
    try {
      log(`one process (worker in the bench's process), TALKBATCH_CONCURRENCY=${CAP}`);
      const single = await runTalkbatchOnce({ label: 'hosts-single', redis, sim, rows, concurrency: CAP, cap: CAP, webhooks: false, timeoutMs: 20 * 60_000 });
      const singleRatio = single.ms / single.idealMs;
      log(`  ${fixed(singleRatio)} (${seconds(single.ms)}), failed ${single.failed}, duplicates ${single.sim.duplicateUserData.length}`);
      details.single = { ms: single.ms, idealMs: single.idealMs, listScheduleMs: single.listScheduleMs, ratio: singleRatio, done: single.done, failed: single.failed };

      await redis.flush();
      await settle(sim);
      const env: Record<string, string> = {
        REDIS_URL: lab ? `redis://${lab.gateway}:${redis.server.port}` : redis.url,
        DID_API_URL: sim.url,
        DID_API_KEY: sim.apiKey,
        TALKBATCH_OUT_DIR: outDir,
        TALKBATCH_CONCURRENCY: String(CAP),
      };
      log(`${PROCESSES} worker processes (talkbatch worker${lab ? ', each in its own network namespace' : ''}), TALKBATCH_CONCURRENCY=${CAP} across them`);
      for (let i = 0; i < PROCESSES; i += 1) workers.push(spawnWorker(env, lab?.hosts[i]?.exec));
      await Promise.all(workers.map((worker) => worker.ready));
      const config = loadConfig({ dotenvPath: false, env: { ...env, REDIS_URL: redis.url, TALKBATCH_LOG_LEVEL: 'error' } });
      const handle = await openQueue(config, redis.url);
      const watcher = new Redis(redis.url, { maxRetriesPerRequest: null });
      excludeFromCounts(watcher);
      const batchId = `tb-hosts-multi-${Date.now().toString(36)}`;
      const key = (part: string): string => `${config.prefix}:${config.queueName}:batch:${batchId}:${part}`;
      try {
        const started = performance.now();
        // Bench rows repeat their requests: with the render cache on, most rows would be copies, not renders.
        await handle.batches.create(batchId, 'bench', { cache: false });
        await enqueueRows(handle, batchId, rows);
        let done = 0;
        let failed = 0;
        for (const deadline = Date.now() + 20 * 60_000; done + failed < ROWS; ) {
          if (Date.now() > deadline) throw new Error(`hosts batch not finished (${done + failed} of ${ROWS})`);
          await new Promise((resolve) => setTimeout(resolve, 20));
          const counts = (await watcher.multi().scard(key('done')).scard(key('failed')).exec())?.map(([, value]) => Number(value)) ?? [0, 0];
          done = counts[0] ?? 0;
          failed = counts[1] ?? 0;
        }
        const ms = performance.now() - started;
        const talks = await talksOf(sim, batchId);
        const stats = await sim.stats();
        const idealMs = idealOf(talks, CAP);
        const ratio = ms / idealMs;
        log(`  ${fixed(ratio)} (${seconds(ms)}), packing floor ${fixed(listScheduleOf(talks, CAP) / idealMs, 3)}, failed ${failed}, duplicates ${stats.duplicateUserData.length}, max renders seen ${stats.maxConcurrentRendersSeen}`);
        details.multi = { ms, idealMs, listScheduleMs: listScheduleOf(talks, CAP), ratio, done, failed, duplicates: stats.duplicateUserData.length, maxRendersSeen: stats.maxConcurrentRendersSeen };
        figures.push({
          scenario: 'hosts',
          metric: `makespan / (ΣT/C), ${PROCESSES} worker processes (baseline column: one process, same run)`,
          talkbatch: `${fixed(ratio)} (${seconds(ms)})`,
          baseline: `${fixed(singleRatio)} (${seconds(single.ms)})`,
          target: '≤ 1.05',
          met: ratio <= 1.05 && failed === 0 && stats.duplicateUserData.length === 0,
        });
      } finally {
        watcher.disconnect();
        await handle.close();
      }
    } finally {
      for (const worker of workers) worker.child.kill('SIGTERM');
      await Promise.all(workers.map((worker) => worker.exited));
      await sim.stop();
      await redis.stop();
      lab?.close();
      await rm(outDir, { recursive: true, force: true });
    }
    return { figures, details };
  },
};
