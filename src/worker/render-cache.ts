import { createHash } from 'node:crypto';
import type { createReadStream } from 'node:fs';
import { link, mkdir, open, rename, rm, stat } from 'node:fs/promises';
import { dirname, join, relative, resolve } from 'node:path';
import type { Job, Queue } from 'bullmq';
import type { Config } from '../config/index.js';
import type { DidClient } from '../did/index.js';
import { hashFile, syncDir, writeAll } from '../download/downloader.js';
import { outputPathFor } from '../download/paths.js';
import type { BatchStore } from '../queue/batches.js';
import type { QueueKeys } from '../queue/keys.js';
import type { RedisClient } from '../queue/connections.js';
import { createTalkBody, scriptText, talkTagFor, userDataFor, type JobPayload, type RowResult, type UploadedMedia } from '../queue/payload.js';
import { RenderCacheStore, type RenderCacheAnswer, type RenderCacheEntry, type RenderCacheProbe, type RenderCacheRecord, type ClaimHolder } from '../queue/render-cache-store.js';
import type { Logger } from '../shared/logger.js';
import { stableJson } from '../shared/stable-json.js';
import type { PreviewJob } from './preview-worker.js';
import type { UploadCache } from './uploads.js';

/*
 * The render cache: a request that was rendered and downloaded before, in any batch, is not paid for again.
 *
 * A request is the canonical POST /talks body (createTalkBody) without talkbatch's per-row fields (user_data,
 * webhook, name, result_url), local files and share links standing for their content's sha256 (D-ID's upload URL
 * changes), plus D-ID's origin (a simulator's talk is never served for D-ID's). Its hash keys the index in Redis
 * (src/queue/render-cache-store.ts).
 *
 * One row per request renders at a time: the first row to look a request up claims it (a `live` key renewed while
 * the row is in a worker's slot); the others are handed back for a moment (a waiting row must not hold a render
 * slot) and look again, until the claimant's entry is there and they copy it. A row that finds the claim lapsed takes
 * it over, and first looks for the talk the lapsed claimant may have paid for: in its job's checkpoint, or by its
 * user_data as the processor reconciles its own creates. It adopts that talk rather than creating another.
 *
 * The look-up of a fresh row rides in the ledger's takeRow script and the entry is written by markDone's script,
 * so a row the cache cannot serve costs no extra Redis round trip.
 */

export interface RenderCacheOptions {
  redis: RedisClient;
  keys: QueueKeys;
  config: Pick<Config, 'outDir' | 'didApiUrl' | 'reconcileWindow' | 'outboundAllow' | 'downloadTimeoutMs'>;
  batches: BatchStore;
  queue: Queue;
  did: DidClient;
  logger: Logger;
  uploads?: UploadCache;
  /** Hands a copied video to the preview queue, as the processor does for a downloaded one. */
  requestPreview?: (job: PreviewJob) => Promise<void>;
  /** How long a claim lives without renewal (default 30 s); renewed every third of that while its row is in a slot. */
  claimTtlMs?: number;
  /** The longest a waiting row stays handed back before it looks again (default 5 s). */
  maxWaitMs?: number;
}

/** What the processor does before creating a talk. */
export type CacheDecision =
  /** Create as usual (this row holds the request's claim, or the cache is off or cannot serve it). */
  | { kind: 'create' }
  /** The row is done from the cache (file in place, ledger marked): return this. */
  | { kind: 'done'; result: RowResult }
  /** An identical row is rendering: hand the job back for this long, then look again. */
  | { kind: 'wait'; delayMs: number }
  /** The lapsed claimant's talk exists: render (wait for) that one instead of paying for another. */
  | { kind: 'adopt'; talkId: string };

/** What a fresh download made, for the cache entry. */
export interface MadeVideo {
  talkId: string;
  /** Absolute path. */
  path: string;
  bytes: number;
  sha256: string;
  videoSeconds: number | null;
}

const DEFAULT_CLAIM_TTL_MS = 30_000;
const DEFAULT_MAX_WAIT_MS = 5_000;
const MIN_WAIT_MS = 250;
/** Claims this process made, remembered to release them when their row fails for good (else they lapse). */
const CLAIMS_REMEMBERED = 10_000;
const FILE_HASHES_REMEMBERED = 1_000;

