import { createReadStream, createWriteStream } from 'node:fs';
import { appendFile, mkdir, rename, rm } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { createInterface } from 'node:readline';
import { finished } from 'node:stream/promises';
import { stringify } from 'csv-stringify';
import type { Job } from 'bullmq';
import { JobPayloadV1, jobIdFor, scriptText, type JobPayload, type RowResult } from '../queue/payload.js';
import type { BatchRowRef, FinishedRow } from '../queue/batches.js';
import { batchCredits, rowCredits, type CreditsSource } from '../queue/credits.js';
import type { QueueHandle } from '../queue/talk-queue.js';
import { NO_PREVIEW, previewColumnsFor } from './preview-columns.js';
import { readResultsJsonl, writeReviewPages } from './review-page.js';

/** `held`: a row a sample kept back, made only once the batch is approved. */
export type RowStatus = 'done' | 'failed' | 'active' | 'queued' | 'held' | 'missing';

/** One line of results.jsonl (and, flattened, of results.csv). */
export interface ResultRecord {
  line: number;
  rowKey: string;
  jobId: string;
  status: RowStatus;
  talkId: string | null;
  file: string | null;
  bytes: number | null;
  sha256: string | null;
  videoSeconds: number | null;
  renderSeconds: number | null;
  attempts: number;
  errorKind: string | null;
  errorDescription: string | null;
  /** D-ID's `details` of a refusal (a ValidationError names each field and why), JSON, bounded. */
  errorDetails?: string | null;
  /** The script as sent to D-ID (templates filled in), or the audio URL. */
  script: string | null;
  enqueuedAt: string | null;
  finishedAt: string | null;
  input: Record<string, string>;
  /** Poster and GIF file names next to the video, why they are missing, the share page, the mail-merge HTML. */
  poster?: string | null;
  gif?: string | null;
  previewNote?: string | null;
  shareUrl?: string | null;
  emailHtml?: string | null;
  /** Why a sampled batch's row is in its sample (`first`, `longest script`, `voice <voice>`, `random`); absent for other rows. */
  sampleReason?: string | null;
  /** Set when the video was copied from the render cache (status stays done): the batch and talk that made it. */
  cachedFromBatch?: string | null;
  cachedFromTalk?: string | null;
  /**
   * What the row's talk cost, when one was created: the billing rule on the length D-ID reported (`d-id`), or the
   * estimate (`estimate`) where it reported none (queue/credits.ts). Null for a row that created no talk.
   */
  credits?: number | null;
  creditsSource?: CreditsSource | null;
}

export interface ReportOptions {
  /** Base of share-page links (config.shareBaseUrl); without it the share columns stay empty. */
  shareBaseUrl?: string | undefined;
}

const FIXED_COLUMNS = [
  'line', 'row_key', 'status', 'talk_id', 'file', 'bytes', 'sha256', 'video_seconds', 'render_seconds',
  'attempts', 'error_kind', 'error_description', 'error_details', 'script', 'enqueued_at', 'finished_at',
  'poster', 'gif', 'preview_note', 'share_url', 'email_html', 'sample_reason', 'cached_from_batch', 'cached_from_talk',
  'credits', 'credits_source',
] as const;

/** Every row of a batch in manifest order, read from Redis: the batch ledger plus the jobs still kept. */
export async function* batchResults(handle: Pick<QueueHandle, 'queue' | 'batches'>, batchId: string, outDir: string, options: ReportOptions = {}): AsyncGenerator<ResultRecord> {
  let page: BatchRowRef[] = [];
  for await (const ref of handle.batches.rows(batchId)) {
    page.push(ref);
    if (page.length >= 200) {
      yield* await withPreviews(handle, batchId, await resultsFor(handle, batchId, page, outDir), options);
      page = [];
    }
  }
  yield* await withPreviews(handle, batchId, await resultsFor(handle, batchId, page, outDir), options);
}

