import type { BatchCounts } from '../queue/batches.js';
import { jobIdFor } from '../queue/payload.js';
import { releaseHeldRows } from '../queue/producer.js';
import type { QueueHandle } from '../queue/talk-queue.js';
import { UsageError } from '../shared/errors.js';
import { batchCredits, type BatchCredits } from '../queue/credits.js';
import type { CallbackLog, CallbackStatus } from './finisher.js';
import { estimateTalkCredits } from '../did/billing.js';

/** A batch as the API and the library show it. */
export interface BatchView {
  id: string;
  createdAt: string;
  /** Where the rows came from: "rows", "csv", "stream", a file path, "bullmq" (raw queue adds). */
  source: string;
  finishedAt: string | null;
  cancelledAt: string | null;
  callbackUrl: string | null;
  counts: BatchCounts;
  /** Rows with an outcome (done or failed) over all rows, 0..1. */
  progress: number;
  callback: CallbackStatus | null;
  /**
   * For a batch enqueued with a sample: how many rows it asked for and when the rest was approved (null while
   * the rest is held, `counts.held` rows, or after a cancel). Null for other batches.
   */
  sample: { size: number; approvedAt: string | null } | null;
  /** D-ID's balance before and after the batch, and what its talks cost (app/credits.ts). */
  credits: BatchCredits;
}

export async function batchView(handle: Pick<QueueHandle, 'batches'>, callbacks: CallbackLog, batchId: string): Promise<BatchView | undefined> {
  const batch = await handle.batches.get(batchId);
  if (!batch) return undefined;
  const { counts } = batch;
  const ledger = await handle.batches.creditLedger(batchId);
  return {
    id: batch.id,
    createdAt: batch.createdAt,
    source: batch.source,
    finishedAt: batch.finishedAt ?? null,
    cancelledAt: batch.cancelledAt ?? null,
    callbackUrl: batch.callbackUrl ?? null,
    counts,
    progress: counts.total === 0 ? 0 : Math.round(((counts.done + counts.failed) / counts.total) * 10_000) / 10_000,
    callback: batch.callbackUrl ? await callbacks.status(batchId) : null,
    sample: batch.sample ? { size: batch.sample.size, approvedAt: batch.sample.approvedAt ?? null } : null,
    credits: batchCredits(ledger),
  };
}

export interface CancelResult {
  batchId: string;
  cancelledAt: string;
  /** Job ids taken off the queue: they will never call D-ID. Their rows count as failed. */
  removed: string[];
  /** Jobs left to finish: held by a worker right now, or with a talk D-ID may already be making (paid for either way). */
  kept: { jobId: string; reason: 'active' | 'talk_created' }[];
  /** Rows a sample held back, dropped unmade (they count as failed). */
  heldDropped: number;
  /** Whether the batch has no row left to wait for. */
  finished: boolean;
}

const CANCEL_PAGE = 500;

/**
 * Takes a batch's jobs that have not started off the queue. Never touches an active job: BullMQ refuses
 * to remove a job whose lock a worker holds, so a row picked up meanwhile is kept, not torn away. A
 * delayed job that already created its talk (handed back during a shutdown) is kept too: its render is
 * paid for, so it is downloaded. Row states come from the ledger, a page at a time (BullMQ's getState per
 * job scans the wait list: O(rows²) over a large batch).
 */
