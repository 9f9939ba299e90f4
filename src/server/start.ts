import type { FastifyInstance } from 'fastify';
import type { Config } from '../config/index.js';
import { DidClient } from '../did/index.js';
import { openQueue, type QueueHandle } from '../queue/talk-queue.js';
import type { Logger } from '../shared/logger.js';
import { startTalkWorker, type TalkWorker } from '../worker/create-worker.js';
import { buildServer } from './build-server.js';
import { BatchService, type CallbackRetry } from '../app/index.js';
import { TalkbatchMetrics } from './metrics.js';

export interface StartServerOptions {
  config: Config;
  redisUrl: string;
  logger: Logger;
  /** Default config.host / config.port; port 0 picks a free one. */
  host?: string;
  port?: number;
  /** Also run a worker in this process, so one process does everything. */
  withWorker?: boolean;
  /** For webhook re-reads and the worker; default: one built from config (webhooks are off without DID_API_KEY). */
  did?: DidClient;
  /** Worker's webhook URLs; default: under TALKBATCH_PUBLIC_URL when it and TALKBATCH_WEBHOOK_SECRET are set. */
  webhookUrlFor?: (jobId: string) => string | undefined;
  publicUrl?: string;
  allowHttpCallbacks?: boolean;
  callbackRetry?: Partial<CallbackRetry>;
}

export interface RunningServer {
  /** e.g. http://127.0.0.1:8080 */
  url: string;
  app: FastifyInstance;
  handle: QueueHandle;
  metrics: TalkbatchMetrics;
  batches: BatchService;
  worker: TalkWorker | undefined;
  /** Stops taking requests, then the worker (rows in hand are handed back), then pending callbacks. */
  close(): Promise<void>;
}

/** What `talkbatch serve` runs: the HTTP server, listening, and optionally a worker sharing its metrics and batch service. */
export async function startServer(options: StartServerOptions): Promise<RunningServer> {
  const { config, logger, redisUrl } = options;
  const handle = await openQueue(config, redisUrl);
  const metrics = new TalkbatchMetrics();
  const ownsDid = options.did === undefined && config.didApiKey !== undefined;
  const did =
    options.did ??
    (config.didApiKey
      ? new DidClient({
          apiKey: config.didApiKey,
          baseUrl: config.didApiUrl,
          timeoutMs: config.httpTimeoutMs,
          logger,
          onResponse: metrics.observeDidResponse,
        })
      : undefined);
  const batches = new BatchService({
    config,
    handle,
    logger,
    onCreditsRead: metrics.observeCredits,
    ...(options.publicUrl !== undefined ? { publicUrl: options.publicUrl } : {}),
    ...(options.callbackRetry !== undefined ? { callbackRetry: options.callbackRetry } : {}),
  });

  let worker: TalkWorker | undefined;
  let app: FastifyInstance | undefined;
  const close = async (): Promise<void> => {
    await app?.close();
    await worker?.close();
    await batches.close();
    if (ownsDid) await did?.close();
    await handle.close();
  };

  try {
    const server = await buildServer({
      config,
      handle,
      logger,
      metrics,
      batches,
      workerHealth: () => worker?.health(),
      ...(did ? { did } : {}),
      ...(options.allowHttpCallbacks ? { allowHttpCallbacks: true } : {}),
    });
    app = server.app;
    const address = await app.listen({ host: options.host ?? config.host, port: options.port ?? config.port });
    if (options.withWorker) {
      worker = await startTalkWorker({
        config,
        redisUrl,
        logger,
        metrics: metrics.workerHooks,
        onBatchFinished: batches.finisher.onBatchFinished,
        onSampleReady: batches.finisher.onSampleReady,
        onRowWebhook: batches.finisher.onRowWebhook,
        ...(options.did ? { did: options.did } : {}),
        ...(options.webhookUrlFor ? { webhookUrlFor: options.webhookUrlFor } : {}),
      });
    }
    return { url: address.replace('[::1]', 'localhost'), app, handle, metrics, batches, worker, close };
  } catch (error) {
    await close().catch(() => undefined);
    throw error;
  }
}
