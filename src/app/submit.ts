import { createWriteStream } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { finished } from 'node:stream/promises';
import type { LocalMediaPolicy } from '../manifest/local-media.js';
import { ManifestError, type ManifestDefaults, type ManifestFormat, type ManifestIssue } from '../manifest/index.js';
import { checkBatchId, enqueueManifest, generateBatchId } from '../queue/producer.js';
import type { QueueHandle } from '../queue/talk-queue.js';
import { AppError, UsageError } from '../shared/errors.js';
import { sampleOf, type SamplePick } from './sample.js';
import { jsonText } from '../shared/json.js';

/** Where a batch's rows come from. Every kind goes through the manifest module's validation. */
export type BatchInput =
  /** Row objects keyed by column name, as in a JSON manifest. */
  | { rows: ReadonlyArray<Readonly<Record<string, unknown>>> }
  /** A CSV, TSV, JSON or JSONL file on disk. */
  | { manifestPath: string }
  /** A whole CSV (or TSV) document. */
  | { csv: string | Uint8Array }
  /** Manifest bytes arriving in pieces; the format is sniffed from the first bytes when not given. */
  | { stream: AsyncIterable<Uint8Array | string> };

export interface SubmitBatchOptions {
  /** Default: generated (`20261125-071502-a1b2c3`). Submitting the same rows with the same id adds nothing twice. */
  batchId?: string;
  /** Script template for rows without a script cell, e.g. `Hi {{first_name|there}}!`. */
  template?: string;
  /** Output file name template. */
  nameTemplate?: string;
  defaults?: ManifestDefaults;
  /** For `manifestPath` and `stream`: default from the file name, else sniffed. */
  format?: ManifestFormat;
  /** Text encoding of byte inputs (a file, a stream, CSV bytes) without a byte-order mark, e.g. `windows-1252`. Default: UTF-8. */
  encoding?: string;
  /** POSTed a signed summary when the batch finishes (https only). */
  callbackUrl?: string;
  /** Refuse the batch when it has more valid rows than this; also stored as the batch's talk budget, which workers enforce. */
  maxTalks?: number;
  /** Enqueue the valid rows even when some are invalid (default: nothing is enqueued then). */
  allowPartial?: boolean;
  /**
   * false: render every row even when an identical request was rendered and downloaded before (default true: such a
   * row is copied from the render cache and nothing is paid). Stored with the batch; the first submission's counts.
   */
  cache?: boolean;
  /** Recorded as the batch's source; defaults to a description of the input. */
  source?: string;
  /** `stream` inputs longer than this are refused. */
  maxBytes?: number;
  /** Accept `http:` callback URLs: for tests and local receivers only. */
  allowHttpCallbacks?: boolean;
  /**
   * Where image_url/audio_url may name local files. Default (the library): relative to a manifest file's folder,
   * else to the working directory. The REST API passes the operator's folders (TALKBATCH_LOCAL_MEDIA_DIRS), or none.
   */
  localMedia?: LocalMediaPolicy;
  /**
   * Make only this many rows, chosen to cover the sheet (the first row, the longest script, a row per voice, then
   * rows drawn at random, the same for the same batch id), and hold the rest un-spent until the batch is approved.
   */
  sample?: number;
}

export interface SubmitBatchResult {
  batchId: string;
  /** Rows new to the queue in this call. */
  added: number;
  /** Valid rows the batch already had (queued, running or done): not added again. */
  alreadyPresent: number;
  invalid: number;
  skippedEmpty: number;
  /** Estimated seconds of video over the valid text rows. */
  estimatedSeconds: number;
  /** Problems in rows that were left out (only with allowPartial). */
  issues: ManifestIssue[];
  /** Of the rows added, those held until the batch is approved (with `sample`; else 0). */
  held: number;
  /** Estimated seconds of video of the held rows. */
  heldSeconds: number;
  /** With `sample`: the rows chosen and why (`first`, `longest script`, `voice <voice>`, `random`). */
  sample?: SamplePick[];
}

/** More valid rows than `maxTalks` allows; nothing was enqueued. */
export class TooManyRowsError extends AppError {
  readonly code = 'TOO_MANY_ROWS' as const;
  constructor(
    readonly rows: number,
    readonly maxTalks: number,
  ) {
    super(`the batch has ${rows} valid rows but maxTalks is ${maxTalks}; nothing was enqueued`);
  }
}

/** A streamed manifest went over `maxBytes`. */
export class PayloadTooLargeError extends AppError {
  readonly code = 'PAYLOAD_TOO_LARGE' as const;
}

/**
 * Validates every row of `input` (nothing is enqueued when any row is bad, unless allowPartial), then
 * creates the batch and adds one job per valid row. Inputs that are not already a file are written to
 * a private temp file first, so the manifest module's streaming readers and checks apply unchanged.
 */
