/*
 * talkbatch as a library: enqueue batches, follow and cancel them, embed a worker or the HTTP server.
 * Worker internals (the processor, limits) are not part of this API; startTalkWorker is.
 */
import { loadConfig, type Config, type EnvName } from './config/index.js';
import { openQueue, type QueueHandle } from './queue/talk-queue.js';
import type { ResultRecord } from './report/results.js';
import { sleep } from './shared/clock.js';
import { AppError, UsageError } from './shared/errors.js';
import { silentLogger, type Logger } from './shared/logger.js';
import { BatchService, type ApproveResult, type BatchInput, type BatchView, type CallbackRetry, type CancelResult, type SubmitBatchOptions, type SubmitBatchResult } from './app/index.js';
import { startTalkWorker, type TalkWorker, type TalkWorkerOptions } from './worker/create-worker.js';

/** Every Config field, by the setting it comes from: overrides go through the same validation as the environment. */
const SETTING_OF: { readonly [K in keyof Config]-?: EnvName } = {
  didApiKey: 'DID_API_KEY',
  didApiUrl: 'DID_API_URL',
  elevenLabsApiKey: 'DID_ELEVENLABS_API_KEY',
  redisUrl: 'REDIS_URL',
  outDir: 'TALKBATCH_OUT_DIR',
  queueName: 'TALKBATCH_QUEUE',
  prefix: 'TALKBATCH_PREFIX',
  concurrency: 'TALKBATCH_CONCURRENCY',
  workerConcurrency: 'TALKBATCH_WORKER_CONCURRENCY',
  attempts: 'TALKBATCH_ATTEMPTS',
  pollInitialMs: 'TALKBATCH_POLL_INITIAL_MS',
  pollMaxMs: 'TALKBATCH_POLL_MAX_MS',
  renderTimeoutMs: 'TALKBATCH_RENDER_TIMEOUT_MS',
  httpTimeoutMs: 'TALKBATCH_HTTP_TIMEOUT_MS',
  downloadTimeoutMs: 'TALKBATCH_DOWNLOAD_TIMEOUT_MS',
  reconcileWindow: 'TALKBATCH_RECONCILE_WINDOW',
  creditCheckMs: 'TALKBATCH_CREDIT_CHECK_MS',
  keepJobsHours: 'TALKBATCH_KEEP_JOBS_HOURS',
  shutdownTimeoutMs: 'TALKBATCH_SHUTDOWN_TIMEOUT_MS',
  lockMs: 'TALKBATCH_LOCK_MS',
  stalledIntervalMs: 'TALKBATCH_STALLED_INTERVAL_MS',
  maxStalled: 'TALKBATCH_MAX_STALLED',
  fetchWatchdogMs: 'TALKBATCH_FETCH_WATCHDOG_MS',
  dockerHost: 'DOCKER_HOST',
  logLevel: 'TALKBATCH_LOG_LEVEL',
  logPretty: 'TALKBATCH_LOG_PRETTY',
  publicUrl: 'TALKBATCH_PUBLIC_URL',
  webhookSecret: 'TALKBATCH_WEBHOOK_SECRET',
  apiKeys: 'TALKBATCH_API_KEYS',
  host: 'TALKBATCH_HOST',
  port: 'TALKBATCH_PORT',
  dashboardWrite: 'TALKBATCH_DASHBOARD_WRITE',
  callbackSecret: 'TALKBATCH_CALLBACK_SECRET',
  maxBodyBytes: 'TALKBATCH_MAX_BODY_BYTES',
  maxConcurrentUploads: 'TALKBATCH_API_MAX_CONCURRENT_UPLOADS',
  localMediaDirs: 'TALKBATCH_LOCAL_MEDIA_DIRS',
  uploadTtlMs: 'TALKBATCH_UPLOAD_TTL_MS',
  renderCacheClaimMs: 'TALKBATCH_RENDER_CACHE_CLAIM_MS',
  outboundAllow: 'TALKBATCH_OUTBOUND_ALLOW',
  previews: 'TALKBATCH_PREVIEWS',
  posterAtSeconds: 'TALKBATCH_POSTER_AT',
  ffmpegPath: 'TALKBATCH_FFMPEG',
  shareBaseUrl: 'TALKBATCH_SHARE_URL',
};

