import { randomBytes } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { hostname } from 'node:os';
import { Queue, Worker, type Job } from 'bullmq';
import type { Config } from '../config/index.js';
import { DidClient, type DidApiError, type DidClientOptions, type DidPaymentRequiredError } from '../did/index.js';
import { BatchStore } from '../queue/batches.js';
import type { Redis } from 'ioredis';
import { createRedis, parseRedisTarget } from '../queue/connections.js';
import { LockLostError } from '../queue/job-lock.js';
import { ReplicaAck } from '../queue/replica-ack.js';
import type { PreviewStore } from '../queue/previews.js';
import { defaultJobOptions } from '../queue/talk-queue.js';
import { JobPayloadV1, type JobPayload, type RowResult } from '../queue/payload.js';
import type { Logger } from '../shared/logger.js';
import { webhookUrl } from '../shared/webhook-token.js';
import { AdaptiveConcurrency } from './adaptive-concurrency.js';
import { CreditWatch } from './credit-watch.js';
import { BatchCreditsBefore, chargedTalkOf } from './credit-ledger.js';
import type { CreditReading } from '../did/billing.js';
import type { ChargedTalk } from '../queue/credits.js';
import { createProcessor, type RowWebhookEvent } from './processor.js';
import { PreviewRequests, startPreviewWorker } from './preview-worker.js';
import { RenderCache } from './render-cache.js';
import { UploadCache } from './uploads.js';
import { RenderTracker } from './render-tracker.js';
import { Wakeups } from './wakeups.js';
import { SlotKeeper } from './slot-keeper.js';
import { QUEUE_LIMITER, RenderLimit, RenderSlots } from '../queue/render-slots.js';
import { queueKeys } from '../queue/keys.js';

export interface TalkWorkerOptions {
  config: Config;
  redisUrl: string;
  logger: Logger;
  /** Defaults to a client built from config. */
  did?: DidClient;
  /** Called after a batch's last row finished, exactly once across all workers. */
  onBatchFinished?: (batchId: string) => Promise<void>;
  /** Called once a sampled batch's sample rows all have an outcome (the rest held for approval), exactly once across all workers. */
  onSampleReady?: (batchId: string) => Promise<void>;
  /** A job's webhook URL; defaults to one under TALKBATCH_PUBLIC_URL when that is set, else polling only. */
  webhookUrlFor?: (jobId: string) => string | undefined;
  /** Observers for metrics (see src/server/metrics.ts); each must be quick and must not throw. */
  metrics?: WorkerMetricsHooks;
  /** Called once a row's outcome (done, or failed for good) is in the ledger; must be quick and must not throw. */
  onRowFinished?: (batchId: string, rowKey: string) => void;
  /** With talkbatch's own webhook receiver on, delivers a row's own `webhook` once its MP4 is on disk (BatchFinisher.onRowWebhook); must not throw. */
  onRowWebhook?: (event: RowWebhookEvent) => void;
}

export interface WorkerMetricsHooks {
  /** Passed to the DidClient the worker builds; a `did` you pass in is yours to wire. */
  onDidResponse?: DidClientOptions['onResponse'];
  onRowCompleted?: (result: RowResult) => void;
  /** `charged`: the row's created (paid) talk, when it had one. */
  onRowFailed?: (charged?: ChargedTalk) => void;
  /** A GET /credits answer this worker read (the balance before a batch). */
  onCreditsRead?: (reading: CreditReading) => void;
}

/** Where a live worker announces itself; the key expires when its heartbeats stop. */
export function workerHeartbeatKey(prefix: string, queueName: string, workerId: string): string {
  return queueKeys(prefix, queueName).workerHeartbeat(workerId);
}

const HEARTBEAT_EVERY_MS = 5_000;
const HEARTBEAT_TTL_MS = 15_000;
/** How long a create waits for a replica to confirm its checkpoint before the row is handed back. */
const REPLICA_ACK_TIMEOUT_MS = 1_000;
const WATCHDOG_CHECK_MS = 5_000;

export interface WorkerHealth {
  redis: 'ok' | 'lost';
  redisLostForMs?: number;
  running: boolean;
  rowsInFlight: number;
  lastTakenAgoMs: number;
  /** How often the watchdog replaced a worker that had stopped taking rows. */
  restarts: number;
}

export interface TalkWorker {
  /** This process's worker id, as in its heartbeat key. */
  readonly id: string;
  /** The BullMQ worker now running (the watchdog may have replaced a stuck one). */
  readonly worker: Worker<JobPayload, RowResult>;
  queue: Queue<JobPayload, RowResult>;
  batches: BatchStore;
  /** Whether this process reaches Redis and takes rows, for /readyz and logs. */
  health(): WorkerHealth;
  /** Outcomes of the posters and GIFs this queue's workers make (see preview-worker.ts). */
  previews: PreviewStore;
  /** Why the worker stopped taking jobs on its own (a rejected API key), if it did. */
  readonly fatal: Error | undefined;
  /** Resolves when the worker has stopped by itself (fatal) or via close(). */
  readonly stopped: Promise<void>;
  /** Stop taking jobs, hand rows that wait on D-ID back, let submits and downloads finish, then exit. */
  close(options?: { force?: boolean }): Promise<void>;
}

