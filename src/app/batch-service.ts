import type { Config } from '../config/index.js';
import { jobIdFor, type JobPayload } from '../queue/payload.js';
import type { QueueHandle } from '../queue/talk-queue.js';
import { batchResults, type ReportFiles, type ResultRecord } from '../report/results.js';
import { UsageError } from '../shared/errors.js';
import type { Logger } from '../shared/logger.js';
import { approveBatch, batchView, cancelBatch, heldSummary, type ApproveResult, type BatchView, type CancelResult, type HeldSummary } from './batches.js';
import { writeChargedFailures, type ChargedFailuresFile } from '../report/charged-failures.js';
import { BatchFinisher, type BatchFinisherOptions, type CallbackRetry, type ReportWriter } from './finisher.js';
import { submitBatch, type BatchInput, type SubmitBatchOptions, type SubmitBatchResult } from './submit.js';

export interface BatchServiceOptions {
  config: Pick<Config, 'callbackSecret' | 'outDir' | 'prefix' | 'queueName' | 'publicUrl' | 'shareBaseUrl' | 'outboundAllow' | 'didApiKey' | 'didApiUrl' | 'httpTimeoutMs'>;
  handle: QueueHandle;
  logger: Logger;
  /** Base of `resultsUrl` in callbacks; default config.publicUrl. */
  publicUrl?: string;
  callbackRetry?: Partial<CallbackRetry>;
  reports?: ReportWriter;
  /** Each D-ID balance the finisher reads (for the credits gauge); must not throw. */
  onCreditsRead?: BatchFinisherOptions['onCreditsRead'];
}

export interface RetryResult {
  batchId: string;
  /** Failed rows put back on the queue under a new generation. */
  retried: number;
}

/**
 * What a batch is, for every entry point: the CLI, the HTTP server, the library and schedules all submit, view,
 * cancel, retry and finish batches through this one service, so each rule (finish-on-cancel, retry generations,
 * the report a finished batch gets) lives in one place.
 */
export class BatchService {
  readonly finisher: BatchFinisher;
  readonly #handle: QueueHandle;
  readonly #outDir: string;
  readonly logger: Logger;

  constructor(options: BatchServiceOptions) {
    this.#handle = options.handle;
    this.#outDir = options.config.outDir;
    this.logger = options.logger;
    this.finisher = new BatchFinisher({
      config: options.config,
      handle: options.handle,
      logger: options.logger,
      ...(options.publicUrl !== undefined ? { publicUrl: options.publicUrl } : {}),
      ...(options.callbackRetry ? { retry: options.callbackRetry } : {}),
      ...(options.reports ? { reports: options.reports } : {}),
      ...(options.onCreditsRead ? { onCreditsRead: options.onCreditsRead } : {}),
    });
  }

  get handle(): QueueHandle {
    return this.#handle;
  }

  /** Validates every row (nothing is enqueued when one is bad, unless allowPartial), then adds one job per valid row. */
  submit(input: BatchInput, options: SubmitBatchOptions = {}): Promise<SubmitBatchResult> {
    return submitBatch(this.#handle, input, options);
  }

  /** Counts, progress and callback attempts; undefined for an unknown batch. */
  view(batchId: string): Promise<BatchView | undefined> {
    return batchView(this.#handle, this.finisher.callbacks, batchId);
  }

  async require(batchId: string): Promise<BatchView> {
    const view = await this.view(batchId);
    if (!view) throw new UsageError(`no batch "${batchId}" (see talkbatch status for the batches there are)`);
    return view;
  }

  /** Batch ids, newest first. */
  list(offset: number, limit: number): Promise<string[]> {
    return this.#handle.batches.list(offset, limit);
  }

  /** Every row with its outcome, in manifest order. */
  results(batchId: string): AsyncIterable<ResultRecord> {
    return batchResults(this.#handle, batchId, this.#outDir);
  }

  /** Writes results.csv, results.jsonl and the review page now (one writer per batch in this process). */
  writeReport(batchId: string): Promise<ReportFiles> {
    return this.finisher.reports.write(batchId);
  }

  /**
   * Writes `<out>/<batch>/charged-failures.csv`: the batch's talks that were paid for and came to nothing (D-ID ended
   * them error or rejected, or their video could not be downloaded), with what they cost, for a refund claim.
   */
  async chargedFailures(batchId: string): Promise<ChargedFailuresFile> {
    if (!(await this.#handle.batches.exists(batchId))) throw new UsageError(`no batch "${batchId}" (see talkbatch status for the batches there are)`);
    return writeChargedFailures(this.#handle.batches, batchId, this.#outDir);
  }

  /**
   * Takes the rows that have not started off the queue. When those were the last rows, no worker will ever see
   * the batch finish, so it is finished here (report and callback), exactly once across processes.
   */
  async cancel(batchId: string): Promise<CancelResult> {
    await this.require(batchId);
    const result = await cancelBatch(this.#handle, batchId);
    if (result.finished && (await this.#handle.batches.claimFinished(batchId))) {
      void this.finisher.onBatchFinished(batchId).catch((error: unknown) => this.logger.warn({ batchId, err: String(error) }, 'could not finish the batch'));
    }
    this.logger.info({ batchId, removed: result.removed.length, kept: result.kept.length }, 'batch cancelled');
    return result;
  }

  /**
   * Approves the batch's sample: the rows held back go into the queue for the workers. Idempotent. Refused
   * (ApprovalRefusedError) for a cancelled batch and for one enqueued without a sample.
   */
  async approve(batchId: string): Promise<ApproveResult> {
    const result = await approveBatch(this.#handle, batchId);
    // Nothing was left to make (every held row was done already): no worker will see the batch finish.
    if (result.released === 0 && (await this.#handle.batches.claimFinished(batchId))) {
      void this.finisher.onBatchFinished(batchId).catch((error: unknown) => this.logger.warn({ batchId, err: String(error) }, 'could not finish the batch'));
    }
    this.logger.info({ batchId, released: result.released }, 'sample approved');
    return result;
  }

  /** The rows a sample holds back and their estimated seconds of video: what approving would make. */
  held(batchId: string): Promise<HeldSummary> {
    return heldSummary(this.#handle, batchId);
  }

  /** Puts the batch's failed rows back on the queue; each starts afresh (a new generation, so its failed talk is not adopted). */
  async retryFailed(batchId: string): Promise<RetryResult> {
    // A typo must not look like "nothing to retry".
    if (!(await this.#handle.batches.exists(batchId))) throw new UsageError(`no batch "${batchId}" (see talkbatch status for the batches there are)`);
    let retried = 0;
    const failed = await this.#handle.batches.failedRowKeys(batchId);
    // Rows waiting for a render slot would see the cancel again and fail without a talk (render-slots.ts).
    if (failed.length > 0) await this.#handle.batches.clearCancelled(batchId);
    for (const rowKey of failed) {
      const job = await this.#handle.queue.getJob(jobIdFor(batchId, rowKey));
      if (!job || (await job.getState()) !== 'failed') continue;
      const { state: _state, ...data } = job.data;
      // A job another BullMQ client added (docs/api.md) may lack the defaults the payload schema fills in.
      const stored: Partial<JobPayload> = data;
      await job.updateData({ ...data, generation: (stored.generation ?? 0) + 1 });
      await this.#handle.batches.markRetrying(batchId, rowKey);
      await job.retry('failed');
      retried += 1;
    }
    return { batchId, retried };
  }

  /** Stops waiting between callback retries; attempts made so far stay recorded. The queue handle is the caller's. */
  close(): Promise<void> {
    return this.finisher.close();
  }
}