/** Records with their poster, GIF and share columns (made on the previews queue after the row was done). */
async function withPreviews(handle: Pick<QueueHandle, 'queue'>, batchId: string, records: ResultRecord[], options: ReportOptions): Promise<ResultRecord[]> {
  const previews = await previewColumnsFor(
    handle.queue,
    batchId,
    records.map((record) => ({ rowKey: record.rowKey, done: record.status === 'done', title: record.input.share_title })),
    options.shareBaseUrl,
  );
  return records.map((record, index) => ({ ...record, ...(previews[index] ?? NO_PREVIEW) }));
}

/**
 * The records of some rows of a batch. A done row's ledger entry answers for it (its job may be gone);
 * the other rows are read from their jobs.
 */
export async function resultsFor(handle: Pick<QueueHandle, 'queue' | 'batches'>, batchId: string, refs: readonly BatchRowRef[], outDir: string): Promise<ResultRecord[]> {
  const keys = refs.map((ref) => ref.rowKey);
  const [finished, outcomes, held, reasons] = await Promise.all([
    handle.batches.finishedRows(batchId, keys),
    handle.batches.outcomesOf(batchId, keys),
    handle.batches.heldPayloads(batchId, keys),
    handle.batches.sampleReasons(batchId, keys),
  ]);
  const records = await Promise.all(
    refs.map(async (ref, index) => {
      const entry = finished[index];
      const outcome = outcomes[index];
      const reason = reasons[index];
      const sampleReason = reason === undefined ? {} : { sampleReason: reason };
      if (entry && outcome === 'done') return { ...recordOfFinished(batchId, ref, entry), ...sampleReason };
      const heldPayload = held[index];
      // Held rows have no job yet (an approval that crashed half-way may have made one: the job then tells).
      const job = await handle.queue.getJob(jobIdFor(batchId, ref.rowKey));
      if (heldPayload !== undefined && !job && outcome === undefined) return { ...recordOfHeld(batchId, ref, heldPayload), ...sampleReason };
      return { ...recordFor(batchId, ref, job, outcome === 'done', outDir, job ? stateOf(job, outcome) : undefined), ...sampleReason };
    }),
  );
  // A failed row's talk has its cost in the ledger, from D-ID's reported length when it could be read at the failure.
  const failed = records.filter((record) => record.status === 'failed' && record.talkId !== null);
  const charged = await handle.batches.chargedTalks(batchId, failed.map((record) => record.talkId as string));
  failed.forEach((record, index) => {
    const talk = charged[index];
    if (talk) Object.assign(record, { credits: talk.credits, creditsSource: talk.creditsSource });
  });
  return records;
}

function recordOfHeld(batchId: string, ref: BatchRowRef, payloadText: string): ResultRecord {
  const base = recordFor(batchId, ref, undefined, false, '', undefined);
  let payload: JobPayload | undefined;
  try {
    payload = JobPayloadV1.parse(JSON.parse(payloadText));
  } catch {
    payload = undefined;
  }
  return { ...base, status: 'held', script: scriptText(payload?.talk.script), input: payload?.input ?? {} };
}

/**
 * A job's state from the ledger and the job hash, without BullMQ's getState() (a wait-list scan per job,
 * O(queued rows): over a 100,000-row batch it held Redis for minutes). A finished job has `finishedOn`,
 * and a failure reason or a return value; the ledger knows which rows a worker holds.
 */
function stateOf(job: Job<JobPayload, RowResult>, outcome: 'done' | 'failed' | 'active' | undefined): string {
  if (outcome === 'failed') return 'failed';
  if (job.finishedOn) return job.failedReason ? 'failed' : 'completed';
  return outcome === 'active' ? 'active' : 'waiting';
}

