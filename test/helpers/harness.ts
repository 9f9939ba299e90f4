import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { expect, vi } from 'vitest';
import type { Config } from '../../src/config/index.js';
import type { ManifestRow } from '../../src/manifest/index.js';
import { enqueueRows } from '../../src/queue/producer.js';
import type { BatchCounts, BatchStore } from '../../src/queue/batches.js';
import { openQueue, type QueueHandle } from '../../src/queue/talk-queue.js';
import { queueKeys } from '../../src/queue/keys.js';
import { readRenderLimit } from '../../src/queue/render-slots.js';
import { startSimulator, type Simulator, type SimulatorKnobs } from '../../src/simulator/server.js';
import { silentLogger } from '../../src/shared/logger.js';
import { startTalkWorker, type TalkWorker, type TalkWorkerOptions } from '../../src/worker/create-worker.js';
import { testConfig } from './context.js';

export const FIXTURE_VIDEO = readFileSync(new URL('../../fixtures/media/talk.mp4', import.meta.url));
export const FIXTURE_SHA256 = createHash('sha256').update(FIXTURE_VIDEO).digest('hex');
export const IMAGE = 'https://d-id-public-bucket.s3.us-west-2.amazonaws.com/alice.jpg';

export function row(index: number, overrides: Partial<ManifestRow> = {}): ManifestRow {
  const id = `row${String(index).padStart(4, '0')}`;
  return {
    line: index + 2,
    rowKey: id,
    input: { id, first_name: `Person ${index}` },
    talk: { source_url: IMAGE, script: { type: 'text', input: `Hello person number ${index}, this is your video.` } },
    outputName: `${id}.mp4`,
    estimatedSeconds: 3,
    ...overrides,
  };
}

export interface Harness {
  config: Config;
  simulator: Simulator;
  handle: QueueHandle;
  workers: TalkWorker[];
  startWorker(extra?: Partial<TalkWorkerOptions>): Promise<TalkWorker>;
  /** `cache: false`: the batch renders every row even when the render cache has its request. */
  enqueue(batchId: string, rows: ManifestRow[], options?: { cache?: boolean }): Promise<{ added: number; alreadyPresent: number }>;
  close(): Promise<void>;
}

/** A simulator, a queue of the test's own on the shared Redis, and workers that talk to both. */
export async function startHarness(knobs: Partial<SimulatorKnobs> = {}, overrides: Parameters<typeof testConfig>[0] = {}): Promise<Harness> {
  const simulator = await startSimulator({ knobs: { renderMs: 200, ...knobs } });
  const config = await testConfig({ DID_API_URL: simulator.url, DID_API_KEY: simulator.apiKey, ...overrides });
  const handle = await openQueue(config, config.redisUrl as string);
  const workers: TalkWorker[] = [];
  return {
    config,
    simulator,
    handle,
    workers,
    async startWorker(extra = {}) {
      const worker = await startTalkWorker({ config, redisUrl: config.redisUrl as string, logger: silentLogger, ...extra });
      workers.push(worker);
      return worker;
    },
    async enqueue(batchId, rows, options = {}) {
      await handle.batches.create(batchId, 'test', options.cache === false ? { cache: false } : {});
      return enqueueRows(handle, batchId, rows);
    },
    async close() {
      await Promise.all(workers.map((worker) => worker.close({ force: true })));
      await handle.queue.obliterate({ force: true }).catch(() => undefined);
      await handle.close();
      await simulator.close();
    },
  };
}

/** Waits until every row of the batch has an outcome (done or failed), then returns its counts. */
export async function untilBatchFinished(batches: BatchStore, batchId: string, timeout: number, interval = 100): Promise<BatchCounts> {
  await vi.waitFor(
    async () => {
      const counts = await batches.counts(batchId);
      expect(counts.done + counts.failed).toBe(counts.total);
    },
    { timeout, interval },
  );
  return batches.counts(batchId);
}

/** The render limit the workers of this queue follow now (adaptive concurrency learns it from 429s). */
export function renderLimitOf(handle: QueueHandle, config: Pick<Config, 'prefix' | 'queueName'>): Promise<number | null> {
  return readRenderLimit(handle.redis, queueKeys(config.prefix, config.queueName));
}
