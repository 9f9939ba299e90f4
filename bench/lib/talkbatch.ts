import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { BatchService } from '../../src/app/index.js';
import { loadConfig, type Config } from '../../src/config/index.js';
import { DidClient } from '../../src/did/index.js';
import type { ManifestRow } from '../../src/manifest/index.js';
import { enqueueRows } from '../../src/queue/producer.js';
import { openQueue, type QueueHandle } from '../../src/queue/talk-queue.js';
import { buildServer, type TalkbatchServer } from '../../src/server/index.js';
import { createLogger } from '../../src/shared/logger.js';
import { webhookUrl } from '../../src/shared/webhook-token.js';
import { startTalkWorker, type TalkWorker } from '../../src/worker/create-worker.js';
import { excludeFromCounts } from './redis.js';

const WEBHOOK_SECRET = 'bench-webhook-secret-0123456789abcdef';

export interface TalkbatchRunOptions {
  redisUrl: string;
  apiUrl: string;
  apiKey: string;
  /** TALKBATCH_CONCURRENCY. */
  concurrency: number;
  /** Receive D-ID's webhooks on a local `talkbatch serve` receiver (http, 127.0.0.1). */
  webhooks: boolean;
  /** Extra settings, by environment variable name. */
  settings?: Record<string, string>;
  /** Finish batches as `talkbatch worker` does (report, D-ID's balance after, callback): off by default, the other scenarios time rows only. */
  finisher?: boolean;
}

export interface TalkbatchSetup {
  config: Config;
  handle: QueueHandle;
  worker: TalkWorker;
  server: TalkbatchServer | undefined;
  outDir: string;
  /**
   * Enqueues the rows as one batch (jobs + ledger), as `talkbatch enqueue` does after validation. The render cache is
   * off unless asked for: bench rows repeat their requests (60 distinct scripts), and the scenarios measure renders.
   */
  enqueue(batchId: string, rows: ManifestRow[], options?: { cache?: boolean }): Promise<void>;
  /** Resolves when the batch's ledger counts every row done or failed; polls on the bench's own connection. */
  waitForBatch(batchId: string, total: number, timeoutMs: number): Promise<{ done: number; failed: number }>;
  close(): Promise<void>;
}

/** One talkbatch deployment, in this process: a worker, a producer handle and, with webhooks, the receiver. */
export async function startTalkbatch(options: TalkbatchRunOptions): Promise<TalkbatchSetup> {
  const outDir = await mkdtemp(join(tmpdir(), 'tb-bench-out-'));
  const config = loadConfig({
    dotenvPath: false,
    env: {
      REDIS_URL: options.redisUrl,
      DID_API_URL: options.apiUrl,
      DID_API_KEY: options.apiKey,
      TALKBATCH_OUT_DIR: outDir,
      TALKBATCH_CONCURRENCY: String(options.concurrency),
      TALKBATCH_LOG_LEVEL: process.env.BENCH_LOG_LEVEL ?? 'error',
      ...(options.webhooks ? { TALKBATCH_WEBHOOK_SECRET: WEBHOOK_SECRET } : {}),
      ...options.settings,
    },
  });
  const logger = createLogger({ level: config.logLevel });
  const handle = await openQueue(config, options.redisUrl);
  let server: TalkbatchServer | undefined;
  let did: DidClient | undefined;
  let webhookBase: string | undefined;
  if (options.webhooks) {
    did = new DidClient({ apiKey: options.apiKey, baseUrl: options.apiUrl, logger });
    server = await buildServer({ config, handle, did, logger });
    webhookBase = await server.app.listen({ host: '127.0.0.1', port: 0 });
  }
  const base = webhookBase;
  const service = options.finisher ? new BatchService({ config, handle, logger }) : undefined;
  const worker = await startTalkWorker({
    config,
    redisUrl: options.redisUrl,
    logger,
    ...(service ? { onBatchFinished: service.finisher.onBatchFinished } : {}),
    // Config only takes an https TALKBATCH_PUBLIC_URL; the bench's receiver is plain http on 127.0.0.1.
    ...(base ? { webhookUrlFor: (jobId: string) => webhookUrl(base, WEBHOOK_SECRET, jobId) } : {}),
  });
  const watcher = new Redis(options.redisUrl, { maxRetriesPerRequest: null });
  excludeFromCounts(watcher);
  const ledgerKey = (batchId: string, part: string): string => `${config.prefix}:${config.queueName}:batch:${batchId}:${part}`;

  return {
    config,
    handle,
    worker,
    server,
    outDir,
    async enqueue(batchId, rows, options = {}) {
      await handle.batches.create(batchId, 'bench', { cache: options.cache === true });
      await enqueueRows(handle, batchId, rows);
    },
    async waitForBatch(batchId, total, timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const [done, failed] = (await watcher.multi().scard(ledgerKey(batchId, 'done')).scard(ledgerKey(batchId, 'failed')).exec())?.map(([, value]) => Number(value)) ?? [0, 0];
        if ((done ?? 0) + (failed ?? 0) >= total) return { done: done ?? 0, failed: failed ?? 0 };
        if (Date.now() > deadline) throw new Error(`batch ${batchId} not finished after ${timeoutMs} ms (done ${done}, failed ${failed} of ${total})`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    },
    async close() {
      await worker.close();
      await service?.close();
      await server?.app.close();
      await did?.close();
      await handle.close();
      watcher.disconnect();
      await rm(outDir, { recursive: true, force: true });
    },
  };
}