export class RenderCache {
  readonly store: RenderCacheStore;
  readonly #options: RenderCacheOptions;
  readonly #claimTtlMs: number;
  readonly #maxWaitMs: number;
  /** Claims of rows in this process's slots now: renewed by the timer. job id -> request hash. */
  readonly #held = new Map<string, string>();
  /** Every claim this process made lately (insertion order: oldest first). */
  readonly #claimed = new Map<string, string>();
  /** sha256 of local files by path, while size, mtime and inode stay the same. */
  readonly #fileHashes = new Map<string, { size: number; mtimeMs: number; ino: number; sha256: string }>();
  readonly #timer: NodeJS.Timeout;

  constructor(options: RenderCacheOptions) {
    this.#options = options;
    this.store = new RenderCacheStore(options.redis, options.keys);
    this.#claimTtlMs = options.claimTtlMs ?? DEFAULT_CLAIM_TTL_MS;
    this.#maxWaitMs = options.maxWaitMs ?? DEFAULT_MAX_WAIT_MS;
    this.#timer = setInterval(() => void this.#renew(), Math.max(100, Math.floor(this.#claimTtlMs / 3)));
    this.#timer.unref();
  }

  /**
   * The look-up to run with takeRow for a fresh row (nothing created yet); undefined for a row that resumes (it
   * looks up before creating, if it comes to that) or whose request cannot be hashed (its files are unreadable:
   * the upload step fails the row).
   */
  async probeFor(jobId: string, payload: JobPayload, signal?: AbortSignal): Promise<RenderCacheProbe | undefined> {
    if (payload.state?.talkId !== undefined || payload.state?.submitStartedAt !== undefined) return undefined;
    const hash = await this.requestHash(payload, signal);
    return hash === undefined ? undefined : this.#probe(hash, jobId, payload);
  }

