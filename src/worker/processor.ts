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
import { JobPayloadV1, talkTagFor, type JobPayload, type RowResult, type WorkerState } from '../queue/payload.js';
import { withJitter } from '../shared/clock.js';
import type { Logger } from '../shared/logger.js';
import type { AdaptiveConcurrency } from './adaptive-concurrency.js';
import type { PreviewJob } from './preview-worker.js';
import { dueStepMs, nextPollDelay, RenderTimes } from './poll-schedule.js';
import type { RenderTracker } from './render-tracker.js';
import type { Wakeups } from './wakeups.js';

/** Why a row failed for good, kept in the job's data for the results report. */
export interface RowFailure {
  code: string;
  kind: string;
  description: string;
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
  /** 401 or a malformed-key 403: the worker must stop taking jobs. */
  onAuthFailure: (error: DidApiError) => void;
  /** 402: pause the queue and watch credits. */
  onCreditsExhausted: (error: DidPaymentRequiredError) => Promise<void>;
  /** Hands a downloaded video to the preview queue (off this row's render slot). */
  requestPreview?: (job: PreviewJob) => Promise<void>;
}

type TalkJob = Job<JobPayload, RowResult>;

const MAX_POLL_FAILURES = 10;
const MAX_DOWNLOAD_TRIES = 4;

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
    const unknownRow = await deps.batches.takeRow(payload.batchId, { rowKey: payload.rowKey, line: payload.line ?? 0 });
    if (unknownRow) await deps.batches.create(payload.batchId, 'bullmq');
    let releaseBudget: () => Promise<void> = async () => {};
    /** Whether this try added the row to the render tracker already. */
    let tracked = false;
    /** Whether this try created the talk (rather than resuming one): it cannot be done yet. */
    let justCreated = false;

    // ---- submitting: find the talk we may already have paid for, else create it -------------------
    if (state.step === 'submitting' || !state.talkId) {
      const userData = talkTagFor(jobId, payload.generation);
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
        const webhook = deps.webhookUrlFor?.(jobId);
        try {
          const created = await did.createTalk(
            { ...payload.talk, user_data: userData, ...(webhook ? { webhook } : {}) },
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
        const file = await downloadVerified(url, outputPath, { timeoutMs: config.downloadTimeoutMs, ...(signal ? { signal } : {}) });
        // Before markDone, so a batch that reads as finished already lists this row's preview as pending.
        if (deps.requestPreview) await deps.requestPreview(previewJobFor(payload, file.path));
        await deps.batches.markDone(payload.batchId, payload.rowKey);
        log.debug({ talkId, bytes: file.bytes, resumed: file.resumed }, 'row done');
        return {
          status: 'done',
          talkId,
          file: file.path,
          bytes: file.bytes,
          sha256: file.sha256,
          videoSeconds: typeof talk.duration === 'number' ? talk.duration : null,
          renderSeconds: state.renderStartedAt ? Math.round((Date.now() - state.renderStartedAt) / 100) / 10 : null,
          finishedAt: new Date().toISOString(),
        };
      } catch (error) {
        if (!(error instanceof DownloadError)) throw error;
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
        return failRow({ code: error.code, kind: error.kind, description: error.description });
      }
      if (error instanceof DidConnectionError || error instanceof DidServerError || error instanceof DidProtocolError) {
        // Ambiguous: the talk may exist. Keep submitStartedAt so the next try looks before it creates.
        log.warn({ err: (error as Error).message }, 'create failed ambiguously; the next try reconciles first');
      }
      throw error;
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
          return failRow({
            code: current.status === 'rejected' ? 'TALK_REJECTED' : 'TALK_ERROR',
            kind: detail?.kind ?? (current.status === 'rejected' ? 'Rejected' : 'UnknownError'),
            description: detail?.description ?? `talk ended with status ${current.status}`,
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
        await deps.wakeups.wait(jobId, ms, AbortSignal.any([deps.handback, ...(signal ? [signal] : [])]));
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