function recordOfFinished(batchId: string, ref: BatchRowRef, entry: FinishedRow): ResultRecord {
  return {
    line: ref.line,
    rowKey: ref.rowKey,
    jobId: jobIdFor(batchId, ref.rowKey),
    status: 'done',
    talkId: entry.talkId,
    file: entry.file,
    bytes: entry.bytes,
    sha256: entry.sha256,
    videoSeconds: entry.videoSeconds,
    renderSeconds: entry.renderSeconds,
    attempts: entry.attempts,
    errorKind: null,
    errorDescription: null,
    script: entry.script,
    enqueuedAt: entry.enqueuedAt === null ? null : new Date(entry.enqueuedAt).toISOString(),
    finishedAt: new Date(entry.finishedAt).toISOString(),
    input: entry.input,
    cachedFromBatch: entry.cachedFrom?.batchId ?? null,
    cachedFromTalk: entry.cachedFrom?.talkId ?? null,
    credits: entry.credits ?? null,
    creditsSource: entry.creditsSource ?? null,
  };
}

function recordFor(
  batchId: string,
  ref: { rowKey: string; line: number },
  job: Job<JobPayload, RowResult> | undefined,
  doneInLedger: boolean,
  outDir: string,
  state: string | undefined,
): ResultRecord {
  const base: ResultRecord = {
    line: ref.line,
    rowKey: ref.rowKey,
    jobId: jobIdFor(batchId, ref.rowKey),
    status: doneInLedger ? 'done' : 'missing',
    talkId: null,
    file: null,
    bytes: null,
    sha256: null,
    videoSeconds: null,
    renderSeconds: null,
    attempts: 0,
    errorKind: null,
    errorDescription: null,
    errorDetails: null,
    script: null,
    enqueuedAt: null,
    finishedAt: null,
    input: {},
    credits: null,
    creditsSource: null,
  };
  if (!job) return base;
  // As a client wrote it: a job from another BullMQ client may lack defaults, or (when it failed validation) more.
  const data: Partial<JobPayload> = job.data;
  const result = job.returnvalue as RowResult | null | undefined;
  const failure = data.state?.failure;
  const status: RowStatus =
    state === 'completed' ? 'done' : state === 'failed' ? 'failed' : state === 'active' ? 'active' : doneInLedger ? 'done' : 'queued';
  const failedReason = job.failedReason || null;
  const talkId = result?.talkId ?? data.state?.talkId ?? null;
  // A talk once created is paid for, whatever became of the row.
  const { talk } = data;
  const spent =
    result?.credits !== undefined
      ? { credits: result.credits, creditsSource: result.creditsSource ?? null }
      : talkId !== null && talk !== undefined
        ? rowCredits({ estimatedSeconds: data.estimatedSeconds, talk })
        : { credits: null, creditsSource: null };
  return {
    ...base,
    status,
    talkId,
    file: result?.file ? relative(join(outDir, batchId), result.file) : null,
    bytes: result?.bytes ?? null,
    sha256: result?.sha256 ?? null,
    videoSeconds: result?.videoSeconds ?? null,
    renderSeconds: result?.renderSeconds ?? null,
    attempts: job.attemptsMade,
    errorKind: status === 'failed' ? (failure?.kind ?? 'Error') : null,
    errorDescription: status === 'failed' ? (failure?.description ?? failedReason) : null,
    errorDetails: status === 'failed' ? (failure?.details ?? null) : null,
    script: scriptText(data.talk?.script),
    enqueuedAt: job.timestamp ? new Date(job.timestamp).toISOString() : null,
    finishedAt: job.finishedOn ? new Date(job.finishedOn).toISOString() : null,
    input: data.input ?? {},
    cachedFromBatch: result?.cachedFrom?.batchId ?? null,
    cachedFromTalk: result?.cachedFrom?.talkId ?? null,
    ...spent,
  };
}

export interface ReportFiles {
  dir: string;
  csv: string;
  jsonl: string;
  /** `index.html`: the review page that plays the batch's videos. */
  html: string;
  counts: Record<RowStatus, number>;
}