  /** Called where the processor would create a talk: serve, wait, adopt, or go on and create (holding the claim). */
  async beforeCreate(input: { job: Job<JobPayload, RowResult>; payload: JobPayload; probe?: RenderCacheProbe | undefined; signal?: AbortSignal | undefined }): Promise<CacheDecision> {
    const { job, payload, signal } = input;
    const jobId = job.id ?? '';
    const log = this.#options.logger.child({ jobId, batchId: payload.batchId, rowKey: payload.rowKey });
    const hash = input.probe?.hash ?? (await this.requestHash(payload, signal));
    if (hash === undefined) return { kind: 'create' };
    const probe = input.probe ?? this.#probe(hash, jobId, payload);
    let answer: RenderCacheAnswer = input.probe?.answer ?? (await this.store.lookup(payload.batchId, probe));
    // A stale entry is dropped and looked up again; a second stale one in a row is not worth a third look.
    for (let looks = 1; ; looks += 1) {
      if (answer.kind === 'off') return { kind: 'create' };
      if (answer.kind === 'wait') {
        log.debug({ request: hash }, 'an identical row is rendering this request; handing the row back until it is done');
        return { kind: 'wait', delayMs: this.#waitDelay(answer.since) };
      }
      if (answer.kind === 'claimed') {
        this.#hold(jobId, hash);
        if (!answer.previous || answer.previous.jobId === jobId) return { kind: 'create' };
        const talkId = await this.#lapsedClaimantTalk(answer.previous, signal);
        if (talkId === undefined) return { kind: 'create' };
        log.info({ talkId, from: answer.previous.jobId }, 'took over a lapsed render-cache claim and adopted its talk; nothing is paid twice');
        return { kind: 'adopt', talkId };
      }
      const copied = await this.#serve(job, payload, hash, answer, log);
      if (copied === 'unusable') return { kind: 'create' };
      if (copied !== 'stale') {
        await this.#let(jobId, hash);
        return { kind: 'done', result: copied };
      }
      if (looks >= 2) return { kind: 'create' };
      answer = await this.store.lookup(payload.batchId, probe);
    }
  }

  /**
   * The entry to write with markDone for a row whose video was rendered (or adopted) and downloaded for it. Undefined
   * when the request cannot be hashed any more (a local file gone since).
   */
  async recordFor(jobId: string, payload: JobPayload, made: MadeVideo, probe?: RenderCacheProbe): Promise<RenderCacheRecord | undefined> {
    const hash = probe?.hash ?? this.#claimed.get(jobId) ?? (await this.requestHash(payload));
    if (hash === undefined) return undefined;
    this.#held.delete(jobId);
    this.#claimed.delete(jobId);
    const entry: RenderCacheEntry = {
      batchId: payload.batchId,
      rowKey: payload.rowKey,
      talkId: made.talkId,
      file: resolve(made.path),
      bytes: made.bytes,
      sha256: made.sha256,
      videoSeconds: made.videoSeconds,
      recordedAt: Date.now(),
    };
    return { hash, jobId, entry };
  }

  /** The row left this process's slot (done, failed, handed back): its claim is no longer renewed from here. */
  leave(jobId: string): void {
    this.#held.delete(jobId);
  }

  /** The row failed for good: its claim ends now, so a waiting identical row takes over at once. */
  async release(jobId: string): Promise<void> {
    this.#held.delete(jobId);
    const hash = this.#claimed.get(jobId);
    if (hash === undefined) return;
    this.#claimed.delete(jobId);
    await this.store.release(hash, jobId);
  }

  close(): void {
    clearInterval(this.#timer);
    this.#held.clear();
  }

  /** The request's hash, or undefined when a local file or share link cannot be read. */
  async requestHash(payload: JobPayload, signal?: AbortSignal): Promise<string | undefined> {
    const { talk } = payload;
    const media: UploadedMedia = {};
    try {
      if (talk.source_file !== undefined) media.sourceUrl = `sha256:${await this.#fileSha256(talk.source_file)}`;
      if (talk.source_link !== undefined) {
        if (!this.#options.uploads) return undefined;
        const { config } = this.#options;
        const bytes = await this.#options.uploads.linkImage(talk.source_link, { allow: config.outboundAllow }, { timeoutMs: config.downloadTimeoutMs, ...(signal ? { signal } : {}) });
        media.sourceUrl = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
      }
      if ('audio_file' in talk.script) media.audioUrl = `sha256:${await this.#fileSha256(talk.script.audio_file)}`;
    } catch (error) {
      if (signal?.aborted) throw error;
      return undefined;
    }
    return renderRequestHash(createTalkBody(talk, '', undefined, media), this.#options.config.didApiUrl);
  }

  #probe(hash: string, jobId: string, payload: JobPayload): RenderCacheProbe {
    const holder: ClaimHolder = { jobId, userData: userDataFor(payload.talk.user_data, talkTagFor(jobId, payload.generation)), at: Date.now() };
    return { hash, jobId, holder, ttlMs: this.#claimTtlMs };
  }

  #hold(jobId: string, hash: string): void {
    this.#held.set(jobId, hash);
    this.#claimed.delete(jobId);
    this.#claimed.set(jobId, hash);
    if (this.#claimed.size > CLAIMS_REMEMBERED) {
      const oldest = this.#claimed.keys().next().value;
      if (oldest !== undefined) this.#claimed.delete(oldest);
    }
  }

  /** A row that copied from the cache needs no claim it may have held. */
  async #let(jobId: string, hash: string): Promise<void> {
    if (this.#claimed.get(jobId) !== hash) return;
    this.#held.delete(jobId);
    this.#claimed.delete(jobId);
    await this.store.release(hash, jobId);
  }

  async #renew(): Promise<void> {
    if (this.#held.size === 0) return;
    const claims = [...this.#held].map(([jobId, hash]) => ({ jobId, hash }));
    await this.store.renew(claims, this.#claimTtlMs).catch((error: unknown) => this.#options.logger.warn({ err: String(error) }, 'could not renew render-cache claims'));
  }

  /** Short while the claim is young (renders that finish fast), longer as it ages, never past maxWaitMs. */
  #waitDelay(since: number): number {
    const age = since > 0 ? Math.max(0, Date.now() - since) : 0;
    const base = Math.min(this.#maxWaitMs, Math.max(MIN_WAIT_MS, age / 4));
    return Math.round(base * (0.8 + Math.random() * 0.4));
  }

  /**
   * The talk a claimant whose claim lapsed may have paid for: only while its job is still unfinished (a failed or
   * completed claimant's talk is not this request's to reuse), from its checkpoint, or when its create was in
   * flight, found by its user_data as the processor finds its own. A talk that already failed is not adopted.
   */
  async #lapsedClaimantTalk(previous: ClaimHolder, signal: AbortSignal | undefined): Promise<string | undefined> {
    const { queue, did, config } = this.#options;
    const job = (await queue.getJob(previous.jobId)) as Job<JobPayload, RowResult> | undefined;
    if (!job || job.finishedOn) return undefined;
    const state = job.data.state;
    if (!state || state.failure) return undefined;
    let talkId = state.talkId;
    if (talkId === undefined && state.submitStartedAt !== undefined) {
      const found = await did.findTalkByUserData(previous.userData, { window: config.reconcileWindow, notBefore: state.submitStartedAt - 10 * 60_000, ...(signal ? { signal } : {}) });
      talkId = found?.id;
    }
    if (talkId === undefined) return undefined;
    try {
      const talk = await did.getTalk(talkId, signal ? { signal } : {});
      return talk.status === 'error' || talk.status === 'rejected' ? undefined : talk.id;
    } catch (error) {
      if (signal?.aborted) throw error;
      return undefined;
    }
  }

  /**
   * Puts the cached video in the row's place and marks the row done. 'stale' when the file is gone or changed (the
   * entry is dropped); 'unusable' when the row cannot take it (its output name belongs to another row of its batch).
   */
  async #serve(job: Job<JobPayload, RowResult>, payload: JobPayload, hash: string, answer: Extract<RenderCacheAnswer, { kind: 'hit' }>, log: Logger): Promise<RowResult | 'stale' | 'unusable'> {
    const { batches, config } = this.#options;
    const entry = answer.entry;
    if (!entry) {
      await this.store.drop(hash, answer.raw);
      return 'stale';
    }
    // Jobs from other BullMQ clients skipped the producer's reservation; the processor's own path reports the clash.
    const names = await batches.reserveNames(payload.batchId, [{ name: payload.output.name, rowKey: payload.rowKey }]);
    if (!names.ok) return 'unusable';
    const record = await batches.fileRecord(payload.batchId, payload.output.name);
    if (record !== undefined && record.rowKey !== payload.rowKey) return 'unusable';

    const target = outputPathFor(config.outDir, payload.batchId, payload.output.name);
    const placed = await placeVerified(entry, target);
    if (placed !== 'ok') {
      log.warn({ request: hash, file: entry.file, reason: placed }, 'render-cache file is gone or changed; dropping the entry and rendering the row');
      await this.store.drop(hash, answer.raw);
      return 'stale';
    }
    await batches.recordFile(payload.batchId, payload.output.name, { rowKey: payload.rowKey, talkId: entry.talkId, sha256: entry.sha256 });
    if (this.#options.requestPreview) await this.#options.requestPreview(previewJobFor(payload, target));
    const finishedAt = Date.now();
    const cachedFrom = { batchId: entry.batchId, talkId: entry.talkId };
    await batches.markDone(payload.batchId, payload.rowKey, {
      talkId: entry.talkId,
      file: relative(join(config.outDir, payload.batchId), target),
      bytes: entry.bytes,
      sha256: entry.sha256,
      videoSeconds: entry.videoSeconds,
      renderSeconds: null,
      attempts: job.attemptsMade + 1,
      script: scriptText(payload.talk.script),
      input: payload.input,
      enqueuedAt: job.timestamp || null,
      finishedAt,
      cachedFrom,
    });
    await this.store.countHit();
    log.info({ talkId: entry.talkId, from: entry.batchId }, 'row done from the render cache; no talk created');
    return {
      status: 'done',
      talkId: entry.talkId,
      file: target,
      bytes: entry.bytes,
      sha256: entry.sha256,
      videoSeconds: entry.videoSeconds,
      renderSeconds: null,
      finishedAt: new Date(finishedAt).toISOString(),
      cachedFrom,
    };
  }

  async #fileSha256(path: string): Promise<string> {
    const info = await stat(path);
    const known = this.#fileHashes.get(path);
    if (known && known.size === info.size && known.mtimeMs === info.mtimeMs && known.ino === info.ino) return known.sha256;
    const hash = createHash('sha256');
    await hashFile(path, hash);
    const sha256 = hash.digest('hex');
    this.#fileHashes.delete(path);
    this.#fileHashes.set(path, { size: info.size, mtimeMs: info.mtimeMs, ino: info.ino, sha256 });
    if (this.#fileHashes.size > FILE_HASHES_REMEMBERED) {
      const oldest = this.#fileHashes.keys().next().value;
      if (oldest !== undefined) this.#fileHashes.delete(oldest);
    }
    return sha256;
  }
}

/** The render cache's key for a POST /talks body: talkbatch's per-row fields left out, D-ID's origin put in. */
export function renderRequestHash(body: Record<string, unknown>, didApiUrl: string): string {
  const { user_data: _userData, webhook: _webhook, name: _name, result_url: _resultUrl, ...request } = body;
  let origin: string;
  try {
    origin = new URL(didApiUrl).origin;
  } catch {
    origin = didApiUrl;
  }
  return createHash('sha256').update(stableJson({ v: 1, api: origin, request })).digest('hex');
}

/** Errors of link(2) that mean "not here": copy instead. */
const NO_LINK = new Set(['EXDEV', 'EPERM', 'EMLINK', 'ENOTSUP', 'EOPNOTSUPP', 'EACCES', 'ENOSYS']);

/**
 * The cached file under `target`: hard-linked when source and target share a file system, else copied; either way
 * through `<target>.copy`, checked against the entry's sha256 and size, then renamed into place (a file under its
 * final name is always complete, as downloads are). Not through `.part`: a download resumes a `.part` by appending
 * to it, and a link left there by a crash would append to the other batch's video. 'missing' or 'changed' when the
 * cached file cannot be used.
 */
async function placeVerified(entry: RenderCacheEntry, target: string): Promise<'ok' | 'missing' | 'changed'> {
  const source = resolve(entry.file);
  if (source === target) return (await sha256Of(target)) === entry.sha256 ? 'ok' : 'changed';
  await mkdir(dirname(target), { recursive: true });
  // Five bytes, like `.part`: output names leave room for that much (src/shared/file-names.ts).
  const part = `${target}.copy`;
  await rm(part, { force: true });
  let linked = false;
  try {
    await link(source, part);
    linked = true;
  } catch (error) {
    const code = (error as { code?: string }).code ?? '';
    if (code === 'ENOENT') return 'missing';
    if (!NO_LINK.has(code)) throw error;
  }
  let written: { bytes: number; sha256: string } | 'missing';
  if (linked) {
    const sha256 = await sha256Of(part);
    written = sha256 === undefined ? 'missing' : { bytes: (await stat(part)).size, sha256 };
  } else {
    written = await copyHashing(source, part);
  }
  if (written === 'missing') return 'missing';
  if (written.sha256 !== entry.sha256 || written.bytes !== entry.bytes) {
    await rm(part, { force: true });
    return 'changed';
  }
  await rename(part, target);
  // Renaming a link over another link to the same file leaves the source name in place.
  await rm(part, { force: true });
  await syncDir(dirname(target));
  return 'ok';
}

async function sha256Of(path: string): Promise<string | undefined> {
  try {
    const hash = createHash('sha256');
    await hashFile(path, hash);
    return hash.digest('hex');
  } catch (error) {
    if ((error as { code?: string }).code === 'ENOENT') return undefined;
    throw error;
  }
}

/** Copies `source` to `part`, hashing what is written, and fsyncs it. */
async function copyHashing(source: string, part: string): Promise<{ bytes: number; sha256: string } | 'missing'> {
  let input: ReturnType<typeof createReadStream>;
  try {
    const handle = await open(source, 'r');
    input = handle.createReadStream();
  } catch (error) {
    if ((error as { code?: string }).code === 'ENOENT') return 'missing';
    throw error;
  }
  const hash = createHash('sha256');
  const file = await open(part, 'w');
  let bytes = 0;
  try {
    for await (const chunk of input) {
      const buffer = chunk as Buffer;
      hash.update(buffer);
      await writeAll(file, buffer);
      bytes += buffer.length;
    }
    await file.sync();
  } catch (error) {
    await rm(part, { force: true });
    throw error;
  } finally {
    input.destroy();
    await file.close();
  }
  return { bytes, sha256: hash.digest('hex') };
}

function previewJobFor(payload: JobPayload, file: string): PreviewJob {
  const title = payload.input.share_title?.trim();
  const message = payload.input.share_message?.trim();
  return { batchId: payload.batchId, rowKey: payload.rowKey, file, ...(title ? { title } : {}), ...(message ? { message } : {}) };
}