export async function submitBatch(handle: QueueHandle, input: BatchInput, options: SubmitBatchOptions = {}): Promise<SubmitBatchResult> {
  const batchId = checkBatchId(options.batchId ?? generateBatchId());
  const callbackUrl = options.callbackUrl === undefined ? undefined : checkCallbackUrl(options.callbackUrl, options.allowHttpCallbacks === true);
  if (options.maxTalks !== undefined && (!Number.isInteger(options.maxTalks) || options.maxTalks < 1)) {
    throw new UsageError('maxTalks must be a whole number of at least 1');
  }
  const sample = options.sample === undefined ? undefined : sampleOf(options.sample);
  const staged = await stage(input, options);
  try {
    const { maxTalks } = options;
    const result = await enqueueManifest(handle, staged.path, {
      ...(options.template !== undefined ? { template: options.template } : {}),
      ...(options.nameTemplate !== undefined ? { nameTemplate: options.nameTemplate } : {}),
      ...(options.defaults !== undefined ? { defaults: options.defaults } : {}),
      ...(staged.format !== undefined ? { format: staged.format } : {}),
      // Rows and CSV text are written out as UTF-8 here; only bytes from the caller can be in another encoding.
      ...(options.encoding !== undefined && !('rows' in input) && !('csv' in input && typeof input.csv === 'string') ? { encoding: options.encoding } : {}),
      batchId,
      // The staged copy lives in a temp folder: relative paths mean the caller's folder, not that one.
      localMedia: options.localMedia ?? { baseDir: 'manifestPath' in input ? dirname(resolve(input.manifestPath)) : process.cwd() },
      allowPartial: options.allowPartial === true,
      ...(callbackUrl !== undefined ? { callbackUrl } : {}),
      // Workers enforce it too, so rows added to the batch later cannot spend past it either.
      ...(maxTalks !== undefined ? { budget: { maxTalks } } : {}),
      ...(sample ? { sample } : {}),
      ...(options.cache === false ? { cache: false } : {}),
      // Temp paths mean nothing to the caller: issues name the input instead.
      issueLabel: staged.label,
      sourceLabel: options.source ?? staged.label,
      accept: (report) => {
        if (maxTalks !== undefined && report.valid > maxTalks) throw new TooManyRowsError(report.valid, maxTalks);
      },
    });
    return {
      batchId: result.batchId,
      added: result.added,
      alreadyPresent: result.alreadyPresent,
      invalid: result.invalid,
      skippedEmpty: result.skippedEmpty,
      estimatedSeconds: result.estimatedSeconds,
      issues: result.issues,
      held: result.held,
      heldSeconds: result.heldSeconds,
      ...(result.sample ? { sample: result.sample } : {}),
    };
  } finally {
    await staged.cleanup();
  }
}

/** https only (D-ID-style webhooks travel the internet), unless a test allows http. */
export function checkCallbackUrl(value: string, allowHttp: boolean): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new UsageError('callbackUrl must be an absolute URL');
  }
  if (url.protocol !== 'https:' && !(allowHttp && url.protocol === 'http:')) throw new UsageError('callbackUrl must be an https URL');
  return url.href;
}

interface Staged {
  path: string;
  /** What issues and the batch's source call the input. */
  label: string;
  format: ManifestFormat | undefined;
  cleanup(): Promise<void>;
}

async function stage(input: BatchInput, options: SubmitBatchOptions): Promise<Staged> {
  if ('manifestPath' in input) return { path: input.manifestPath, label: input.manifestPath, format: options.format, cleanup: async () => {} };

  const dir = await mkdtemp(join(tmpdir(), 'talkbatch-intake-'));
  const cleanup = (): Promise<void> => rm(dir, { recursive: true, force: true });
  try {
    if ('rows' in input) {
      if (input.rows.length === 0) throw new ManifestError([{ file: 'rows', line: 0, message: 'no rows to enqueue' }]);
      // JSONL, one row per line: line N is rows[N - 1], which keeps issue locations easy to map back.
      const path = join(dir, 'rows.jsonl');
      await writeLines(path, input.rows);
      return { path, label: 'rows', format: 'jsonl', cleanup };
    }
    if ('csv' in input) {
      const path = join(dir, 'body.csv');
      await writeFile(path, input.csv);
      return { path, label: 'csv', format: options.format ?? 'csv', cleanup };
    }
    // No extension unless the format is known, so the manifest module sniffs it from the content.
    const extension = options.format === undefined ? '' : `.${options.format}`;
    const path = join(dir, `upload${extension}`);
    await writeStream(path, input.stream, options.maxBytes);
    return { path, label: 'stream', format: options.format, cleanup };
  } catch (error) {
    await cleanup();
    throw error;
  }
}

async function writeLines(path: string, rows: ReadonlyArray<unknown>): Promise<void> {
  const out = createWriteStream(path);
  try {
    for (const row of rows) {
      // `undefined` has no JSON form; "null" lets the reader report the row as not an object.
      if (!out.write(`${jsonText(row) ?? 'null'}\n`)) await new Promise<void>((resolve) => out.once('drain', () => resolve()));
    }
  } finally {
    out.end();
  }
  await finished(out);
}

async function writeStream(path: string, source: AsyncIterable<Uint8Array | string>, maxBytes: number | undefined): Promise<void> {
  const out = createWriteStream(path);
  let bytes = 0;
  try {
    for await (const chunk of source) {
      const buffer = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      bytes += buffer.byteLength;
      if (maxBytes !== undefined && bytes > maxBytes) throw new PayloadTooLargeError(`the manifest is larger than ${maxBytes} bytes`);
      if (!out.write(buffer)) await new Promise<void>((resolve) => out.once('drain', () => resolve()));
    }
  } finally {
    out.end();
  }
  await finished(out);
}
