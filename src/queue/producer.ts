import { randomBytes } from 'node:crypto';
import { JOB_NAME, PAYLOAD_VERSION, BatchId, JobPayloadV1, jobIdFor, type JobPayload } from './payload.js';
import type { BatchBudget, HeldRow, NameReservation, SamplePick } from './batches.js';
import type { QueueHandle } from './talk-queue.js';
import { ManifestError, openManifest, type ManifestIssue, type ManifestOptions, type ManifestRow, type ManifestSource, type OpenedManifest, type ValidationReport } from '../manifest/index.js';
import { UsageError } from '../shared/errors.js';
import { estimateTalkCredits } from '../did/billing.js';

export interface EnqueueOptions extends ManifestOptions {
  batchId?: string;
  /** Enqueue the valid rows even when others are invalid. */
  allowPartial?: boolean;
  /** Jobs per addBulk call: one round trip and one atomic step each. */
  chunkSize?: number;
  callbackUrl?: string;
  budget?: BatchBudget;
  /** false: the batch's rows are rendered even when an identical request was rendered before (the render cache). */
  cache?: boolean;
  /** Names the input in issues when `source` is a temp file the caller made (an API body). */
  issueLabel?: string;
  /** Recorded as the batch's source; defaults to the manifest's label. */
  sourceLabel?: string;
  /** A last check of the validated manifest before anything is written; throw to refuse the batch. */
  accept?: (report: ValidationReport) => void;
  /**
   * Enqueue only a sample of the rows, chosen by the selector made for the batch id, and hold the rest in the
   * batch ledger, un-spent, until the sample is approved (releaseHeldRows).
   */
  sample?: (batchId: string) => SampleSelector;
}

/** Chooses a batch's sample from its valid rows, fed in manifest order. */
export interface SampleSelector {
  /** Rows asked for. */
  readonly size: number;
  add(row: ManifestRow): void;
  picks(): SamplePick[];
}

export interface EnqueueResult {
  batchId: string;
  /** Rows new to the queue in this call. */
  added: number;
  /** Valid rows the batch already had (queued, running or done): not added again. */
  alreadyPresent: number;
  invalid: number;
  skippedEmpty: number;
  issues: ManifestIssue[];
  estimatedSeconds: number;
  report: ValidationReport;
  /** Of the rows added, those held until the sample is approved (0 without a sample). */
  held: number;
  /** Estimated seconds of video of the held rows. */
  heldSeconds: number;
  /** Estimated credits of the held rows (did/billing.ts, per talk). */
  heldCredits: number;
  /** The rows sampled and why, with a sample. */
  sample?: SamplePick[];
}

export interface EnqueueRowsOptions {
  /** Rows for which this says true are held in the ledger instead of enqueued (a sample's rest). */
  hold?: (rowKey: string) => boolean;
}

export interface EnqueueRowsResult {
  added: number;
  alreadyPresent: number;
  /** With `hold`: rows newly held, and their estimated seconds of video and credits. */
  held?: number;
  heldSeconds?: number;
  heldCredits?: number;
}

/** `20261125-071502-k3f9`: sortable, readable, no ':' (BullMQ job ids may not have one). */
export function generateBatchId(now: Date = new Date()): string {
  const stamp = now.toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  return `${stamp}-${randomBytes(3).toString('hex')}`;
}

export function checkBatchId(id: string): string {
  const parsed = BatchId.safeParse(id);
  if (!parsed.success) throw new UsageError(`invalid batch id "${id}": ${parsed.error.issues[0]?.message ?? 'invalid'}`);
  return parsed.data;
}

/**
 * The job payload for a row the manifest reader built. The reader has already checked the row (its talk
 * against D-ID's schema, its key and file name), so this only assembles; `JobPayloadV1` parses payloads
 * that come from outside (the HTTP API, other BullMQ clients) instead.
 */
