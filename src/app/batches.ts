import type { BatchCounts } from '../queue/batches.js';
import { jobIdFor } from '../queue/payload.js';
import type { QueueHandle } from '../queue/talk-queue.js';
import type { CallbackLog, CallbackStatus } from './finisher.js';

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
}

export async function batchView(handle: Pick<QueueHandle, 'batches'>, callbacks: CallbackLog, batchId: string): Promise<BatchView | undefined> {
  const batch = await handle.batches.get(batchId);
  if (!batch) return undefined;
  const { counts } = batch;
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
  };
}

export interface CancelResult {
  batchId: string;
  cancelledAt: string;
  /** Job ids taken off the queue: they will never call D-ID. Their rows count as failed. */
  removed: string[];
  /** Jobs left to finish: held by a worker right now, or with a talk D-ID may already be making (paid for either way). */
  kept: { jobId: string; reason: 'active' | 'talk_created' }[];
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
  return { batchId, cancelledAt, removed, kept, finished: counts.total > 0 && counts.done + counts.failed >= counts.total };
}
