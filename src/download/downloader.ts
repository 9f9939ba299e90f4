import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { requestResult, type ResultDispatcher, type ResultResponse } from '../did/index.js';
import { AppError } from '../shared/errors.js';

export type DownloadFailure = 'expired' | 'http' | 'type' | 'truncated' | 'network' | 'not-video' | 'file-name';

/** File-system errors that the same name will meet again on every try. */
const NAME_ERRORS = new Set(['ENAMETOOLONG', 'EINVAL', 'EISDIR', 'ENOTDIR', 'EILSEQ']);

export class DownloadError extends AppError {
  readonly code = 'DOWNLOAD_FAILED';
  constructor(
    readonly reason: DownloadFailure,
    message: string,
    readonly status?: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export interface DownloadOptions {
  /** The file this row's talk wrote earlier (from the batch ledger): a file at the path is reused only when it is that one. */
  owned?: { sha256: string };
  timeoutMs?: number;
  signal?: AbortSignal;
  dispatcher?: ResultDispatcher;
}

export interface DownloadResult {
  path: string;
  bytes: number;
  sha256: string;
  /** True when an earlier partial download was continued with a Range request. */
  resumed: boolean;
  /** True when a verified file was already in place and nothing was fetched. */
  reused: boolean;
}

const VIDEO_TYPES = /^(video\/|application\/octet-stream|binary\/octet-stream|application\/mp4)/i;

/**
 * Streams a video to `<path>.part`, checks status, type and length, fsyncs and renames: a file under
 * its final name is always complete. A `.part` left by an interrupted try is continued with Range
 * when the server allows it.
 */
export async function downloadVerified(url: string, path: string, options: DownloadOptions = {}): Promise<DownloadResult> {
  try {
    return await download(url, path, options);
  } catch (error) {
    const code = (error as { code?: unknown } | null)?.code;
    if (!(error instanceof DownloadError) && typeof code === 'string' && NAME_ERRORS.has(code)) {
      throw new DownloadError('file-name', `cannot write the output file (${code}): the name does not suit the file system`, undefined, { cause: error });
    }
    throw error;
  }
}

async function download(url: string, path: string, options: DownloadOptions): Promise<DownloadResult> {
  // Anything else at the path (another row's video, a stray file) is replaced by this row's verified download.
  const existing = options.owned ? await verifyExisting(path) : undefined;
  if (existing && existing.sha256 === options.owned?.sha256) return { path, ...existing, resumed: false, reused: true };

  await mkdir(dirname(path), { recursive: true });
  const partPath = `${path}.part`;
  const partSize = await sizeOf(partPath);
  const headers: Record<string, string> = { accept: 'video/*,application/octet-stream;q=0.9,*/*;q=0.1' };
  if (partSize > 0) headers.range = `bytes=${partSize}-`;

  let response: ResultResponse;
  try {
    response = await requestResult(url, {
      headers,
      timeoutMs: options.timeoutMs ?? 60_000,
      ...(options.dispatcher ? { dispatcher: options.dispatcher } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
    });
  } catch (error) {
    if (options.signal?.aborted) throw options.signal.reason;
    throw new DownloadError('network', `download failed: ${describe(error)}`, undefined, { cause: error });
  }

  const status = response.statusCode;
  if (status === 416 && partSize > 0) {
    // Our partial file no longer matches what the server has: start again from nothing.
    await response.body.dump();
    await rm(partPath, { force: true });
    return download(url, path, options);
  }
  if (status === 403 || status === 401) {
    await response.body.dump();
    throw new DownloadError('expired', `download refused with ${status} (the result link has probably expired)`, status);
  }
  if (status !== 200 && status !== 206) {
    await response.body.dump();
    throw new DownloadError('http', `download answered HTTP ${status}`, status);
  }
  const contentType = headerOf(response.headers, 'content-type') ?? '';
  if (!VIDEO_TYPES.test(contentType)) {
    await response.body.dump();
    throw new DownloadError('type', `download is "${contentType || 'untyped'}", not a video`, status);
  }

  const resuming = status === 206 && partSize > 0 && contentRangeStart(response.headers) === partSize;
  if (status === 206 && !resuming) {
    await response.body.dump();
    await rm(partPath, { force: true });
    throw new DownloadError('http', 'server answered a range we did not ask for', status);
  }
  const offset = resuming ? partSize : 0;
  const expectedTotal = expectedLength(response.headers, offset);

  const hash = createHash('sha256');
  if (resuming) await hashFile(partPath, hash);
  const file = await open(partPath, resuming ? 'a' : 'w');
  let written = offset;
  try {
    for await (const chunk of response.body) {
      const buffer = chunk as Buffer;
      hash.update(buffer);
      await writeAll(file, buffer);
      written += buffer.length;
    }
    await file.sync();
  } catch (error) {
    await file.close();
    if (options.signal?.aborted) throw options.signal.reason;
    // What arrived stays in .part, so the next try continues from there.
    throw new DownloadError('truncated', `download broke off after ${written} of ${expectedTotal ?? '?'} bytes: ${describe(error)}`, status, { cause: error });
  }
  await file.close();

  if (expectedTotal !== undefined && written !== expectedTotal) {
    throw new DownloadError('truncated', `download ended after ${written} of ${expectedTotal} bytes`, status);
  }
  if (!(await looksLikeVideo(partPath))) {
    await rm(partPath, { force: true });
    throw new DownloadError('not-video', 'downloaded file is not an MP4/MOV container', status);
  }
  await rename(partPath, path);
  await syncDir(dirname(path));
  return { path, bytes: written, sha256: hash.digest('hex'), resumed: resuming, reused: false };
}

/** A final-named file is only ever written by rename after verification, so presence plus a sane header is enough. */
async function verifyExisting(path: string): Promise<{ bytes: number; sha256: string } | undefined> {
  const size = await sizeOf(path);
  if (size === 0 || !(await looksLikeVideo(path))) return undefined;
  const hash = createHash('sha256');
  await hashFile(path, hash);
  return { bytes: size, sha256: hash.digest('hex') };
}

/** ISO base media files (MP4, MOV) start with a box whose type is `ftyp` (or `wide`/`moov`/`mdat` in old MOVs). */
export async function looksLikeVideo(path: string): Promise<boolean> {
  const file = await open(path, 'r');
  try {
    const header = Buffer.alloc(12);
    const { bytesRead } = await file.read(header, 0, 12, 0);
    if (bytesRead < 12) return false;
    return ['ftyp', 'wide', 'moov', 'mdat', 'free'].includes(header.toString('latin1', 4, 8));
  } finally {
    await file.close();
  }
}

export async function writeAll(file: FileHandle, buffer: Buffer): Promise<void> {
  let offset = 0;
  while (offset < buffer.length) {
    const { bytesWritten } = await file.write(buffer, offset, buffer.length - offset);
    offset += bytesWritten;
  }
}

/** Feeds the file's bytes to `hash`. */
export async function hashFile(path: string, hash: Hash): Promise<void> {
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
}

async function sizeOf(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch {
    return 0;
  }
}

/** Per directory: the fsync running now, and the one queued behind it (which every later rename shares). */
const dirSyncs = new Map<string, { running: Promise<void>; queued?: Promise<void> }>();

/**
 * Makes the renames done so far in `dir` durable. Renames that land together share one fsync (group commit):
 * a sync that starts after a rename covers it, so a caller joins the one queued behind the running sync
 * rather than each waiting its own turn. At 16 rows a second into one batch folder that halves the
 * fsyncs a row's slot waits on.
 */
export function syncDir(dir: string): Promise<void> {
  const state = dirSyncs.get(dir);
  if (!state) {
    const running = syncDirNow(dir).finally(() => settle(dir));
    dirSyncs.set(dir, { running });
    return running;
  }
  state.queued ??= state.running.then(() => syncDirNow(dir));
  return state.queued;
}

/** The running sync is done: the queued one (if any) becomes the running one. */
function settle(dir: string): void {
  const state = dirSyncs.get(dir);
  if (!state) return;
  if (!state.queued) {
    dirSyncs.delete(dir);
    return;
  }
  const running = state.queued.finally(() => settle(dir));
  dirSyncs.set(dir, { running });
}

async function syncDirNow(dir: string): Promise<void> {
  try {
    const handle = await open(dir, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch {
    // Some filesystems refuse fsync on a directory; the rename itself is still atomic.
  }
}

function headerOf(headers: Record<string, string | string[] | undefined>, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function contentRangeStart(headers: Record<string, string | string[] | undefined>): number | undefined {
  const match = /^bytes (\d+)-\d+\/(\d+|\*)$/.exec(headerOf(headers, 'content-range') ?? '');
  return match ? Number(match[1]) : undefined;
}

function expectedLength(headers: Record<string, string | string[] | undefined>, offset: number): number | undefined {
  const total = /\/(\d+)$/.exec(headerOf(headers, 'content-range') ?? '');
  if (total) return Number(total[1]);
  const length = headerOf(headers, 'content-length');
  return length !== undefined && /^\d+$/.test(length) ? offset + Number(length) : undefined;
}

function describe(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as { code?: string }).code;
    return code ? `${code} ${error.message}` : error.message;
  }
  return String(error);
}