export function payloadFor(batchId: string, row: ManifestRow): JobPayload {
  return {
    v: PAYLOAD_VERSION,
    batchId,
    rowKey: row.rowKey,
    line: row.line,
    talk: row.talk,
    output: { name: row.outputName },
    input: row.input,
    estimatedSeconds: row.estimatedSeconds,
    generation: 0,
  };
}

/** Thrown when a row's output name belongs to another row of the batch; names the row and the owner. */
export function nameTakenIssue(file: string, batchId: string, row: { line: number; outputName: string }, clash: Extract<NameReservation, { ok: false }>): ManifestIssue {
  return {
    file,
    line: row.line,
    column: 'name',
    message: `output name "${clash.name}" already belongs to row "${clash.owner}" of batch ${batchId}; choose another name (nothing was enqueued from this row on)`,
  };
}

/** Chunks written at once: enough that Redis always has the next addBulk queued while we build one more. */
const CHUNKS_IN_FLIGHT = 4;

/** One addBulk entry per payload; the job id makes adding a row twice a no-op. */
function jobsFor(batchId: string, payloads: readonly JobPayload[]) {
  return payloads.map((data) => ({ name: JOB_NAME, data, opts: { jobId: jobIdFor(batchId, data.rowKey) } }));
}

/**
 * Adds already-validated rows to a batch, `chunkSize` jobs per addBulk (one round trip, atomic).
 * Rows the batch has finished are skipped; rows already queued are left to BullMQ's job-id check.
 * Up to four chunks are written at once, so reading the manifest and building jobs (our CPU) overlaps
 * Redis running the addBulks before them. Within a chunk the order holds: jobs first, ledger second.
 * With `hold`, the rows it picks go to the ledger's held rows instead of the queue (when new to the batch).
 */
export async function enqueueRows(
  handle: QueueHandle,
  batchId: string,
  rows: AsyncIterable<ManifestRow> | Iterable<ManifestRow>,
  chunkSize = 500,
  label = batchId,
  options: EnqueueRowsOptions = {},
): Promise<EnqueueRowsResult> {
  const { hold } = options;
  let chunk: ManifestRow[] = [];
  let added = 0;
  let alreadyPresent = 0;
  let held = 0;
  let heldSeconds = 0;
  let heldCredits = 0;
  // A row finishing while this runs is one this call added, still held by BullMQ under its job id; so when
  // no row is done at the start, no chunk needs to ask.
  const anyDone = await handle.batches.hasDoneRows(batchId);
  const write = async (batch: ManifestRow[]): Promise<void> => {
    const toQueue = hold ? batch.filter((row) => !hold(row.rowKey)) : batch;
    let pending = toQueue;
    // A name is the row's before its job exists: the worker's download can never land on another row's file.
    const names = await handle.batches.reserveNames(batchId, batch.map((row) => ({ name: row.outputName, rowKey: row.rowKey })));
    if (!names.ok) {
      const row = batch.find((candidate) => candidate.rowKey === names.rowKey) ?? batch[0];
      throw new ManifestError([nameTakenIssue(label, batchId, { line: row?.line ?? 0, outputName: names.name }, names)]);
    }
    if (anyDone) {
      const done = await handle.batches.areDone(batchId, toQueue.map((row) => row.rowKey));
      pending = toQueue.filter((_, index) => !done[index]);
    }
    // Counted before the jobs go in: a running worker may take a new job and enter its row in the ledger (as it
    // does for jobs other clients add) before addRows below, which would then count the row as present before.
    const known = await handle.batches.hasRows(batchId, batch.map((row) => row.rowKey));
    const newRows = known.filter((present) => !present).length;
    // A row the batch has (held, queued or done) stays as it is: only new rows are held.
    const toHold = hold ? batch.filter((row, index) => known[index] !== true && hold(row.rowKey)) : [];
    // Jobs first, ledger second: a crash in between leaves a job the ledger learns about on the next
    // run, never a ledger row without a job. Held rows are written where their jobs would be, before the ledger too.
    if (pending.length > 0) await handle.queue.addBulk(jobsFor(batchId, pending.map((row) => payloadFor(batchId, row))));
    // A sampled row an earlier submission held (another sample) is queued now: it must not wait for approval too.
    if (hold && toQueue.length > 0) await handle.batches.releaseHeld(batchId, toQueue.map((row) => row.rowKey));
    if (toHold.length > 0) {
      await handle.batches.holdRows(batchId, toHold.map((row): HeldRow => ({ rowKey: row.rowKey, payload: JSON.stringify(payloadFor(batchId, row)) })));
      held += toHold.length;
      for (const row of toHold) {
        heldSeconds += row.estimatedSeconds ?? 0;
        heldCredits += estimateTalkCredits(row.estimatedSeconds, row.talk);
      }
    }
    await handle.batches.addRows(batchId, batch.map((row) => ({ rowKey: row.rowKey, line: row.line })));
    added += newRows;
    alreadyPresent += batch.length - newRows;
  };
  const writing = new Set<Promise<void>>();
  let failure: { error: unknown } | undefined;
  const flush = async (): Promise<void> => {
    if (chunk.length === 0) return;
    const batch = chunk;
    chunk = [];
    const written: Promise<void> = write(batch).then(
      () => void writing.delete(written),
      (error: unknown) => {
        writing.delete(written);
        failure ??= { error };
      },
    );
    writing.add(written);
    if (writing.size >= CHUNKS_IN_FLIGHT) await Promise.race(writing);
    if (failure) throw failure.error;
  };
  try {
    for await (const row of rows) {
      chunk.push(row);
      if (chunk.length >= chunkSize) await flush();
    }
    await flush();
  } finally {
    // Never return (or throw) with a chunk still being written.
    await Promise.all(writing);
  }
  if (failure) throw failure.error;
  return hold ? { added, alreadyPresent, held, heldSeconds, heldCredits } : { added, alreadyPresent };
}

