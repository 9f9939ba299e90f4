import type { BatchCounts } from '../queue/batches.js';
import { jobIdFor } from '../queue/payload.js';
import type { QueueHandle } from '../queue/talk-queue.js';
import { batchCredits, type BatchCredits } from '../queue/credits.js';
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
  /** Whether the batch has no row left to wait for. */
  finished: boolean;
}

const REMOVABLE_STATES = new Set(['waiting', 'delayed', 'prioritized', 'paused', 'waiting-children']);

/**
 * Takes a batch's jobs that have not started off the queue. Never touches an active job: BullMQ refuses
 * to remove a job whose lock a worker holds, so a row picked up meanwhile is kept, not torn away. A
 * delayed job that already created its talk (handed back during a shutdown) is kept too: its render is
 * paid for, so it is downloaded.
 */
export async function cancelBatch(handle: Pick<QueueHandle, 'queue' | 'batches'>, batchId: string): Promise<CancelResult> {
  const cancelledAt = await handle.batches.markCancelled(batchId);
  const removed: string[] = [];
  const kept: CancelResult['kept'] = [];
  for await (const { rowKey } of handle.batches.rows(batchId)) {
    const jobId = jobIdFor(batchId, rowKey);
    const job = await handle.queue.getJob(jobId);
    if (!job) continue;
    const state = await job.getState();
    if (state === 'active') {
      kept.push({ jobId, reason: 'active' });
      continue;
    }
    if (!REMOVABLE_STATES.has(state)) continue;
    const worked = job.data.state;
    if (worked?.talkId !== undefined || worked?.submitStartedAt !== undefined) {
      kept.push({ jobId, reason: 'talk_created' });
      continue;
    }
    try {
      await job.remove();
    } catch {
      // Locked: a worker took it between the state check and the removal.
      kept.push({ jobId, reason: 'active' });
      continue;
    }
    await handle.batches.markFailed(batchId, rowKey);
    removed.push(jobId);
  }
  const counts = await handle.batches.counts(batchId);
  return { batchId, cancelledAt, removed, kept, finished: counts.total > 0 && counts.done + counts.failed >= counts.total };
}
