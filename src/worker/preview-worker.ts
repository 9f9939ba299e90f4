import { basename } from 'node:path';
import { Queue, Worker, type Job } from 'bullmq';
import type { RedisClient } from '../queue/connections.js';
import type { Config } from '../config/index.js';
import { makePreviews, encoderProblem } from '../download/previews.js';
import { PreviewStore, ShareStore, type PreviewOutcome } from '../queue/previews.js';
import { sleep } from '../shared/clock.js';
import type { Logger } from '../shared/logger.js';

import { previewQueueName } from '../queue/keys.js';

export { previewQueueName };

/** A done row whose poster, GIF and share link are to be made. */
export interface PreviewJob {
  batchId: string;
  rowKey: string;
  /** The verified video, as the talk job wrote it. */
  file: string;
  /** From the row's `share_title` / `share_message` cells, shown on the share page. */
  title?: string;
  message?: string;
}

/** Ffmpeg runs one at a time per worker process: it uses a whole core, and rows are not waiting on it. */
const PREVIEW_CONCURRENCY = 1;

/**
 * What the talk processor calls once a row's video is on disk: marks the row pending, then adds its
 * preview job (job id = the row's, so a retried talk job adds it once).
 */
export class PreviewRequests {
  readonly store: PreviewStore;
  readonly #queue: Queue<PreviewJob>;

  constructor(connection: RedisClient, config: Pick<Config, 'prefix' | 'queueName'>) {
    this.store = new PreviewStore(connection, config.prefix, config.queueName);
    this.#queue = new Queue<PreviewJob>(previewQueueName(config.queueName), { connection, prefix: config.prefix });
    this.#queue.on('error', () => {
      // Surfaced through the failing add instead.
    });
  }

  async request(job: PreviewJob): Promise<void> {
    await this.store.markPending(job.batchId, job.rowKey);
    await this.#queue.add('preview', job, {
      jobId: `${job.batchId}-${job.rowKey}`,
      attempts: 3,
      backoff: { type: 'exponential', delay: 1_000 },
      removeOnComplete: true,
      removeOnFail: true,
    });
  }

  close(): Promise<void> {
    return this.#queue.close();
  }
}

export interface PreviewWorkerOptions {
  config: Config;
  connection: RedisClient;
  logger: Logger;
}

/** Runs the preview queue in this process: encodes, publishes the share link, records the outcome. */
export function startPreviewWorker(options: PreviewWorkerOptions): { worker: Worker<PreviewJob>; close(): Promise<void> } {
  const { config, connection, logger } = options;
  const store = new PreviewStore(connection, config.prefix, config.queueName);
  const shares = new ShareStore(connection, config.prefix, config.queueName);
  let warnedNoEncoder = false;

  const processPreview = async (job: Job<PreviewJob>): Promise<PreviewOutcome> => {
    const { batchId, rowKey, file } = job.data;
    const outcome = await previewOutcome(file);
    if (outcome.status === 'failed') logger.warn({ batchId, rowKey, reason: outcome.reason }, 'no preview for this row; its video is done');
    await shares.publish({
      batchId,
      rowKey,
      video: basename(file),
      ...(outcome.status === 'done' ? { poster: outcome.poster, gif: outcome.gif } : {}),
      ...(job.data.title ? { title: job.data.title } : {}),
      ...(job.data.message ? { message: job.data.message } : {}),
    });
    await store.finish(batchId, rowKey, outcome);
    return outcome;
  };

  async function previewOutcome(file: string): Promise<PreviewOutcome> {
    if (!config.previews) return { status: 'skipped', reason: 'previews are turned off (--no-previews / TALKBATCH_PREVIEWS=false)' };
    const problem = await encoderProblem(config.ffmpegPath);
    if (problem) {
      if (!warnedNoEncoder) logger.error(problem);
      warnedNoEncoder = true;
      return { status: 'failed', reason: problem };
    }
    try {
      const made = await makePreviews(file, { ffmpeg: config.ffmpegPath, posterAtSeconds: config.posterAtSeconds });
      return { status: 'done', poster: basename(made.poster), gif: basename(made.gif) };
    } catch (error) {
      return { status: 'failed', reason: error instanceof Error ? error.message : String(error) };
    }
  }

  const worker = new Worker<PreviewJob>(previewQueueName(config.queueName), processPreview, {
    connection,
    prefix: config.prefix,
    concurrency: PREVIEW_CONCURRENCY,
    lockDuration: config.lockMs,
    stalledInterval: config.stalledIntervalMs,
  });
  worker.on('error', (error) => logger.warn({ err: error.message }, 'preview worker connection error'));
  return { worker, close: () => worker.close() };
}

/**
 * Waits until every preview requested for the batch has an outcome (or `timeoutMs` passed, or the
 * signal fired). Returns how many are still pending.
 */
export async function waitForPreviews(store: PreviewStore, batchId: string, options: { timeoutMs: number; signal?: AbortSignal; intervalMs?: number }): Promise<number> {
  const deadline = Date.now() + options.timeoutMs;
  for (;;) {
    const pending = await store.pendingCount(batchId);
    if (pending === 0 || Date.now() >= deadline || options.signal?.aborted) return pending;
    await sleep(options.intervalMs ?? 200);
  }
}