/**
 * Approving a sample: the batch's held rows go into the queue, `chunkSize` per addBulk, each chunk's jobs first
 * and its held entries removed second. A crash in between leaves rows both held and queued, and a re-run adds
 * them again under the same job ids (a no-op), or skips them once done: nothing is lost or made twice. Returns how
 * many rows were handed to the queue.
 */
export async function releaseHeldRows(handle: Pick<QueueHandle, 'queue' | 'batches'>, batchId: string, chunkSize = 500): Promise<number> {
  let released = 0;
  let cursor = '0';
  do {
    const page = await handle.batches.heldPage(batchId, cursor, chunkSize);
    cursor = page.cursor;
    if (page.rows.length === 0) continue;
    const keys = page.rows.map((row) => row.rowKey);
    const done = await handle.batches.areDone(batchId, keys);
    const payloads = page.rows.filter((_, index) => !done[index]).map((row) => JobPayloadV1.parse(JSON.parse(row.payload)));
    for (let start = 0; start < payloads.length; start += chunkSize) await handle.queue.addBulk(jobsFor(batchId, payloads.slice(start, start + chunkSize)));
    await handle.batches.releaseHeld(batchId, keys);
    released += payloads.length;
  } while (cursor !== '0');
  return released;
}

/**
 * Validates the whole manifest first (nothing is spent on a bad sheet), keeping the valid rows in a temp
 * file, then streams them into BullMQ in chunks. Job id `<batchId>-<rowKey>` plus the batch ledger make a second run a no-op.
 * `source` is a path, `-` (standard input) or an https URL: those two are read once into a temp file,
 * so validation and enqueueing see the same rows.
 */
/** A manifest whose every row has been validated, its valid rows kept in a temp file; close it when done. */
export interface ValidatedManifest {
  manifest: OpenedManifest;
  report: ValidationReport;
  /** The problems found, named after `issueLabel` when one was given. */
  issues: ManifestIssue[];
}

/**
 * The first step of every enqueue (`enqueue`, `run`, the API, the library, schedule ticks): open the source and
 * validate every row before anything is written. Throws ManifestError listing every problem unless
 * `allowPartial`, in which case the problems come back with the valid rows.
 */