/**
 * `redisUrl` plus any Config field. The library reads no environment variables and no .env: what you
 * pass (and the defaults) is all there is, so e.g. give `didApiKey` to run workers.
 */
export type TalkbatchOptions = { redisUrl: string; logger?: Logger; callbackRetry?: Partial<CallbackRetry> } & Partial<Omit<Config, 'redisUrl'>>;

/** Rows, a manifest file, a CSV document, or manifest bytes as a stream (a Node Readable works). */
export type BatchSource = BatchInput;

export type EnqueueBatchOptions = SubmitBatchOptions;

export interface WaitForBatchOptions {
  /** Give up after this long (BatchWaitTimeoutError). Default: wait as long as it takes. */
  timeoutMs?: number;
  signal?: AbortSignal;
  /** How often to look (default 500 ms). */
  intervalMs?: number;
}

/** waitForBatch ran out of time; the batch goes on. */
export class BatchWaitTimeoutError extends AppError {
  readonly code = 'WAIT_TIMEOUT' as const;
  constructor(
    readonly batchId: string,
    readonly batch: BatchView,
  ) {
    super(`batch ${batchId} not finished in time (${batch.counts.done + batch.counts.failed} of ${batch.counts.total} rows)`);
  }
}

export type EmbeddedWorkerOptions = Partial<Omit<TalkWorkerOptions, 'config' | 'redisUrl'>>;

export interface Talkbatch {
  readonly config: Config;
  /** Validates every row (ManifestError listing each problem, nothing enqueued), then adds one job per row. */
  enqueueBatch(source: BatchSource, options?: EnqueueBatchOptions): Promise<SubmitBatchResult>;
  /** Counts, progress and callback attempts; undefined for an unknown batch. */
  getBatch(batchId: string): Promise<BatchView | undefined>;
  /** Every row with its outcome, in manifest order. */
  batchResults(batchId: string): AsyncIterable<ResultRecord>;
  /**
   * Resolves once every row is done or failed, or, for a batch enqueued with `sample`, once every row but those
   * held for approval is (`counts.held` says how many wait).
   */
  waitForBatch(batchId: string, options?: WaitForBatchOptions): Promise<BatchView>;
  /** Removes the rows that have not started, and a sample's held rows; rows being worked on finish. */
  cancelBatch(batchId: string): Promise<CancelResult>;
  /**
   * Approves a batch enqueued with `sample`: its held rows go into the queue. A second call adds nothing.
   * ApprovalRefusedError for a cancelled batch or one enqueued without a sample.
   */
  approveBatch(batchId: string): Promise<ApproveResult>;
  /** Runs a worker in this process, on this client's config; stopped by close(). */
  startWorker(options?: EmbeddedWorkerOptions): Promise<TalkWorker>;
  /** Stops the workers started here (rows in hand go back to the queue) and closes connections. */
  close(): Promise<void>;
}

