import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rename, rm } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { createInterface } from 'node:readline';
import { finished } from 'node:stream/promises';
import { stringify } from 'csv-stringify';
import type { Job } from 'bullmq';
import { jobIdFor, type JobPayload, type RowResult } from '../queue/payload.js';
import type { QueueHandle } from '../queue/talk-queue.js';
import { NO_PREVIEW, previewColumnsFor } from './preview-columns.js';
import { readResultsJsonl, writeReviewPage } from './review-page.js';

export type RowStatus = 'done' | 'failed' | 'active' | 'queued' | 'missing';

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
}

export interface ReportOptions {
  /** Base of share-page links (config.shareBaseUrl); without it the share columns stay empty. */
  shareBaseUrl?: string | undefined;
}

const FIXED_COLUMNS = [
  'line', 'row_key', 'status', 'talk_id', 'file', 'bytes', 'sha256', 'video_seconds', 'render_seconds',
  'attempts', 'error_kind', 'error_description', 'script', 'enqueued_at', 'finished_at',
  'poster', 'gif', 'preview_note', 'share_url', 'email_html',
] as const;

/** Every row of a batch in manifest order, read from Redis: jobs plus the batch ledger. */
export async function* batchResults(handle: Pick<QueueHandle, 'queue' | 'batches'>, batchId: string, outDir: string, options: ReportOptions = {}): AsyncGenerator<ResultRecord> {
  const page: { rowKey: string; line: number }[] = [];
  const flush = async function* (): AsyncGenerator<ResultRecord> {
    const jobs = await Promise.all(page.map((ref) => handle.queue.getJob(jobIdFor(batchId, ref.rowKey))));
    const done = await handle.batches.areDone(batchId, page.map((ref) => ref.rowKey));
    const records = await Promise.all(
      page.map(async (ref, index) => {
        const job = jobs[index];
        return recordFor(batchId, ref, job, done[index] === true, outDir, job ? await job.getState() : undefined);
      }),
    );
    const previews = await previewColumnsFor(
      handle.queue,
      batchId,
      records.map((record) => ({ rowKey: record.rowKey, done: record.status === 'done', title: record.input.share_title })),
      options.shareBaseUrl,
    );
    for (const [index, record] of records.entries()) yield { ...record, ...(previews[index] ?? NO_PREVIEW) };
    page.length = 0;
  };
  for await (const ref of handle.batches.rows(batchId)) {
    page.push(ref);
    if (page.length >= 200) yield* flush();
  }
  yield* flush();
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
    script: null,
    enqueuedAt: null,
    finishedAt: null,
    input: {},
  };
  if (!job) return base;
  const data = job.data;
  const result = job.returnvalue as RowResult | null | undefined;
  const failure = data.state?.failure;
  const status: RowStatus =
    state === 'completed' ? 'done' : state === 'failed' ? 'failed' : state === 'active' ? 'active' : doneInLedger ? 'done' : 'queued';
  const failedReason = job.failedReason || null;
  return {
    ...base,
    status,
    talkId: result?.talkId ?? data.state?.talkId ?? null,
    file: result?.file ? relative(join(outDir, batchId), result.file) : null,
    bytes: result?.bytes ?? null,
    sha256: result?.sha256 ?? null,
    videoSeconds: result?.videoSeconds ?? null,
    renderSeconds: result?.renderSeconds ?? null,
    attempts: job.attemptsMade,
    errorKind: status === 'failed' ? (failure?.kind ?? 'Error') : null,
    errorDescription: status === 'failed' ? (failure?.description ?? failedReason) : null,
    script: data.talk?.script ? (data.talk.script.type === 'text' ? data.talk.script.input : data.talk.script.audio_url) : null,
    enqueuedAt: job.timestamp ? new Date(job.timestamp).toISOString() : null,
    finishedAt: job.finishedOn ? new Date(job.finishedOn).toISOString() : null,
    input: data.input ?? {},
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
 * (a batch of any size fits); the page is built from the finished JSONL.
 */
export async function writeBatchReport(handle: Pick<QueueHandle, 'queue' | 'batches'>, batchId: string, outDir: string, options: ReportOptions = {}): Promise<ReportFiles> {
  const dir = join(outDir, batchId);
  await mkdir(dir, { recursive: true });
  const jsonlPath = join(dir, 'results.jsonl');
  const csvPath = join(dir, 'results.csv');
  const jsonlTemp = `${jsonlPath}.${process.pid}.tmp`;
  const csvTemp = `${csvPath}.${process.pid}.tmp`;
  const counts: Record<RowStatus, number> = { done: 0, failed: 0, active: 0, queued: 0, missing: 0 };
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
        r.attempts, r.errorKind, r.errorDescription, r.script, r.enqueuedAt, r.finishedAt,
        r.poster, r.gif, r.previewNote, r.shareUrl, r.emailHtml,
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
  const html = await writeReviewPage(dir, batchId, readResultsJsonl(jsonlPath));
  return { dir, csv: csvPath, jsonl: jsonlPath, html, counts };
}

/** A cell a spreadsheet would run as a formula is prefixed with a quote (OWASP CSV injection advice). */
export function safeCell(value: unknown): string {
  if (value === null || value === undefined) return '';
  const text = String(value);
  return /^[=+\-@\t\r]/.test(text) ? `'${text}` : text;
}