export async function openValidatedManifest(
  source: ManifestSource,
  options: ManifestOptions & { allowPartial?: boolean; issueLabel?: string },
): Promise<ValidatedManifest> {
  const label = options.issueLabel;
  const relabel = (issues: readonly ManifestIssue[]): ManifestIssue[] => (label === undefined ? [...issues] : issues.map((issue) => ({ ...issue, file: label })));
  let manifest: OpenedManifest | undefined;
  try {
    manifest = await openManifest(source, options);
    const report = await manifest.validate({ keepValidRows: true });
    const issues = relabel(report.issues);
    if (issues.length > 0 && options.allowPartial !== true) throw new ManifestError(issues);
    return { manifest, report, issues };
  } catch (error) {
    await manifest?.close();
    if (error instanceof ManifestError && label !== undefined) throw new ManifestError(relabel(error.issues));
    throw error;
  }
}

export async function enqueueManifest(handle: QueueHandle, source: ManifestSource, options: EnqueueOptions = {}): Promise<EnqueueResult> {
  const batchId = checkBatchId(options.batchId ?? generateBatchId());
  const label = options.issueLabel;
  const selector = options.sample?.(batchId);
  const { manifest, report, issues } = await openValidatedManifest(source, options);
  try {
    if (report.valid === 0) {
      throw new ManifestError(issues.length > 0 ? issues : [{ file: label ?? manifest.label, line: 1, message: 'no rows to enqueue' }]);
    }
    options.accept?.(report);

    // Every name is reserved before anything is enqueued: a clash with an earlier submission refuses the whole
    // submission (and gives back what this one reserved) before a talk is paid for.
    const claimed: Array<{ name: string; rowKey: string }> = [];
    const reserveChunk = async (rows: ManifestRow[]): Promise<void> => {
      const result = await handle.batches.reserveNames(batchId, rows.map((row) => ({ name: row.outputName, rowKey: row.rowKey })));
      if (!result.ok) {
        await handle.batches.releaseNames(batchId, claimed);
        const row = rows.find((candidate) => candidate.rowKey === result.rowKey) ?? rows[0];
        throw new ManifestError([nameTakenIssue(label ?? manifest.label, batchId, { line: row?.line ?? 0, outputName: result.name }, result)]);
      }
      claimed.push(...result.reserved);
    };
    let pendingNames: ManifestRow[] = [];
    for await (const row of manifest.validRows()) {
      selector?.add(row);
      pendingNames.push(row);
      if (pendingNames.length >= 1000) {
        await reserveChunk(pendingNames);
        pendingNames = [];
      }
    }
    await reserveChunk(pendingNames);

    await handle.batches.create(batchId, options.sourceLabel ?? manifest.label, {
      ...(options.callbackUrl ? { callbackUrl: options.callbackUrl } : {}),
      ...(options.budget ? { budget: options.budget } : {}),
      ...(options.cache === false ? { cache: false } : {}),
    });
    const picks = selector?.picks();
    // The choice is recorded before any row goes in: the review page says why each sampled row was made.
    if (selector && picks) await handle.batches.recordSample(batchId, selector.size, picks);
    const sampled = picks ? new Set(picks.map((pick) => pick.rowKey)) : undefined;
    const { added, alreadyPresent, held = 0, heldSeconds = 0, heldCredits = 0 } = await enqueueRows(
      handle,
      batchId,
      manifest.validRows(),
      options.chunkSize,
      label ?? manifest.label,
      sampled ? { hold: (rowKey) => !sampled.has(rowKey) } : {},
    );

    return {
      batchId,
      added,
      alreadyPresent,
      invalid: report.rows - report.valid - report.skippedEmpty,
      skippedEmpty: report.skippedEmpty,
      issues,
      estimatedSeconds: report.estimatedSeconds,
      report,
      held,
      heldSeconds,
      heldCredits,
      ...(picks ? { sample: picks } : {}),
    };
  } finally {
    await manifest.close();
  }
}