/**
 * Writes `results.jsonl`, `results.csv` and the review page `index.html` under `<outDir>/<batchId>/`,
 * each through a temp file and a rename, so a reader never sees half a report. The JSONL and CSV stream
 * (a batch of any size fits); the page (paged above 2,000 rows, review-page.ts) is built from the finished JSONL.
 */
export async function writeBatchReport(handle: Pick<QueueHandle, 'queue' | 'batches'>, batchId: string, outDir: string, options: ReportOptions = {}): Promise<ReportFiles> {
  const dir = join(outDir, batchId);
  await mkdir(dir, { recursive: true });
  const jsonlPath = join(dir, 'results.jsonl');
  const csvPath = join(dir, 'results.csv');
  const jsonlTemp = `${jsonlPath}.${process.pid}.tmp`;
  const csvTemp = `${csvPath}.${process.pid}.tmp`;
  const counts: Record<RowStatus, number> = { done: 0, failed: 0, active: 0, queued: 0, held: 0, missing: 0 };
  const inputColumns = new Set<string>();

  try {
    const jsonl = createWriteStream(jsonlTemp);
    for await (const record of batchResults(handle, batchId, outDir, options)) {
      counts[record.status] += 1;
      for (const key of Object.keys(record.input)) inputColumns.add(key);
      if (!jsonl.write(`${JSON.stringify(record)}\n`)) await new Promise<void>((resolve) => jsonl.once('drain', () => resolve()));
    }
    jsonl.end();
    await finished(jsonl);

    // The CSV needs every input column up front, so it is written from the finished JSONL.
    const inputs = [...inputColumns];
    const csv = stringify({ header: true, columns: [...FIXED_COLUMNS, ...inputs.map((name) => `input_${name}`)] });
    const csvOut = createWriteStream(csvTemp);
    csv.pipe(csvOut);
    const lines = createInterface({ input: createReadStream(jsonlTemp), crlfDelay: Infinity });
    for await (const line of lines) {
      if (!line) continue;
      const r = JSON.parse(line) as ResultRecord;
      const row = [
        r.line, r.rowKey, r.status, r.talkId, r.file, r.bytes, r.sha256, r.videoSeconds, r.renderSeconds,
        r.attempts, r.errorKind, r.errorDescription, r.errorDetails ?? null, r.script, r.enqueuedAt, r.finishedAt,
        r.poster, r.gif, r.previewNote, r.shareUrl, r.emailHtml, r.sampleReason ?? null, r.cachedFromBatch ?? null, r.cachedFromTalk ?? null,
        r.credits ?? null, r.creditsSource ?? null,
        ...inputs.map((name) => r.input[name] ?? ''),
      ].map(safeCell);
      if (!csv.write(row)) await new Promise<void>((resolve) => csv.once('drain', () => resolve()));
    }
    csv.end();
    await finished(csvOut);
    await rename(jsonlTemp, jsonlPath);
    await rename(csvTemp, csvPath);
  } finally {
    await rm(jsonlTemp, { force: true });
    await rm(csvTemp, { force: true });
  }
  const credits = batchCredits(await handle.batches.creditLedger(batchId));
  const html = await writeReviewPages(dir, batchId, () => readResultsJsonl(jsonlPath), { credits });
  return { dir, csv: csvPath, jsonl: jsonlPath, html, counts };
}

/** A cell a spreadsheet would run as a formula is prefixed with a quote (OWASP CSV injection advice). */
export function safeCell(value: string | number | boolean | null | undefined): string {
  if (value === null || value === undefined) return '';
  const text = String(value);
  return /^[=+\-@\t\r]/.test(text) ? `'${text}` : text;
}

export interface LiveReportOptions extends ReportOptions {
  /** Rebuild the CSV and the page no sooner than this after the last rebuild (default 5 minutes)... */
  minRebuildGapMs?: number;
  /** ...and no sooner than this many times the last rebuild took (default 20): rebuilds stay a small share of the run. */
  rebuildCostFactor?: number;
}