/** Wires one worker process: connections, the processor, limits, 402/401 handling and shutdown. */
export async function startTalkWorker(options: TalkWorkerOptions): Promise<TalkWorker> {
  const { config, logger, redisUrl } = options;
  if (!options.did && !config.didApiKey) throw new Error('DID_API_KEY is not set');
  const did =
    options.did ??
    new DidClient({
      apiKey: config.didApiKey as string,
      baseUrl: config.didApiUrl,
      timeoutMs: config.httpTimeoutMs,
      ...(config.elevenLabsApiKey ? { elevenLabsApiKey: config.elevenLabsApiKey } : {}),
      ...(options.metrics?.onDidResponse ? { onResponse: options.metrics.onDidResponse } : {}),
      logger,
    });
  const ownsDid = options.did === undefined;

  const keys = queueKeys(config.prefix, config.queueName);
  const connection = createRedis(redisUrl, 'worker');
  const subscriber = createRedis(redisUrl, 'worker');
  const queue = new Queue<JobPayload, RowResult>(config.queueName, { connection, prefix: config.prefix, defaultJobOptions: defaultJobOptions(config) });
  queue.on('error', (error) => logger.warn({ err: error.message }, 'queue connection error'));
  const batches = new BatchStore(connection, config.prefix, config.queueName);
  const wakeups = new Wakeups(keys.wakeChannel(), keys.slotFreedChannel());
  await wakeups.listen(subscriber);
  const replicaAck =
    parseRedisTarget(redisUrl).kind === 'sentinel'
      ? new ReplicaAck({
          // Sentinel mode always yields a single-primary client; WAIT may block it, so it is nobody else's.
          redis: createRedis(redisUrl, 'worker') as Redis,
          markerKey: keys.replicaAck(),
          timeoutMs: REPLICA_ACK_TIMEOUT_MS,
          logger,
        })
      : undefined;

  const { publicUrl, webhookSecret } = config;
  const webhookUrlFor =
    options.webhookUrlFor ?? (publicUrl && webhookSecret ? (jobId: string) => webhookUrl(publicUrl, webhookSecret, jobId) : undefined);
  const renderSlots = new RenderSlots(connection, keys, queue, config.lockMs, config.concurrency);
  // The limit lives beside the slots; BullMQ's global concurrency is the limit plus the headroom for rows
  // downloading or ready to create (render-slots.ts).
  const concurrency = new AdaptiveConcurrency(new RenderLimit(renderSlots, queue), config.concurrency);
  const slots = new SlotKeeper(renderSlots, wakeups, (error, what) =>
    logger.warn({ err: error instanceof Error ? error.message : String(error) }, `${what} failed`),
  );
  await concurrency.start();
  const handback = new AbortController();
  // Every row waiting on D-ID listens on it (wakeups.ts): up to one listener per slot, none left after the wait.
  setMaxListeners(config.workerConcurrency + 10, handback.signal);
  let fatal: Error | undefined;
  let resolveStopped: () => void = () => {};
  const stopped = new Promise<void>((resolve) => (resolveStopped = resolve));

  const previewRequests = new PreviewRequests(connection, config);
  const previewConnection = createRedis(redisUrl, 'worker');
  const previewWorker = startPreviewWorker({ config, connection: previewConnection, logger });

  const credits = new CreditWatch({ queue, did, redis: connection, logger, intervalMs: config.creditCheckMs, markerKey: keys.pausedForCredits() });

  await credits.watchIfPaused();

  const uploads = new UploadCache({ redis: connection, keys, ttlMs: config.uploadTtlMs, did });
  const requestPreview = (job: Parameters<PreviewRequests['request']>[0]): Promise<void> => previewRequests.request(job);
  const renderCache = new RenderCache({ redis: connection, keys, config, batches, queue, did, logger, uploads, requestPreview, claimTtlMs: config.renderCacheClaimMs });

  const processor = createProcessor({
    config,
    did,
    queue,
    redis: connection,
    batches,
    logger,
    wakeups,
    concurrency,
    rendering: new RenderTracker(connection, keys.rendering()),
    slots,
    uploads,
    renderCache,
    handback: handback.signal,
    ...(webhookUrlFor ? { webhookUrlFor } : {}),
    ...(options.onRowWebhook ? { onRowWebhook: options.onRowWebhook } : {}),
    onAuthFailure: (error: DidApiError) => {
      if (fatal) return;
      fatal = new Error(`D-ID refused the API key (${error.status} ${error.kind}: ${error.description}); this worker stops taking jobs. Check DID_API_KEY.`);
      logger.error({ status: error.status, kind: error.kind }, fatal.message);
      void close();
    },
    onCreditsExhausted: (error: DidPaymentRequiredError) => credits.exhausted(error),
    ...(replicaAck ? { replicaAck } : {}),
    requestPreview,
  });

  const creditsBefore = new BatchCreditsBefore({
    batches,
    did,
    logger,
    ...(options.metrics?.onCreditsRead ? { onReading: options.metrics.onCreditsRead } : {}),
  });

  /** Rows this process holds now, and when it last took one: the watchdog's evidence. */
  let inFlight = 0;
  let lastTakenAt = Date.now();
  // Counted around the processor: BullMQ emits no event when a row is handed back (DelayedError, 429).
  const counted = async (job: Job<JobPayload, RowResult>, token?: string, signal?: AbortSignal): Promise<RowResult> => {
    inFlight += 1;
    lastTakenAt = Date.now();
    try {
      // The batch's balance before its first create (credit-ledger.ts). An invalid payload is the processor's to refuse, without calling D-ID.
      const batchId = (job.data as Partial<JobPayload> | undefined)?.batchId;
      if (typeof batchId === 'string' && !creditsBefore.settled(batchId) && JobPayloadV1.safeParse(job.data).success) await creditsBefore.ensure(batchId);
      return await processor(job, token, signal);
    } catch (error) {
      if (error instanceof LockLostError) logger.warn({ jobId: job.id }, 'another worker has taken this row over; this one leaves it to them');
      throw error;
    } finally {
      inFlight -= 1;
      // Out of this slot (done, failed, handed back): a render-cache claim it holds is no longer renewed from here.
      if (job.id) renderCache.leave(job.id);
    }
  };
  const makeWorker = (): Worker<JobPayload, RowResult> => {
    const created = new Worker<JobPayload, RowResult>(config.queueName, counted, {
      connection,
      prefix: config.prefix,
      concurrency: config.workerConcurrency,
      // BullMQ only honours queue.rateLimit() (our 429 back-off) when a limiter is set; this one never binds.
      limiter: QUEUE_LIMITER,
      lockDuration: config.lockMs,
      stalledInterval: config.stalledIntervalMs,
      maxStalledCount: config.maxStalled,
    });
    created.on('error', (error) => logger.warn({ err: error.message }, 'worker connection error'));
    // Our lock on these rows expired (this process was cut off from Redis, or stalled, past TALKBATCH_LOCK_MS):
    // another worker takes them over, so their tries here stop now rather than poll and download for nothing.
    created.on('lockRenewalFailed', (jobIds: string[]) => {
      logger.warn({ jobIds }, 'lost the lock on rows: another worker takes them over; stopping them here');
      for (const jobId of jobIds) created.cancelJob(jobId, `lost the lock on job ${jobId}`);
    });
    created.on('failed', (job: Job<JobPayload, RowResult> | undefined, error: Error) => {
      if (!job) return;
      void (async () => {
        const state = await job.getState();
        if (state !== 'failed') {
          logger.warn({ jobId: job.id, attempt: job.attemptsMade, err: error.message }, 'row failed; will retry');
          await batches.markReleased(job.data.batchId, job.data.rowKey);
          return;
        }
        logger.error({ jobId: job.id, err: error.message }, 'row failed');
        // A talk was created (and paid for): the ledger keeps what it cost and why it failed, for refund claims.
        const charged = await chargedTalkOf(job.data, job.id, error, did).catch(() => undefined);
        options.metrics?.onRowFailed?.(charged);
        await batches.markFailed(job.data.batchId, job.data.rowKey, charged);
        // An identical row waiting on this one's render takes the request over at once.
        if (job.id) await renderCache.release(job.id);
        options.onRowFinished?.(job.data.batchId, job.data.rowKey);
        await finishIfLast(job.data.batchId);
      })().catch((err: unknown) => logger.warn({ err: String(err) }, 'could not record failure'));
    });
    created.on('completed', (job: Job<JobPayload, RowResult>) => {
      options.metrics?.onRowCompleted?.(job.returnvalue);
      options.onRowFinished?.(job.data.batchId, job.data.rowKey);
      void finishIfLast(job.data.batchId).catch((err: unknown) => logger.warn({ err: String(err) }, 'could not finish batch'));
    });
    return created;
  };
  let worker = makeWorker();

  async function finishIfLast(batchId: string): Promise<void> {
    const claimed = await batches.claimOutcome(batchId);
    if (claimed === 'finished') await options.onBatchFinished?.(batchId);
    else if (claimed === 'sample-ready') await options.onSampleReady?.(batchId);
  }

  // Heartbeats let `GET /readyz` list live workers; a worker that dies simply stops renewing its key.
  const workerId = `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
  const heartbeatKey = workerHeartbeatKey(config.prefix, config.queueName, workerId);
  const heartbeatValue = JSON.stringify({ id: workerId, host: hostname(), pid: process.pid, startedAt: new Date().toISOString(), concurrency: config.workerConcurrency });
  const beat = (): Promise<unknown> =>
    connection.set(heartbeatKey, heartbeatValue, 'PX', HEARTBEAT_TTL_MS).catch((err: unknown) => logger.warn({ err: String(err) }, 'heartbeat failed'));
  await beat();
  const heartbeat = setInterval(() => void beat(), HEARTBEAT_EVERY_MS);
  heartbeat.unref();

  // Redis lost and back, said once each in the log; /readyz of `serve` reads it through health().
  let redisLostAt: number | undefined;
  connection.on('close', () => {
    if (redisLostAt !== undefined || closing) return;
    redisLostAt = Date.now();
    logger.error('lost the connection to Redis; rows wait and the worker reconnects by itself');
  });
  connection.on('ready', () => {
    if (redisLostAt === undefined) return;
    logger.info({ downMs: Date.now() - redisLostAt }, 'Redis is back; taking rows again');
    redisLostAt = undefined;
  });

  /*
   * BullMQ workers have stopped fetching after a Sentinel failover while isRunning() stayed true
   * (taskforcesh/bullmq #4378, #3185). If rows wait, this process has free slots, the queue is neither
   * paused, rate limited nor at its global cap, and still nothing was taken for a while, the worker is
   * replaced by a fresh one in this process; the old one finishes the rows it holds and closes.
   */
  let restarts = 0;
  let watching = false;
  const watchdog = setInterval(() => {
    if (watching || closing || redisLostAt !== undefined) return;
    watching = true;
    void (async () => {
      if (!worker.isRunning() || worker.isPaused() || inFlight >= config.workerConcurrency) return;
      if (Date.now() - lastTakenAt < config.fetchWatchdogMs) return;
      const [waiting, rateLimitTtl, globalCap, active, paused] = await Promise.all([
        queue.getWaitingCount(),
        queue.getRateLimitTtl(),
        queue.getGlobalConcurrency(),
        queue.getActiveCount(),
        queue.isPaused(),
      ]);
      if (waiting === 0 || paused || rateLimitTtl > 0 || (globalCap !== null && active >= globalCap)) return;
      restarts += 1;
      logger.error({ waiting, inFlight, idleMs: Date.now() - lastTakenAt, restarts }, 'worker stopped taking rows while rows wait; starting a fresh one');
      const stuck = worker;
      lastTakenAt = Date.now();
      worker = makeWorker();
      void stuck.close().catch((err: unknown) => logger.warn({ err: String(err) }, 'stuck worker did not close cleanly'));
    })()
      .catch((err: unknown) => logger.warn({ err: String(err) }, 'worker watchdog check failed'))
      .finally(() => (watching = false));
  }, WATCHDOG_CHECK_MS);
  watchdog.unref();

  let closing: Promise<void> | undefined;
  function close(closeOptions: { force?: boolean } = {}): Promise<void> {
    closing ??= (async () => {
      handback.abort(new Error('worker shutting down'));
      credits.stop();
      clearInterval(heartbeat);
      clearInterval(watchdog);
      const graceful = worker.close(closeOptions.force === true);
      const timer = setTimeout(() => void worker.close(true), config.shutdownTimeoutMs);
      await graceful.finally(() => clearTimeout(timer));
      // Only now: a row still creating or handing back while the worker closed keeps its slot's lease.
      slots.stop();
      renderCache.close();
      await previewWorker.close();
      await previewRequests.close();
      previewConnection.disconnect();
      await connection.del(heartbeatKey).catch(() => undefined);
      await queue.close();
      await wakeups.close();
      replicaAck?.close();
      if (ownsDid) await did.close();
      connection.disconnect();
      resolveStopped();
    })();
    return closing;
  }

  return {
    id: workerId,
    get worker() {
      return worker;
    },
    health: () => ({
      redis: redisLostAt === undefined ? 'ok' : 'lost',
      ...(redisLostAt !== undefined ? { redisLostForMs: Date.now() - redisLostAt } : {}),
      running: worker.isRunning(),
      rowsInFlight: inFlight,
      lastTakenAgoMs: Date.now() - lastTakenAt,
      restarts,
    }),
    queue,
    batches,
    previews: previewRequests.store,
    get fatal() {
      return fatal;
    },
    stopped,
    close,
  };
}
