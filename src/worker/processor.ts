import { join, relative } from 'node:path';
import { DelayedError, RateLimitError, UnrecoverableError, type Job, type Queue } from 'bullmq';
import type { Config } from '../config/index.js';
import {
  DidApiError,
  DidAuthError,
  DidConnectionError,
  DidNotFoundError,
  DidPaymentRequiredError,
  DidProtocolError,
  DidRateLimitError,
  DidServerError,
  parseDidTime,
  type DidClient,
  type Talk,
} from '../did/index.js';
import { DownloadError, downloadVerified } from '../download/downloader.js';
import { outputPathFor } from '../download/paths.js';
import type { BatchStore } from '../queue/batches.js';
import type { ReplicaAck } from '../queue/replica-ack.js';
import { rowCredits } from '../queue/credits.js';
import { createTalkBody, JobPayloadV1, scriptText, talkTagFor, userDataFor, type UploadedMedia, type JobPayload, type RowResult, type WorkerState } from '../queue/payload.js';
import { withJitter } from '../shared/clock.js';
import type { Logger } from '../shared/logger.js';
import type { AdaptiveConcurrency } from './adaptive-concurrency.js';
import type { PreviewJob } from './preview-worker.js';
import { dueStepMs, nextPollDelay, RenderTimes } from './poll-schedule.js';
import type { RenderTracker } from './render-tracker.js';
import { LocalFileError, type UploadCache } from './uploads.js';
import type { Wakeups } from './wakeups.js';

/** Why a row failed for good, kept in the job's data for the results report. */
export interface RowFailure {
  code: string;
  kind: string;
  description: string;
  /** D-ID's `details` (a ValidationError's per-field reasons) as JSON, bounded. */
  details?: string;
}

/** D-ID's details may be anything; the report keeps at most this much of their JSON. */
export const FAILURE_DETAILS_MAX = 2_000;

/** D-ID's `details` as bounded JSON text, or undefined when there are none. */
export function failureDetails(details: unknown): string | undefined {
  if (details === undefined || details === null) return undefined;
  let text: string;
  try {
    text = typeof details === 'string' ? details : JSON.stringify(details);
  } catch {
    return undefined;
  }
  if (text === undefined || text === '' || text === '{}') return undefined;
  return text.length > FAILURE_DETAILS_MAX ? `${text.slice(0, FAILURE_DETAILS_MAX - 1)}…` : text;
}

export interface ProcessorDeps {
  config: Config;
  did: DidClient;
  queue: Queue;
  batches: BatchStore;
  logger: Logger;
  wakeups: Wakeups;
  concurrency: AdaptiveConcurrency;
  /** Our talks D-ID is rendering now, across all workers. */
  rendering: RenderTracker;
  /** Aborted when the worker is asked to stop: rows waiting on D-ID are handed back, not held. */
  handback: AbortSignal;
  /** The webhook URL for a job, when webhooks are on. */
  webhookUrlFor?: (jobId: string) => string | undefined;
  /** Local images and audio named by rows: uploaded once per content, URL remembered. */
  uploads?: UploadCache;
  /** 401 or a malformed-key 403: the worker must stop taking jobs. */
  onAuthFailure: (error: DidApiError) => void;
  /** 402: pause the queue and watch credits. */
  onCreditsExhausted: (error: DidPaymentRequiredError) => Promise<void>;
  /** Behind Sentinel: confirms a replica holds the "create in flight" checkpoint before the create is paid. */
  replicaAck?: ReplicaAck;
  /** Hands a downloaded video to the preview queue (off this row's render slot). */
  requestPreview?: (job: PreviewJob) => Promise<void>;
  /** Called after markDone when talkbatch's own receiver took D-ID's webhook and the row has its own: delivers in the background; must not throw. */
  onRowWebhook?: (event: RowWebhookEvent) => void;
}