/**
 * A running batch's report at a cost in proportion to what changed. The first refresh writes the whole
 * report; after that each refresh appends the rows finished since (by this process's workers) to
 * results.jsonl, and the CSV and review page are rebuilt from Redis only now and then (see the options) and
 * by `final()`, which writes the whole report again: complete, in manifest order, atomic, as `talkbatch report`
 * writes it. While the batch runs, a row's later line in results.jsonl supersedes its earlier one.
 */
export class LiveReport {
  readonly #handle: Pick<QueueHandle, 'queue' | 'batches'>;
  readonly #batchId: string;
  readonly #outDir: string;
  readonly #minGapMs: number;
  readonly #costFactor: number;
  readonly #reportOptions: ReportOptions;
  /** Row keys finished since the last refresh: bounded by what finishes in one refresh interval. */
  #finished: string[] = [];
  #lastRebuildAt = 0;
  #lastRebuildMs = 0;
  #written = false;
  /** Rows finished since the last rebuild started: no rebuild without one. */
  #finishedSinceRebuild = 0;
  #work: Promise<unknown> = Promise.resolve();

  constructor(handle: Pick<QueueHandle, 'queue' | 'batches'>, batchId: string, outDir: string, options: LiveReportOptions = {}) {
    this.#handle = handle;
    this.#batchId = batchId;
    this.#outDir = outDir;
    this.#minGapMs = options.minRebuildGapMs ?? 5 * 60_000;
    this.#costFactor = options.rebuildCostFactor ?? 20;
    this.#reportOptions = { shareBaseUrl: options.shareBaseUrl };
  }

  /** A row of this batch got its outcome. */
  rowFinished(rowKey: string): void {
    this.#finished.push(rowKey);
    this.#finishedSinceRebuild += 1;
  }

  /** Appends what finished, or rebuilds everything when a rebuild is due; one refresh at a time. */
  refresh(): Promise<void> {
    const next = this.#work.then(() => this.#refreshNow());
    this.#work = next.catch(() => undefined);
    return next;
  }

  /** The whole report, after every refresh in flight: what `talkbatch report` would write. */
  final(): Promise<ReportFiles> {
    const next = this.#work.then(() => this.#rebuild());
    this.#work = next.catch(() => undefined);
    return next;
  }

  async #refreshNow(): Promise<void> {
    const sinceRebuild = Date.now() - this.#lastRebuildAt;
    const due = this.#finishedSinceRebuild > 0 && sinceRebuild >= Math.max(this.#minGapMs, this.#lastRebuildMs * this.#costFactor);
    if (!this.#written || due) {
      await this.#rebuild();
      return;
    }
    if (this.#finished.length === 0) return;
    const keys = [...new Set(this.#finished)];
    this.#finished = [];
    const lines = await this.#handle.batches.linesOf(this.#batchId, keys);
    const refs = keys.map((rowKey, index) => ({ rowKey, line: lines[index] ?? 0 }));
    const records = await withPreviews(this.#handle, this.#batchId, await resultsFor(this.#handle, this.#batchId, refs, this.#outDir), this.#reportOptions);
    const text = records.map((record) => `${JSON.stringify(record)}\n`).join('');
    // One write with O_APPEND: readers see whole lines added at the end.
    await appendFile(join(this.#outDir, this.#batchId, 'results.jsonl'), text);
  }

  async #rebuild(): Promise<ReportFiles> {
    // Rows that finished before the rebuild starts are in it; those finishing during it are appended next time.
    this.#finished = [];
    this.#finishedSinceRebuild = 0;
    const started = Date.now();
    const files = await writeBatchReport(this.#handle, this.#batchId, this.#outDir, this.#reportOptions);
    this.#lastRebuildAt = Date.now();
    this.#lastRebuildMs = this.#lastRebuildAt - started;
    this.#written = true;
    return files;
  }
}
