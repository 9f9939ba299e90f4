import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { loadConfig } from '../../src/config/index.js';
import { makePreviews } from '../../src/download/previews.js';
import { enqueueRows } from '../../src/queue/producer.js';
import { openQueue } from '../../src/queue/talk-queue.js';
import { silentLogger } from '../../src/shared/logger.js';
import { startSimulator } from '../../src/simulator/server.js';
import { startTalkWorker } from '../../src/worker/create-worker.js';
import { waitForPreviews } from '../../src/worker/preview-worker.js';
import { benchRows } from '../lib/rows.js';
import { millis, quantile, type Scenario } from '../lib/report.js';
import { startBenchRedis } from '../lib/redis.js';

const run = promisify(execFile);
const ENCODES = Number(process.env.BENCH_PREVIEW_ENCODES ?? 8);
const ROWS = 8;
const CONCURRENCY = 4;
const RENDER_MS = 2_000;
/** The slot time of a 2 s render, the scale the target is set against. */
const SLOT_MS = RENDER_MS;

/** A D-ID-sized result (512 × 512, 25 fps, 6 s, H.264 + AAC) made locally, so the encode cost is realistic. */
async function makeSampleVideo(dir: string): Promise<string> {
  const path = join(dir, 'sample.mp4');
  await run('ffmpeg', [
    '-hide_banner', '-loglevel', 'error', '-y',
    '-f', 'lavfi', '-i', 'testsrc2=size=512x512:rate=25', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=16000',
    '-t', '6', '-c:v', 'libx264', '-preset', 'veryfast', '-pix_fmt', 'yuv420p', '-c:a', 'aac', '-shortest', path,
  ]);
  return path;
}

/**
 * CPU ms used by this process's finished children (ffmpeg), from /proc/self/stat (cutime + cstime, in
 * clock ticks of 10 ms): on a shared, loaded machine wall time says more about the neighbours.
 */
async function childCpuMs(): Promise<number> {
  const stat = await readFile('/proc/self/stat', 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[13]) + Number(fields[14])) * 10;
}

/** Mean ms a talk job held its slot (BullMQ processedOn → finishedOn), previews on or off. */
async function slotTimes(redisUrl: string, previews: boolean, outDir: string): Promise<{ slotMs: number[]; previewWaitMs: number }> {
  const simulator = await startSimulator({ knobs: { renderMs: RENDER_MS, renderJitter: 0 } });
  const config = loadConfig({
    env: {},
    dotenvPath: false,
    overrides: {
      REDIS_URL: redisUrl,
      DID_API_URL: simulator.url,
      DID_API_KEY: simulator.apiKey,
      TALKBATCH_QUEUE: `bench-previews-${previews ? 'on' : 'off'}`,
      TALKBATCH_OUT_DIR: outDir,
      TALKBATCH_CONCURRENCY: CONCURRENCY,
      TALKBATCH_POLL_INITIAL_MS: 250,
      TALKBATCH_POLL_MAX_MS: 500,
      TALKBATCH_PREVIEWS: String(previews),
      TALKBATCH_LOG_LEVEL: 'silent',
    },
  });
  const handle = await openQueue(config, redisUrl);
  const worker = await startTalkWorker({ config, redisUrl, logger: silentLogger });
  try {
    // Bench rows repeat their requests: with the render cache on, most rows would be copies, not renders.
    await handle.batches.create('bench', 'bench', { cache: false });
    await enqueueRows(handle, 'bench', benchRows(ROWS));
    for (;;) {
      const counts = await handle.batches.counts('bench');
      if (counts.done + counts.failed >= counts.total) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const lastDone = Date.now();
    await waitForPreviews(worker.previews, 'bench', { timeoutMs: 600_000 });
    const previewWaitMs = Date.now() - lastDone;
    const jobs = await handle.queue.getJobs(['completed']);
    return { slotMs: jobs.map((job) => (job.finishedOn ?? 0) - (job.processedOn ?? 0)), previewWaitMs };
  } finally {
    await worker.close();
    await handle.queue.obliterate({ force: true }).catch(() => undefined);
    await handle.close();
    await simulator.close();
  }
}

const mean = (values: readonly number[]): number => values.reduce((sum, value) => sum + value, 0) / Math.max(1, values.length);

export const previews: Scenario = {
  name: 'previews',
  describe: `poster + GIF of a 512 px, 6 s video (${ENCODES} encodes), and ${ROWS} rows of 2 s renders with previews on vs off: what previews add per row and to the render slot`,
  async run(log) {
    const dir = await mkdtemp(join(tmpdir(), 'talkbatch-bench-previews-'));
    const redis = await startBenchRedis();
    try {
      const sample = await makeSampleVideo(dir);
      const encodeMs: number[] = [];
      const cpuMs: number[] = [];
      for (let index = 0; index < ENCODES; index += 1) {
        const started = performance.now();
        const cpuBefore = await childCpuMs();
        await makePreviews(sample, { ffmpeg: 'ffmpeg', posterAtSeconds: 1 });
        encodeMs.push(performance.now() - started);
        cpuMs.push((await childCpuMs()) - cpuBefore);
      }
      const p50 = quantile(encodeMs, 0.5);
      const cpu50 = quantile(cpuMs, 0.5);
      log(`poster + GIF per row: CPU p50 ${millis(cpu50)}, wall p50 ${millis(p50)}, p95 ${millis(quantile(encodeMs, 0.95))} (spent outside the render slot)`);

      const off = await slotTimes(redis.url, false, join(dir, 'off'));
      const on = await slotTimes(redis.url, true, join(dir, 'on'));
      const added = mean(on.slotMs) - mean(off.slotMs);
      log(`slot time per row: previews off ${millis(mean(off.slotMs))}, on ${millis(mean(on.slotMs))} (added ${millis(added)}); last previews done ${millis(on.previewWaitMs)} after the last video`);
      return {
        figures: [
          {
            scenario: 'previews',
            metric: 'poster + GIF of a 512 px video per row, ffmpeg CPU / wall p50 (made off the render slot, on the preview queue)',
            talkbatch: `${millis(cpu50)} / ${millis(p50)}`,
            baseline: '',
            target: '',
          },
          {
            scenario: 'previews',
            metric: 'render slot held per row with previews on (talkbatch) vs off (baseline column)',
            talkbatch: millis(mean(on.slotMs)),
            baseline: millis(mean(off.slotMs)),
            target: 'added < 10 % of 2 s',
            met: added < SLOT_MS * 0.1,
          },
        ],
        details: { encodeMs, cpuMs, slotMsOn: on.slotMs, slotMsOff: off.slotMs, previewWaitMs: on.previewWaitMs },
      };
    } finally {
      await redis.stop();
      await rm(dir, { recursive: true, force: true });
    }
  },
};