export async function createTalkbatch(options: TalkbatchOptions): Promise<Talkbatch> {
  const { logger = silentLogger, callbackRetry, ...settings } = options;
  const overrides: Partial<Record<EnvName, string>> = {};
  for (const [field, value] of Object.entries(settings)) {
    const name = SETTING_OF[field as keyof Config] as EnvName | undefined;
    if (name === undefined) throw new UsageError(`createTalkbatch: unknown option "${field}"`);
    if (value !== undefined) overrides[name] = Array.isArray(value) ? value.join(',') : String(value);
  }
  const config = loadConfig({ env: {}, dotenvPath: false, overrides });
  const handle: QueueHandle = await openQueue(config, options.redisUrl);
  const batches = new BatchService({ config, handle, logger, ...(callbackRetry ? { callbackRetry } : {}) });
  const { finisher } = batches;
  const workers = new Set<TalkWorker>();

  return {
    config,
    enqueueBatch: (source, enqueueOptions = {}) =>
      batches.submit(source, { source: 'manifestPath' in source ? source.manifestPath : 'library', ...enqueueOptions }),
    getBatch: (batchId) => batches.view(batchId),
    batchResults: (batchId) => batches.results(batchId),
    async waitForBatch(batchId, waitOptions = {}) {
      const deadline = waitOptions.timeoutMs === undefined ? Infinity : Date.now() + waitOptions.timeoutMs;
      for (;;) {
        waitOptions.signal?.throwIfAborted();
        const batch = await batches.require(batchId);
        const { total, done, failed, held } = batch.counts;
        if (total > 0 && done + failed + held >= total) return batch;
        const left = deadline - Date.now();
        if (left <= 0) throw new BatchWaitTimeoutError(batchId, batch);
        await sleep(Math.min(waitOptions.intervalMs ?? 500, left), waitOptions.signal);
      }
    },
    cancelBatch: (batchId) => batches.cancel(batchId),
    approveBatch: (batchId) => batches.approve(batchId),
    async startWorker(workerOptions = {}) {
      const worker = await startTalkWorker({
        logger,
        onBatchFinished: finisher.onBatchFinished,
        onSampleReady: finisher.onSampleReady,
        onRowWebhook: finisher.onRowWebhook,
        ...workerOptions,
        config,
        redisUrl: options.redisUrl,
      });
      workers.add(worker);
      void worker.stopped.then(() => workers.delete(worker));
      return worker;
    },
    async close() {
      await Promise.all([...workers].map((worker) => worker.close()));
      await batches.close();
      await handle.close();
    },
  };
}

export { loadConfig, type Config, type EnvName } from './config/index.js';
export { AppError, ConfigError, UsageError } from './shared/errors.js';
export type { Logger } from './shared/logger.js';

export { JOB_NAME, PAYLOAD_VERSION, JobPayloadV1, jobIdFor, type JobPayload, type JobPayloadInput, type RowResult } from './queue/payload.js';
export type { BatchCounts } from './queue/batches.js';
export { ManifestError, formatIssue, type ManifestDefaults, type ManifestFormat, type ManifestIssue } from './manifest/index.js';
export type { ResultRecord, RowStatus } from './report/results.js';
export { UnsafePathError } from './download/paths.js';
export { DownloadError } from './download/downloader.js';

export {
  DidClient,
  DidApiError,
  DidAuthError,
  DidBadRequestError,
  DidConflictError,
  DidConnectionError,
  DidModerationError,
  DidNotFoundError,
  DidPaymentRequiredError,
  DidProtocolError,
  DidRateLimitError,
  DidServerError,
  DidTimeoutError,
  type CreateTalkRequest,
  type DidClientOptions,
  type Talk,
  type TalkStatus,
} from './did/index.js';
export { DEFAULT_KNOBS, InvalidKnobsError, startSimulator, type Simulator, type SimulatorKnobs, type SimulatorOptions, type SimulatorStats } from './simulator/server.js';

export { startTalkWorker, type TalkWorker, type TalkWorkerOptions, type WorkerMetricsHooks } from './worker/create-worker.js';
export {
  ApprovalRefusedError,
  PayloadTooLargeError,
  SIGNATURE_HEADER,
  TooManyRowsError,
  signCallback,
  verifyCallbackSignature,
  type BatchCallbackBody,
  type BatchView,
  type CallbackAttempt,
  type CallbackStatus,
  type ApproveResult,
  type CancelResult,
  type SamplePick,
  type SubmitBatchResult,
} from './app/index.js';
export { jobPayloadJsonSchema } from './queue/payload-schema.js';
export { TalkbatchMetrics, buildServer, startServer, type RunningServer, type ServerDeps, type StartServerOptions } from './server/index.js';