export async function cancelBatch(handle: Pick<QueueHandle, 'queue' | 'batches'>, batchId: string): Promise<CancelResult> {
  const cancelledAt = await handle.batches.markCancelled(batchId);
  // Held rows first: an approval running meanwhile either sees the cancel and takes its jobs back off the queue
  // (approveBatch), or had its jobs in before the cancel, and the job sweep below finds them.
  let heldDropped = 0;
  let cursor = '0';
  do {
    const page = await handle.batches.heldPage(batchId, cursor, 1000);
    cursor = page.cursor;
    heldDropped += await handle.batches.dropHeld(batchId, page.rows.map((row) => row.rowKey));
  } while (cursor !== '0');
  const removed: string[] = [];
  const kept: CancelResult['kept'] = [];
  let page: string[] = [];
  const cancelPage = async (rowKeys: readonly string[]): Promise<void> => {
    const outcomes = await handle.batches.outcomesOf(batchId, rowKeys);
    for (const [index, rowKey] of rowKeys.entries()) {
      const outcome = outcomes[index];
      if (outcome === 'done' || outcome === 'failed') continue;
      const jobId = jobIdFor(batchId, rowKey);
      if (outcome === 'active') {
        kept.push({ jobId, reason: 'active' });
        continue;
      }
      const job = await handle.queue.getJob(jobId);
      // Gone, or finished with its outcome not yet in the ledger: nothing to take off the queue.
      if (!job || job.finishedOn) continue;
      const worked = job.data.state;
      if (worked?.talkId !== undefined || worked?.submitStartedAt !== undefined) {
        kept.push({ jobId, reason: 'talk_created' });
        continue;
      }
      try {
        await job.remove();
      } catch {
        // Locked: a worker took it after the ledger was read.
        kept.push({ jobId, reason: 'active' });
        continue;
      }
      await handle.batches.markFailed(batchId, rowKey);
      removed.push(jobId);
    }
  };
  for await (const { rowKey } of handle.batches.rows(batchId)) {
    page.push(rowKey);
    if (page.length >= CANCEL_PAGE) {
      await cancelPage(page);
      page = [];
    }
  }
  await cancelPage(page);
  const counts = await handle.batches.counts(batchId);
  return { batchId, cancelledAt, removed, kept, heldDropped, finished: counts.total > 0 && counts.done + counts.failed >= counts.total };
}

/** What approving a batch's sample would make: its held rows, their estimated seconds of video and credits. */
export async function heldSummary(handle: Pick<QueueHandle, 'batches'>, batchId: string): Promise<HeldSummary> {
  let rows = 0;
  let seconds = 0;
  let credits = 0;
  let cursor = '0';
  do {
    const page = await handle.batches.heldPage(batchId, cursor, 1000);
    cursor = page.cursor;
    for (const row of page.rows) {
      rows += 1;
      const payload = JSON.parse(row.payload) as { estimatedSeconds?: unknown; talk?: { config?: { pad_audio?: number } } };
      const estimate = typeof payload.estimatedSeconds === 'number' ? payload.estimatedSeconds : null;
      if (estimate !== null) seconds += estimate;
      credits += estimateTalkCredits(estimate, payload.talk ?? {});
    }
  } while (cursor !== '0');
  return { rows, seconds, credits };
}

export interface HeldSummary {
  rows: number;
  seconds: number;
  /** By the one billing rule (did/billing.ts), per talk. */
  credits: number;
}

export interface ApproveResult {
  batchId: string;
  /** When the sample was first approved. */
  approvedAt: string;
  /** Held rows this call put in the queue: 0 when an earlier approval did already. */
  released: number;
}

/** An approval that cannot be: the batch was cancelled, or was not enqueued with a sample. Nothing changed. */
export class ApprovalRefusedError extends UsageError {
  constructor(
    message: string,
    readonly reason: 'cancelled' | 'not_sampled',
  ) {
    super(message);
  }
}

/**
 * Approves a batch's sample: its held rows go into the queue through the enqueue path (releaseHeldRows). Safe to
 * run twice, or again after a crash: a row is never queued twice. A cancel that comes in meanwhile wins: the
 * rows this approval queued are taken off again.
 */
export async function approveBatch(handle: Pick<QueueHandle, 'queue' | 'batches'>, batchId: string): Promise<ApproveResult> {
  const batch = await handle.batches.get(batchId);
  if (!batch) throw new UsageError(`no batch "${batchId}" (see talkbatch status for the batches there are)`);
  if (!batch.sample) throw new ApprovalRefusedError(`batch ${batchId} was not enqueued with a sample: nothing of it is held`, 'not_sampled');
  if (batch.cancelledAt) throw new ApprovalRefusedError(`batch ${batchId} was cancelled at ${batch.cancelledAt}: its held rows were dropped`, 'cancelled');
  const approvedAt = await handle.batches.markApproved(batchId);
  const released = await releaseHeldRows(handle, batchId);
  if ((await handle.batches.get(batchId))?.cancelledAt) await cancelBatch(handle, batchId);
  return { batchId, approvedAt, released };
}