/** What a worker hands over once a row's MP4 is on disk and the row has its own `webhook` that D-ID was not given. */
export interface RowWebhookEvent {
  batchId: string;
  rowKey: string;
  jobId: string;
  /** The row's own webhook URL (from its manifest, job file or API body). */
  url: string;
  talkId: string;
  /** The output file's name, relative to the batch's output folder. */
  file: string;
  sha256: string;
  bytes: number;
  /** The talk as D-ID last described it: what D-ID's own webhook would have carried. */
  talk: Record<string, unknown>;
}


type TalkJob = Job<JobPayload, RowResult>;

const MAX_POLL_FAILURES = 10;
const MAX_DOWNLOAD_TRIES = 4;
/** How long a row waits after no replica confirmed its checkpoint (a replica catching up, a failover under way). */
const REPLICA_WAIT_RETRY_MS = 2_000;

/**
 * The step machine of one row: submit, wait for the render, download. The only place where errors
 * become queue signals (DelayedError, RateLimitError, UnrecoverableError, or a plain retryable throw).
 */
export function createProcessor(deps: ProcessorDeps) {
  const { config, did, logger } = deps;
  // 429s in one burst (every slot over a cap answering at once) are one signal; the back-off only
  // grows when 429s keep coming after the previous back-off ran out.
  let rateLimitStreak = 0;
  let rateLimitedUntil = 0;
  // What D-ID's renders took lately, so polls land when a talk is due (poll-schedule.ts).
  const renderTimes = new RenderTimes();

  return async function processTalk(job: TalkJob, token?: string, signal?: AbortSignal): Promise<RowResult> {
    const parsed = JobPayloadV1.safeParse(job.data);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new UnrecoverableError(`PAYLOAD_INVALID: ${issue ? `${issue.path.join('.') || 'payload'}: ${issue.message}` : 'invalid payload'}`);
    }
    const payload = parsed.data;
    const jobId = job.id ?? '';
    const log = logger.child({ jobId, batchId: payload.batchId, rowKey: payload.rowKey });
    const outputPath = outputPathFor(config.outDir, payload.batchId, payload.output.name);
    let state: WorkerState = payload.state ?? { step: 'submitting', polls: 0, creates: 0 };

    const checkpoint = async (next: WorkerState): Promise<void> => {
      state = next;
      await job.updateData({ ...job.data, state: next });
    };
    const failRow = async (failure: RowFailure): Promise<never> => {
      await checkpoint({ ...state, failure });
      throw new UnrecoverableError(`${failure.kind}: ${failure.description}`);
    };
    /** Give the slot back without burning an attempt; the checkpoint says where to go on. */
    const handBack = async (delayMs: number): Promise<never> => {
      await deps.batches.markReleased(payload.batchId, payload.rowKey);
      await job.moveToDelayed(Date.now() + delayMs, token);
      throw new DelayedError();
    };

    // A job added by another BullMQ client (docs/api.md) joins its batch's ledger the first time a worker sees it.
    const taken = await deps.batches.takeRow(payload.batchId, { rowKey: payload.rowKey, line: payload.line ?? 0 });
    if (taken === 'new') await deps.batches.create(payload.batchId, 'bullmq');
    if (taken === 'done') {
      // A copy of a row finished earlier (its job already removed, talk-queue.ts): answer from the ledger, pay nothing.
      const [finished] = await deps.batches.finishedRows(payload.batchId, [payload.rowKey]);
      if (finished) {
        log.info({ talkId: finished.talkId }, 'row already done in its batch; not made again');
        return {
          status: 'done',
          talkId: finished.talkId,
          file: join(config.outDir, payload.batchId, finished.file),
          bytes: finished.bytes,
          sha256: finished.sha256,
          videoSeconds: finished.videoSeconds,
          renderSeconds: finished.renderSeconds,
          finishedAt: new Date(finished.finishedAt).toISOString(),
        };
      }
    }
    let releaseBudget: () => Promise<void> = async () => {};
    /** Whether this try added the row to the render tracker already. */
    let tracked = false;
    /** Whether this try created the talk (rather than resuming one): it cannot be done yet. */
    let justCreated = false;

    // ---- submitting: find the talk we may already have paid for, else create it -------------------
    if (state.step === 'submitting' || !state.talkId) {
      const userData = userDataFor(payload.talk.user_data, talkTagFor(jobId, payload.generation));
      let talkId: string | undefined;
      if (state.submitStartedAt !== undefined) {
        // A create was in flight when the last try ended: it may have happened.
        const found = await did.findTalkByUserData(userData, {
          window: config.reconcileWindow,
          notBefore: state.submitStartedAt - 10 * 60_000,
          ...(signal ? { signal } : {}),
        });
        if (found) {
          log.info({ talkId: found.id }, 'adopted talk created by an earlier try');
          talkId = found.id;
        }
      }
      if (!talkId) {
        if (deps.handback.aborted) await handBack(0);
        // Jobs from other BullMQ clients skipped the producer's reservation: the name is claimed here, before any spend.
        const names = await deps.batches.reserveNames(payload.batchId, [{ name: payload.output.name, rowKey: payload.rowKey }]);
        if (!names.ok) {
          await failRow({
            code: 'OUTPUT_NAME_TAKEN',
            kind: 'OutputNameTaken',
            description: `output name "${payload.output.name}" already belongs to row "${names.owner}" of this batch; no talk was created`,
          });
        }
        // Before the budget and the create checkpoint: an upload is free, and a failed one must not look like a create in flight.
        const uploaded = await uploadLocalFiles();
        const budgetMember = `${payload.rowKey}#${payload.generation}`;
        const seconds = payload.estimatedSeconds ?? 0;
        const verdict = await deps.batches.reserveBudget(payload.batchId, budgetMember, seconds);
        if (verdict !== 'ok') {
          await failRow({
            code: 'BUDGET_EXCEEDED',
            kind: 'BudgetExceeded',
            description: verdict === 'max-talks' ? 'the batch reached its --max-talks budget; no talk was created' : 'the batch reached its --max-video-seconds budget; no talk was created',
          });
        }
        releaseBudget = () => deps.batches.releaseBudget(payload.batchId, budgetMember, seconds);
        await checkpoint({ ...state, step: 'submitting', submitStartedAt: state.submitStartedAt ?? Date.now() });
        if (deps.replicaAck && !(await deps.replicaAck.confirm())) {
          // A failover now could lose the checkpoint, and with it the reconciliation that prevents a second payment.
          log.warn('no Redis replica confirmed the checkpoint in time; handing the row back before creating its talk');
          await handBack(REPLICA_WAIT_RETRY_MS);
        }
        // With talkbatch's receiver on, D-ID calls talkbatch, which calls the row's own webhook once the file is on disk.
        const webhook = deps.webhookUrlFor?.(jobId) ?? payload.talk.webhook;
        try {
          const created = await did.createTalk(
            createTalkBody(payload.talk, talkTagFor(jobId, payload.generation), webhook, uploaded),
            signal ? { signal } : {},
          );
          talkId = created.id;
          // Counted as rendering before anything else is awaited: a 429 answered to a create sent at
          // the same moment reads this count as the plan's render cap (adaptive concurrency).
          await deps.rendering.add(jobId);
          tracked = true;
          rateLimitStreak = 0;
          await deps.concurrency.onCreated();
          log.debug({ talkId }, 'talk created');
        } catch (error) {
          await onCreateError(error);
        }
      }
      justCreated = tracked;
      await checkpoint({ step: 'rendering', talkId: talkId as string, renderStartedAt: Date.now(), polls: 0, creates: state.creates + 1 });
    }
    if (!tracked) await deps.rendering.add(jobId);

    // ---- rendering: poll (woken early by the webhook) until D-ID is done -------------------------
    const talkId = state.talkId as string;
    let talk: Talk;
    try {
      talk = await waitForRender(talkId, justCreated);
    } finally {
      await deps.rendering.remove(jobId);
    }

    // ---- downloading: verified, atomic; a refused link is renewed by re-reading the talk ----------
    let downloadError: unknown;
    for (let attempt = 1; attempt <= MAX_DOWNLOAD_TRIES; attempt += 1) {
      if (!talk.result_url) talk = await did.getTalk(talkId, signal ? { signal } : {});
      const url = talk.result_url;
      if (!url) throw new DidProtocolError(`talk ${talkId} is done but has no result_url`);
      try {
        // A file already at the path counts as this row's only when the ledger says this row's talk wrote it.
        const record = await deps.batches.fileRecord(payload.batchId, payload.output.name);
        if (record !== undefined && record.rowKey !== payload.rowKey) {
          await failRow({
            code: 'OUTPUT_NAME_TAKEN',
            kind: 'OutputNameTaken',
            description: `output file "${payload.output.name}" was written by row "${record.rowKey}" of this batch; not overwritten`,
          });
        }
        const owned = record !== undefined && record.talkId === talkId ? { sha256: record.sha256 } : undefined;
        const file = await downloadVerified(url, outputPath, { timeoutMs: config.downloadTimeoutMs, ...(owned ? { owned } : {}), ...(signal ? { signal } : {}) });
        await deps.batches.recordFile(payload.batchId, payload.output.name, { rowKey: payload.rowKey, talkId, sha256: file.sha256 });
        // Before markDone, so a batch that reads as finished already lists this row's preview as pending.
        if (deps.requestPreview) await deps.requestPreview(previewJobFor(payload, file.path));
        const finishedAt = Date.now();
        // The billing rule on the length D-ID reported, else the estimate (queue/credits.ts).
        const spent = rowCredits(payload, talk.duration);
        const result: RowResult = {
          status: 'done',
          talkId,
          file: file.path,
          bytes: file.bytes,
          sha256: file.sha256,
          videoSeconds: typeof talk.duration === 'number' ? talk.duration : null,
          renderSeconds: state.renderStartedAt ? Math.round((finishedAt - state.renderStartedAt) / 100) / 10 : null,
          finishedAt: new Date(finishedAt).toISOString(),
          ...spent,
        };
        // What the report shows of the row once BullMQ drops its completed job (talk-queue.ts).
        await deps.batches.markDone(payload.batchId, payload.rowKey, {
          talkId,
          file: relative(join(config.outDir, payload.batchId), file.path),
          bytes: file.bytes,
          sha256: file.sha256,
          videoSeconds: result.videoSeconds,
          renderSeconds: result.renderSeconds,
          // BullMQ counts this attempt once the job moves to completed.
          attempts: job.attemptsMade + 1,
          script: scriptText(payload.talk.script),
          input: payload.input,
          enqueuedAt: job.timestamp || null,
          finishedAt,
          ...spent,
        });
        // D-ID called talkbatch instead of the row's own URL: talkbatch calls it now that the file is on disk.
        const ownWebhook = payload.talk.webhook;
        if (ownWebhook !== undefined && deps.webhookUrlFor?.(jobId) !== undefined) {
          deps.onRowWebhook?.({
            batchId: payload.batchId,
            rowKey: payload.rowKey,
            jobId,
            url: ownWebhook,
            talkId,
            file: relative(join(config.outDir, payload.batchId), file.path),
            sha256: file.sha256,
            bytes: file.bytes,
            // D-ID's view names talkbatch's receiver (with its token) as the webhook: the row sees its own URL instead.
            talk: { ...talk, webhook: ownWebhook },
          });
        }
        log.debug({ talkId, bytes: file.bytes, resumed: file.resumed }, 'row done');
        return result;
      } catch (error) {
        if (!(error instanceof DownloadError)) throw error;
        if (error.reason === 'file-name') await failRow({ code: error.code, kind: 'OutputNameUnusable', description: error.message });
        downloadError = error;
        log.warn({ talkId, attempt, reason: error.reason, err: error.message }, 'download failed');
        // Every failure but a short body may come from a stale link: fetch a fresh one next time.
        if (error.reason !== 'truncated' && error.reason !== 'network') talk = { ...talk, result_url: undefined } as Talk;
      }
    }
    throw downloadError;

    async function onCreateError(error: unknown): Promise<never> {
      if (error instanceof DidRateLimitError) {
        if (Date.now() >= rateLimitedUntil) rateLimitStreak += 1;
        await deps.concurrency.onRateLimited(await deps.rendering.count(), () => deps.rendering.count());
        // A plan's render cap frees a slot as soon as any render finishes: start short, grow fast.
        const wait = error.retryAfterMs ?? withJitter(Math.min(10_000, 250 * 2 ** Math.min(rateLimitStreak - 1, 6)));
        rateLimitedUntil = Math.max(rateLimitedUntil, Date.now() + wait);
        log.warn({ wait, concurrency: deps.concurrency.current }, 'D-ID rate limit (429): backing off the whole queue');
        await clearSubmit();
        await deps.queue.rateLimit(Math.max(wait, 50));
        throw new RateLimitError();
      }
      if (error instanceof DidPaymentRequiredError) {
        await clearSubmit();
        await deps.onCreditsExhausted(error);
        await deps.queue.rateLimit(Math.min(config.creditCheckMs, 5_000));
        throw new RateLimitError();
      }
      if (error instanceof DidAuthError && !(error.status === 403 && error.kind === 'PermissionError')) {
        await clearSubmit();
        deps.onAuthFailure(error);
        return handBack(config.creditCheckMs);
      }
      if (error instanceof DidApiError && !(error instanceof DidServerError)) {
        // 400, 403 PermissionError, 404, 451...: D-ID said no to this row; asking again cannot help.
        await clearSubmit();
        await releaseBudget();
        const details = failureDetails(error.details);
        return failRow({ code: error.code, kind: error.kind, description: error.description, ...(details === undefined ? {} : { details: did.redact(details) }) });
      }
      if (error instanceof DidConnectionError || error instanceof DidServerError || error instanceof DidProtocolError) {
        // Ambiguous: the talk may exist. Keep submitStartedAt so the next try looks before it creates.
        log.warn({ err: (error as Error).message }, 'create failed ambiguously; the next try reconciles first');
      }
      throw error;
    }

    async function uploadLocalFiles(): Promise<UploadedMedia> {
      const { talk } = payload;
      const audioFile = 'audio_file' in talk.script ? talk.script.audio_file : undefined;
      if (talk.source_file === undefined && talk.source_link === undefined && audioFile === undefined) return {};
      if (!deps.uploads) throw new UnrecoverableError('LOCAL_FILE: this worker cannot upload local files');
      const options = signal ? { signal } : {};
      try {
        const uploaded: UploadedMedia = {};
        if (talk.source_file !== undefined) uploaded.sourceUrl = await deps.uploads.urlFor('image', talk.source_file, options);
        if (talk.source_link !== undefined) {
          uploaded.sourceUrl = await deps.uploads.urlForLink(talk.source_link, { allow: config.outboundAllow }, { ...options, timeoutMs: config.downloadTimeoutMs });
        }
        if (audioFile !== undefined) uploaded.audioUrl = await deps.uploads.urlFor('audio', audioFile, options);
        return uploaded;
      } catch (error) {
        if (error instanceof LocalFileError) return failRow({ code: 'LOCAL_FILE', kind: 'LocalFileError', description: error.message });
        if (error instanceof DidAuthError && !(error.status === 403 && error.kind === 'PermissionError')) {
          deps.onAuthFailure(error);
          return handBack(config.creditCheckMs);
        }
        if (error instanceof DidApiError && !(error instanceof DidServerError) && !(error instanceof DidRateLimitError)) {
          // D-ID refused the file itself (not an image, too large, moderation): asking again cannot help.
          const details = failureDetails(error.details);
          return failRow({ code: error.code, kind: error.kind, description: error.description, ...(details === undefined ? {} : { details: did.redact(details) }) });
        }
        throw error;
      }
    }

    async function clearSubmit(): Promise<void> {
      const { submitStartedAt: _cleared, ...rest } = state;
      await checkpoint({ ...rest, step: 'submitting' });
    }

    async function waitForRender(id: string, fresh: boolean): Promise<Talk> {
      let failures = 0;
      const webhooks = Boolean(deps.webhookUrlFor?.(jobId));
      const startedAt = state.renderStartedAt ?? Date.now();
      // A talk created a moment ago is not done unless renders are near instant: once render times
      // are known, the first look waits until the talk can be due (or, with webhooks, for the webhook).
      const known = renderTimes.window();
      if (fresh && known && known.low > dueStepMs(known, config.pollMaxMs)) {
        await pause(id, webhooks ? fallbackDelay() : nextPollDelay({ elapsedMs: Date.now() - startedAt, polls: 0, window: known, initialMs: config.pollInitialMs, maxMs: config.pollMaxMs }));
      }
      for (;;) {
        let current: Talk | undefined;
        try {
          current = await did.getTalk(id, signal ? { signal } : {});
          failures = 0;
        } catch (error) {
          if (error instanceof DidNotFoundError) {
            return failRow({ code: error.code, kind: 'TalkNotFound', description: `talk ${id} no longer exists at D-ID` });
          }
          if (error instanceof DidAuthError) {
            deps.onAuthFailure(error);
            return handBack(config.creditCheckMs);
          }
          const transient = error instanceof DidRateLimitError || error instanceof DidServerError || error instanceof DidConnectionError || error instanceof DidProtocolError;
          if (!transient || ++failures > MAX_POLL_FAILURES) throw error;
          log.debug({ err: (error as Error).message, failures }, 'poll failed; polling on');
        }
        if (current?.status === 'done') {
          renderTimes.record(renderMsOf(current) ?? Date.now() - startedAt);
          return current;
        }
        if (current?.status === 'error' || current?.status === 'rejected') {
          const detail = current.error;
          const details = failureDetails(detail !== undefined && 'details' in detail ? detail.details : undefined);
          return failRow({
            code: current.status === 'rejected' ? 'TALK_REJECTED' : 'TALK_ERROR',
            kind: detail?.kind ?? (current.status === 'rejected' ? 'Rejected' : 'UnknownError'),
            description: detail?.description ?? `talk ended with status ${current.status}`,
            ...(details === undefined ? {} : { details: did.redact(details) }),
          });
        }
        if (Date.now() - startedAt > config.renderTimeoutMs) {
          return failRow({ code: 'RENDER_TIMEOUT', kind: 'RenderTimeout', description: `talk ${id} not done after ${Math.round(config.renderTimeoutMs / 1000)} s` });
        }
        state = { ...state, polls: state.polls + 1 };
        const window = renderTimes.window();
        const delay = webhooks
          ? fallbackDelay()
          : window
            ? nextPollDelay({ elapsedMs: Date.now() - startedAt, polls: state.polls, window, initialMs: config.pollInitialMs, maxMs: config.pollMaxMs })
            : withJitter(nextPollDelay({ elapsedMs: 0, polls: state.polls, window, initialMs: config.pollInitialMs, maxMs: config.pollMaxMs }), () => 0.5 + Math.random() / 2);
        await pause(id, delay);
      }
    }

    /** With webhooks on, polling is only the fallback: slow, three times the poll ceiling. */
    function fallbackDelay(): number {
      return withJitter(config.pollMaxMs * 3, () => 0.5 + Math.random() / 2);
    }

    /** Waits `ms` or until woken; on shutdown, checkpoints and hands the row back. */
    async function pause(id: string, ms: number): Promise<void> {
      try {
        await deps.wakeups.wait(jobId, ms, [deps.handback, signal]);
      } catch (error) {
        if (deps.handback.aborted) {
          await checkpoint(state);
          log.info({ talkId: id }, 'handing the row back while D-ID renders');
          await handBack(0);
        }
        throw error;
      }
    }
  };
}

function previewJobFor(payload: JobPayload, file: string): PreviewJob {
  const title = payload.input.share_title?.trim();
  const message = payload.input.share_message?.trim();
  return { batchId: payload.batchId, rowKey: payload.rowKey, file, ...(title ? { title } : {}), ...(message ? { message } : {}) };
}

/** How long D-ID took to render a finished talk, by its own clock (created_at → modified_at). */
function renderMsOf(talk: Talk): number | undefined {
  if (!talk.created_at || !talk.modified_at) return undefined;
  const ms = parseDidTime(talk.modified_at) - parseDidTime(talk.created_at);
  return Number.isFinite(ms) && ms >= 0 ? ms : undefined;
}
