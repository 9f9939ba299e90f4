/**
 * The step machine of one row, as a pure function: given where the row stands and what just happened,
 * what the processor must do next. No I/O, no Redis, no BullMQ, no clock but `now`, no randomness but
 * `random`: every transition (429, 402, a refused key, an ambiguous create, a webhook wake, a dead link,
 * a shutdown...) can be tested by a table of plain data. `processor.ts` runs the actions and turns them
 * into BullMQ signals.
 */
import type { Talk } from '../did/schemas.js';
import { parseDidTime } from '../did/client.js';
import type { DidApiError, DidPaymentRequiredError } from '../did/errors.js';
import type { DownloadFailure } from '../download/downloader.js';
import type { BudgetVerdict, OutputFileRecord } from '../queue/batches.js';
import type { RowResult, UploadedMedia, WorkerState } from '../queue/payload.js';
import { withJitter } from '../shared/clock.js';
import { dueStepMs, nextPollDelay, type RenderWindow } from './poll-schedule.js';
import { jsonText } from '../shared/json.js';

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
  let text: string | undefined;
  try {
    text = typeof details === 'string' ? details : jsonText(details);
  } catch {
    return undefined;
  }
  if (text === undefined || text === '' || text === '{}') return undefined;
  return text.length > FAILURE_DETAILS_MAX ? `${text.slice(0, FAILURE_DETAILS_MAX - 1)}…` : text;
}

export const MAX_POLL_FAILURES = 10;
export const MAX_DOWNLOAD_TRIES = 4;
/** How long a row waits after no replica confirmed its checkpoint (a replica catching up, a failover under way). */
export const REPLICA_WAIT_RETRY_MS = 2_000;
/** The reconcile search also looks at talks this much older than the attempt (clocks differ). */
export const RECONCILE_LOOKBACK_MS = 10 * 60_000;

// ---- what decide reads ---------------------------------------------------------------------------

/** The settings the machine needs (from Config). */
export interface MachineSettings {
  pollInitialMs: number;
  pollMaxMs: number;
  renderTimeoutMs: number;
  /** How long a row is handed back for after a refused key; caps the queue pause on a 402. */
  creditCheckMs: number;
}

/** What does not change while a worker holds the row. */
export interface RowFacts {
  settings: MachineSettings;
  rowKey: string;
  outputName: string;
  /** talkbatch's own receiver gets D-ID's webhook for this row: polling is only the fallback. */
  receiver: boolean;
  /** The row's own webhook; with `receiver` on, talkbatch calls it once the file is on disk. */
  ownWebhook?: string;
  /** The row names local files or a share link, uploaded before the create. */
  localFiles: boolean;
  /** This worker can upload them. */
  canUpload: boolean;
  /** Behind Sentinel: a replica must confirm the create checkpoint before the create is paid. */
  replicaAck: boolean;
}

/** 429s in one burst (every slot over a cap answering at once) are one signal for the back-off. */
export interface RateLimitMemory {
  /** 429 bursts in a row; reset by a create that went through. */
  streak: number;
  /** When the back-off last promised ran out (epoch ms). */
  until: number;
}

/** The worker process's view, shared by all its rows: read before each decision, rateLimit written back after. */
export interface WorkerView {
  rateLimit: RateLimitMemory;
  /** What D-ID's renders took lately (poll-schedule.ts), undefined until a few are known. */
  renderWindow: RenderWindow | undefined;
  /** The worker was asked to stop: rows waiting on D-ID are handed back, not held. */
  stopping: boolean;
}

export type Phase = 'taking' | 'submitting' | 'rendering' | 'downloading';

/** A file on disk under its final name, verified. */
export interface DownloadedFile {
  path: string;
  bytes: number;
  sha256: string;
  /** An earlier `.part` was continued. */
  resumed: boolean;
}

/** What this try has learned; lost with the process (the checkpoint is what survives). */
export interface Attempt {
  phase: Phase;
  /** This try counted the talk as rendering (render tracker) and has not yet taken it off. */
  tracked: boolean;
  /** This try created the talk (rather than adopting or resuming one): it cannot be done yet. */
  created: boolean;
  /** This try reserved the row's budget, so a certain refusal gives it back. */
  budgetReserved: boolean;
  uploaded: UploadedMedia;
  /** When the wait for the render counts from: the checkpoint's renderStartedAt, else when this try began waiting. */
  waitStartedAt?: number;
  /** Failed looks at the talk since the last good one. */
  pollFailures: number;
  /** The talk as D-ID last described it (once done). */
  talk?: Talk;
  downloadTries: number;
  file?: DownloadedFile;
}

export interface RowState {
  /** The row's WorkerState as this try holds it; the actions that carry a checkpoint save it. */
  checkpoint: WorkerState;
  attempt: Attempt;
  worker: WorkerView;
  facts: RowFacts;
}

/** D-ID's error answer, as plain data. */
export interface DidRefusal {
  status: number;
  code: string;
  /** D-ID's `kind` (e.g. ValidationError), or the gateway's label. */
  didKind: string;
  description: string;
  details?: unknown;
}

/** How a call to D-ID (or an upload) went wrong. `error` is the original, handed back to be thrown or reported. */
export type CallFailure =
  | { kind: 'rate-limited'; retryAfterMs?: number; error: unknown }
  | { kind: 'no-credits'; refusal: DidRefusal; error: DidPaymentRequiredError }
  /** Any other answer that is not a 5xx: 400, 401, 403, 404, 451... */
  | { kind: 'refused'; refusal: DidRefusal; error: DidApiError }
  /** A 5xx, including the gateway's 504 after a create that may have happened. */
  | { kind: 'server'; status: number; error: unknown }
  /** No answer: refused, reset, DNS, timeout. The request may or may not have arrived. */
  | { kind: 'unreachable'; error: unknown }
  /** A 2xx whose body is not what D-ID documents. */
  | { kind: 'malformed'; error: unknown }
  /** A local file that cannot be read or is not what it claims to be. */
  | { kind: 'local-file'; message: string; error: unknown }
  | { kind: 'other'; error: unknown };

/** What just happened: the result of the last action (or the job being taken). */
export type Observation =
  | { kind: 'started' }
  | { kind: 'row-taken'; alreadyDone: boolean }
  /** The ledger's entry for a row it has done, or none (the row is made after all). */
  | { kind: 'finished-read'; result?: RowResult }
  | { kind: 'reconciled'; talkId?: string }
  | { kind: 'name-reserved' }
  | { kind: 'name-taken'; owner: string }
  | { kind: 'uploaded'; media: UploadedMedia }
  | { kind: 'upload-failed'; failure: CallFailure }
  | { kind: 'budget-reserved' }
  | { kind: 'budget-refused'; verdict: Exclude<BudgetVerdict, 'ok'> }
  | { kind: 'replica-unconfirmed' }
  /** The row holds a render slot (render-slots.ts) and may create its talk. */
  | { kind: 'slot-taken' }
  /** Every render slot is held (`full`), or the queue backs off a 429 for `waitMs`, or it is paused. */
  | { kind: 'slot-refused'; why: 'full' | 'rate-limited' | 'paused' | 'cancelled'; waitMs?: number }
  /** The wait for a slot ran out, or a freed slot woke the row. */
  | { kind: 'slot-waited' }
  /** The wait for a slot was cut short by the worker stopping or the job's own signal. */
  | { kind: 'slot-wait-aborted'; error: unknown }
  | { kind: 'created'; talkId: string }
  | { kind: 'create-failed'; failure: CallFailure }
  | { kind: 'render-started' }
  /** The wait ran out, or a webhook (or anything else that learned the talk is finished) woke the row. */
  | { kind: 'waited'; woken: boolean }
  /** The wait was cut short by the worker stopping or the job's own signal. */
  | { kind: 'wait-aborted'; error: unknown }
  | { kind: 'talk-read'; talk: Talk }
  | { kind: 'talk-read-failed'; failure: CallFailure }
  | { kind: 'render-ended' }
  | { kind: 'file-checked'; record?: OutputFileRecord }
  | { kind: 'downloaded'; file: DownloadedFile }
  | { kind: 'download-failed'; reason: DownloadFailure; code: string; message: string; error: unknown }
  | { kind: 'file-recorded' };

// ---- what decide asks for ------------------------------------------------------------------------

/** What the processor must do next. The actions that end the try return a result or throw a BullMQ signal. */
export type Action =
  /** Join the row to its batch's ledger (a job from another BullMQ client makes the batch). */
  | { kind: 'take-row' }
  | { kind: 'read-finished' }
  | { kind: 'complete-from-ledger'; result: RowResult }
  /** Search D-ID's talks for this row's user_data, created after `notBefore`. */
  | { kind: 'reconcile'; notBefore: number }
  | { kind: 'reserve-name' }
  | { kind: 'upload' }
  | { kind: 'reserve-budget' }
  /** Try for one of the render slots every worker shares (D-ID's plan limit). */
  | { kind: 'take-slot' }
  /** Wait up to `ms` for a render slot to free. */
  | { kind: 'await-slot'; ms: number }
  /** Save `checkpoint` (the create marker), have a replica confirm it when asked, then POST /talks. */
  | { kind: 'create'; checkpoint: WorkerState; confirmReplica: boolean; uploaded: UploadedMedia }
  /** Count the talk as rendering, then save `checkpoint` if any. */
  | { kind: 'start-render'; talkId: string; via: 'created' | 'adopted' | 'resumed'; checkpoint?: WorkerState }
  /** Wait `ms`, or less when woken. */
  | { kind: 'wait'; talkId: string; ms: number }
  | { kind: 'poll'; talkId: string }
  /** Remember the render time, take the talk off the render count. */
  | { kind: 'end-render'; renderMs: number }
  /** Read the finished talk again for a fresh result_url. */
  | { kind: 'read-talk'; talkId: string }
  | { kind: 'check-file' }
  /** `owned`: the sha256 this row's talk wrote at the path earlier, so the file there may be kept. */
  | { kind: 'download'; url: string; owned?: string }
  /** Record the file as this row's and ask for its preview. */
  | { kind: 'record-file'; talkId: string; file: DownloadedFile }
  | { kind: 'mark-done'; result: RowResult; finishedAt: number; resumed: boolean; rowWebhook?: { url: string; talk: Record<string, unknown> } }
  /**
   * Fail the row for good (no retry): save `checkpoint` with the failure. With `releaseBudget` the create was
   * refused for sure: `checkpoint` (marker cleared) is saved first, then the budget given back.
   */
  | { kind: 'fail'; failure: RowFailure; checkpoint: WorkerState; releaseBudget: boolean }
  /** Fail for good without recording a failure (this worker cannot run the row at all). */
  | { kind: 'reject'; message: string }
  /** Save `checkpoint`, back the whole queue off `queueMs`; no attempt burnt. */
  | { kind: 'rate-limit'; checkpoint: WorkerState; backoffMs: number; queueMs: number }
  /** Save `checkpoint`, pause the queue for credits, back off `queueMs`; no attempt burnt. */
  | { kind: 'pause-for-credits'; checkpoint: WorkerState; queueMs: number; error: DidPaymentRequiredError }
  /** The key was refused: stop the worker and hand the row back for `delayMs`. */
  | { kind: 'stop-worker'; error: DidApiError; delayMs: number; checkpoint?: WorkerState }
  /** Give the slot back without burning an attempt; the checkpoint says where to go on. */
  | { kind: 'hand-back'; delayMs: number; why: 'stopping' | 'stopping-while-rendering' | 'replica-unconfirmed' | 'paused'; checkpoint?: WorkerState }
  /** End this try with `error` (BullMQ retries). `ambiguous`: a create that may have happened; the next try reconciles. */
  | { kind: 'retry'; error: unknown; ambiguous: boolean }
  /** End this try with a protocol error (BullMQ retries). */
  | { kind: 'retry-malformed'; message: string };

export interface Decision {
  state: RowState;
  action: Action;
}

/** The state of a row a worker has just taken. */
export function startState(checkpoint: WorkerState | undefined, facts: RowFacts, worker: WorkerView): RowState {
  return {
    checkpoint: checkpoint ?? { step: 'submitting', polls: 0, creates: 0 },
    attempt: { phase: 'taking', tracked: false, created: false, budgetReserved: false, uploaded: {}, pollFailures: 0, downloadTries: 0 },
    worker,
    facts,
  };
}

/**
 * The next action for a row. `now` is the time (epoch ms) and `random` a draw in [0, 1) for jitter; nothing
 * else outside the arguments is read. Throws only on an observation that cannot happen in the row's phase.
 */
export function decide(state: RowState, observation: Observation, now: number, random: number): Decision {
  const phase = PHASE_OF[observation.kind];
  if (phase !== undefined && state.attempt.phase !== phase) throw unexpected(state, observation);
  switch (observation.kind) {
    case 'started':
      return { state, action: { kind: 'take-row' } };
    case 'row-taken':
      return observation.alreadyDone ? { state, action: { kind: 'read-finished' } } : begin(state);
    case 'finished-read':
      return observation.result ? { state, action: { kind: 'complete-from-ledger', result: observation.result } } : begin(state);
    case 'reconciled':
      return observation.talkId === undefined ? prepareCreate(state) : startRender(state, observation.talkId, 'adopted', now);
    case 'name-reserved':
    case 'name-taken':
    case 'uploaded':
    case 'upload-failed':
    case 'budget-reserved':
    case 'budget-refused':
    case 'replica-unconfirmed':
      return onSubmitting(state, observation);
    case 'slot-taken':
    case 'slot-refused':
    case 'slot-waited':
    case 'slot-wait-aborted':
      return onSlot(state, observation, now);
    case 'created':
      return startRender(withWorker(state, { rateLimit: { ...state.worker.rateLimit, streak: 0 } }), observation.talkId, 'created', now);
    case 'create-failed':
      return onCreateFailed(state, observation.failure, now, random);
    case 'render-started':
      return onRenderStarted(state, now, random);
    case 'waited':
      return { state, action: { kind: 'poll', talkId: talkIdOf(state) } };
    case 'wait-aborted':
      if (!state.worker.stopping) return { state, action: { kind: 'retry', error: observation.error, ambiguous: false } };
      return { state, action: { kind: 'hand-back', delayMs: 0, why: 'stopping-while-rendering', checkpoint: state.checkpoint } };
    case 'talk-read':
    case 'talk-read-failed':
      // The same read serves the render wait (a poll) and the download (a fresh link).
      if (state.attempt.phase === 'rendering') return onLook(state, observation, now, random);
      if (state.attempt.phase === 'downloading') return onTalkReread(state, observation);
      throw unexpected(state, observation);
    case 'render-ended':
    case 'file-checked':
    case 'downloaded':
    case 'download-failed':
    case 'file-recorded':
      return onDownloading(state, observation, now);
  }
}

/** The phase each observation can only come in (talk reads come in two). */
const PHASE_OF: Record<Observation['kind'], Phase | undefined> = {
  started: 'taking',
  'row-taken': 'taking',
  'finished-read': 'taking',
  reconciled: 'submitting',
  'name-reserved': 'submitting',
  'name-taken': 'submitting',
  uploaded: 'submitting',
  'upload-failed': 'submitting',
  'budget-reserved': 'submitting',
  'budget-refused': 'submitting',
  'replica-unconfirmed': 'submitting',
  'slot-taken': 'submitting',
  'slot-refused': 'submitting',
  'slot-waited': 'submitting',
  'slot-wait-aborted': 'submitting',
  created: 'submitting',
  'create-failed': 'submitting',
  'render-started': 'rendering',
  waited: 'rendering',
  'wait-aborted': 'rendering',
  'talk-read': undefined,
  'talk-read-failed': undefined,
  'render-ended': 'downloading',
  'file-checked': 'downloading',
  downloaded: 'downloading',
  'download-failed': 'downloading',
  'file-recorded': 'downloading',
};

// ---- submitting: find the talk we may already have paid for, else create it ----------------------

/** Where a taken row starts: a create in flight is looked for first; a row with its talk waits for it. */
function begin(state: RowState): Decision {
  const { checkpoint } = state;
  if (checkpoint.step === 'submitting' || !checkpoint.talkId) {
    const next = withAttempt(state, { phase: 'submitting' });
    if (checkpoint.submitStartedAt === undefined) return prepareCreate(next);
    // A create was in flight when the last try ended: it may have happened.
    return { state: next, action: { kind: 'reconcile', notBefore: checkpoint.submitStartedAt - RECONCILE_LOOKBACK_MS } };
  }
  return startRender(state, checkpoint.talkId, 'resumed', undefined);
}

function prepareCreate(state: RowState): Decision {
  if (state.worker.stopping) return { state, action: { kind: 'hand-back', delayMs: 0, why: 'stopping' } };
  // Jobs from other BullMQ clients skipped the producer's reservation: the name is claimed here, before any spend.
  return { state, action: { kind: 'reserve-name' } };
}

type SubmittingObservation = Extract<
  Observation,
  { kind: 'name-reserved' | 'name-taken' | 'uploaded' | 'upload-failed' | 'budget-reserved' | 'budget-refused' | 'replica-unconfirmed' }
>;

function onSubmitting(state: RowState, observation: SubmittingObservation): Decision {
  const { facts } = state;
  switch (observation.kind) {
    case 'name-taken':
      return fail(state, {
        code: 'OUTPUT_NAME_TAKEN',
        kind: 'OutputNameTaken',
        description: `output name "${facts.outputName}" already belongs to row "${observation.owner}" of this batch; no talk was created`,
      });
    case 'name-reserved':
      // Before the budget and the create checkpoint: an upload is free, and a failed one must not look like a create in flight.
      if (!facts.localFiles) return { state, action: { kind: 'reserve-budget' } };
      if (!facts.canUpload) return { state, action: { kind: 'reject', message: 'LOCAL_FILE: this worker cannot upload local files' } };
      return { state, action: { kind: 'upload' } };
    case 'uploaded':
      return { state: withAttempt(state, { uploaded: observation.media }), action: { kind: 'reserve-budget' } };
    case 'upload-failed':
      return onUploadFailed(state, observation.failure);
    case 'budget-refused':
      return fail(state, {
        code: 'BUDGET_EXCEEDED',
        kind: 'BudgetExceeded',
        description: observation.verdict === 'max-talks' ? 'the batch reached its --max-talks budget; no talk was created' : 'the batch reached its --max-video-seconds budget; no talk was created',
      });
    case 'budget-reserved':
      // Everything a create needs is done: only now is one of the plan's render slots taken.
      return { state: withAttempt(state, { budgetReserved: true }), action: { kind: 'take-slot' } };
    case 'replica-unconfirmed':
      // A failover now could lose the checkpoint, and with it the reconciliation that prevents a second payment.
      return { state, action: { kind: 'hand-back', delayMs: REPLICA_WAIT_RETRY_MS, why: 'replica-unconfirmed' } };
  }
}

/** How long a row waits for a render slot before it asks again, when no freed slot wakes it sooner. */
export const SLOT_WAIT_MS = 500;

type SlotObservation = Extract<Observation, { kind: 'slot-taken' | 'slot-refused' | 'slot-waited' | 'slot-wait-aborted' }>;

function onSlot(state: RowState, observation: SlotObservation, now: number): Decision {
  const { checkpoint, facts } = state;
  switch (observation.kind) {
    case 'slot-taken': {
      const marked: WorkerState = { ...checkpoint, step: 'submitting', submitStartedAt: checkpoint.submitStartedAt ?? now };
      return {
        state: { ...state, checkpoint: marked },
        action: { kind: 'create', checkpoint: marked, confirmReplica: facts.replicaAck, uploaded: state.attempt.uploaded },
      };
    }
    case 'slot-refused':
      if (observation.why === 'cancelled') {
        return fail(state, { code: 'BATCH_CANCELLED', kind: 'BatchCancelled', description: 'the batch was cancelled before this row\'s talk was created; nothing was spent' }, true);
      }
      if (state.worker.stopping) return { state, action: { kind: 'hand-back', delayMs: 0, why: 'stopping' } };
      // A paused queue (an operator, or no credits) holds its rows in BullMQ, not in a worker's slot.
      if (observation.why === 'paused') return { state, action: { kind: 'hand-back', delayMs: 0, why: 'paused' } };
      return { state, action: { kind: 'await-slot', ms: observation.why === 'rate-limited' ? Math.max(1, observation.waitMs ?? SLOT_WAIT_MS) : SLOT_WAIT_MS } };
    case 'slot-waited':
      return { state, action: { kind: 'take-slot' } };
    case 'slot-wait-aborted':
      if (!state.worker.stopping) return { state, action: { kind: 'retry', error: observation.error, ambiguous: false } };
      return { state, action: { kind: 'hand-back', delayMs: 0, why: 'stopping' } };
  }
}

function onUploadFailed(state: RowState, failure: CallFailure): Decision {
  if (failure.kind === 'local-file') return fail(state, { code: 'LOCAL_FILE', kind: 'LocalFileError', description: failure.message });
  if (failure.kind === 'refused' && isKeyRefusal(failure.refusal)) {
    return { state, action: { kind: 'stop-worker', error: failure.error, delayMs: state.facts.settings.creditCheckMs } };
  }
  // D-ID refused the file itself (not an image, too large, moderation): asking again cannot help.
  if (failure.kind === 'refused' || failure.kind === 'no-credits') return fail(state, refusalFailure(failure.refusal));
  return { state, action: { kind: 'retry', error: failure.error, ambiguous: false } };
}

/** Only a certain refusal clears the create marker: anything else may have created the talk. */
function onCreateFailed(state: RowState, failure: CallFailure, now: number, random: number): Decision {
  const { settings } = state.facts;
  const { submitStartedAt: _cleared, ...rest } = state.checkpoint;
  const cleared: WorkerState = { ...rest, step: 'submitting' };
  const clearedState: RowState = { ...state, checkpoint: cleared };
  switch (failure.kind) {
    case 'rate-limited': {
      const { streak, until } = state.worker.rateLimit;
      const nextStreak = now >= until ? streak + 1 : streak;
      // A plan's render cap frees a slot as soon as any render finishes: start short, grow fast.
      const backoffMs = failure.retryAfterMs ?? withJitter(Math.min(10_000, 250 * 2 ** Math.min(nextStreak - 1, 6)), () => random);
      return {
        state: withWorker(clearedState, { rateLimit: { streak: nextStreak, until: Math.max(until, now + backoffMs) } }),
        action: { kind: 'rate-limit', checkpoint: cleared, backoffMs, queueMs: Math.max(backoffMs, 50) },
      };
    }
    case 'no-credits':
      return { state: clearedState, action: { kind: 'pause-for-credits', checkpoint: cleared, queueMs: Math.min(settings.creditCheckMs, 5_000), error: failure.error } };
    case 'refused':
      if (isKeyRefusal(failure.refusal)) {
        return { state: clearedState, action: { kind: 'stop-worker', error: failure.error, delayMs: settings.creditCheckMs, checkpoint: cleared } };
      }
      // 400, 403 PermissionError, 404, 451...: D-ID said no to this row; asking again cannot help.
      return fail(clearedState, refusalFailure(failure.refusal), state.attempt.budgetReserved);
    default: {
      // Ambiguous: the talk may exist. Keep submitStartedAt so the next try looks before it creates.
      const ambiguous = failure.kind === 'server' || failure.kind === 'unreachable' || failure.kind === 'malformed';
      return { state, action: { kind: 'retry', error: failure.error, ambiguous } };
    }
  }
}

/** 401, or a 403 that is not a plan-gated feature: the key is wrong, not the row. */
function isKeyRefusal(refusal: DidRefusal): boolean {
  return refusal.status === 401 || (refusal.status === 403 && refusal.didKind !== 'PermissionError');
}

function refusalFailure(refusal: DidRefusal): RowFailure {
  const details = failureDetails(refusal.details);
  return { code: refusal.code, kind: refusal.didKind, description: refusal.description, ...(details === undefined ? {} : { details }) };
}

// ---- rendering: poll (woken early by the webhook) until D-ID is done -----------------------------

function startRender(state: RowState, talkId: string, via: 'created' | 'adopted' | 'resumed', now: number | undefined): Decision {
  const attempt: Partial<Attempt> = { phase: 'rendering', tracked: true, created: via === 'created' };
  if (via === 'resumed' || now === undefined) return { state: withAttempt(state, attempt), action: { kind: 'start-render', talkId, via } };
  const checkpoint: WorkerState = { step: 'rendering', talkId, renderStartedAt: now, polls: 0, creates: state.checkpoint.creates + 1 };
  return { state: { ...withAttempt(state, attempt), checkpoint }, action: { kind: 'start-render', talkId, via, checkpoint } };
}

function onRenderStarted(state: RowState, now: number, random: number): Decision {
  const { pollMaxMs } = state.facts.settings;
  const waitStartedAt = state.checkpoint.renderStartedAt ?? now;
  const next = withAttempt(state, { waitStartedAt, pollFailures: 0 });
  const talkId = talkIdOf(state);
  // A talk created a moment ago is not done unless renders are near instant: once render times are
  // known, the first look waits until the talk can be due (or, with webhooks, for the webhook).
  const known = state.worker.renderWindow;
  if (state.attempt.created && known && known.low > dueStepMs(known, pollMaxMs)) {
    const ms = state.facts.receiver ? fallbackDelay(state, random) : pollDelay(state, known, now - waitStartedAt, 0);
    return { state: next, action: { kind: 'wait', talkId, ms } };
  }
  return { state: next, action: { kind: 'poll', talkId } };
}

/** A look at the talk while it renders: done, failed, or not yet. A failed look counts as "not yet" a few times. */
function onLook(state: RowState, observation: Extract<Observation, { kind: 'talk-read' | 'talk-read-failed' }>, now: number, random: number): Decision {
  if (observation.kind === 'talk-read') return afterLook(withAttempt(state, { pollFailures: 0 }), observation.talk, now, random);
  const { failure } = observation;
  const talkId = talkIdOf(state);
  if (failure.kind === 'refused' && failure.refusal.status === 404) {
    return fail(state, { code: failure.refusal.code, kind: 'TalkNotFound', description: `talk ${talkId} no longer exists at D-ID` });
  }
  if (failure.kind === 'refused' && (failure.refusal.status === 401 || failure.refusal.status === 403)) {
    return { state, action: { kind: 'stop-worker', error: failure.error, delayMs: state.facts.settings.creditCheckMs } };
  }
  const transient = failure.kind === 'rate-limited' || failure.kind === 'server' || failure.kind === 'unreachable' || failure.kind === 'malformed';
  const failures = state.attempt.pollFailures + 1;
  if (!transient || failures > MAX_POLL_FAILURES) return { state, action: { kind: 'retry', error: failure.error, ambiguous: false } };
  return afterLook(withAttempt(state, { pollFailures: failures }), undefined, now, random);
}

function afterLook(state: RowState, talk: Talk | undefined, now: number, random: number): Decision {
  const { settings } = state.facts;
  const talkId = talkIdOf(state);
  const startedAt = state.attempt.waitStartedAt ?? now;
  if (talk?.status === 'done') {
    return {
      state: withAttempt(state, { phase: 'downloading', tracked: false, talk }),
      action: { kind: 'end-render', renderMs: renderMsOf(talk) ?? now - startedAt },
    };
  }
  if (talk?.status === 'error' || talk?.status === 'rejected') return fail(state, talkFailure(talk));
  if (now - startedAt > settings.renderTimeoutMs) {
    return fail(state, { code: 'RENDER_TIMEOUT', kind: 'RenderTimeout', description: `talk ${talkId} not done after ${Math.round(settings.renderTimeoutMs / 1000)} s` });
  }
  const polls = state.checkpoint.polls + 1;
  const next: RowState = { ...state, checkpoint: { ...state.checkpoint, polls } };
  const window = state.worker.renderWindow;
  const ms = state.facts.receiver
    ? fallbackDelay(state, random)
    : window
      ? pollDelay(state, window, now - startedAt, polls)
      : withJitter(pollDelay(state, undefined, 0, polls), () => 0.5 + random / 2);
  return { state: next, action: { kind: 'wait', talkId, ms } };
}

function pollDelay(state: RowState, window: RenderWindow | undefined, elapsedMs: number, polls: number): number {
  const { pollInitialMs, pollMaxMs } = state.facts.settings;
  return nextPollDelay({ elapsedMs, polls, window, initialMs: pollInitialMs, maxMs: pollMaxMs });
}

/** With webhooks on, polling is only the fallback: slow, three times the poll ceiling. */
function fallbackDelay(state: RowState, random: number): number {
  return withJitter(state.facts.settings.pollMaxMs * 3, () => 0.5 + random / 2);
}

function talkFailure(talk: Talk): RowFailure {
  const detail = talk.error;
  const details = failureDetails(detail !== undefined && 'details' in detail ? detail.details : undefined);
  return {
    code: talk.status === 'rejected' ? 'TALK_REJECTED' : 'TALK_ERROR',
    kind: detail?.kind ?? (talk.status === 'rejected' ? 'Rejected' : 'UnknownError'),
    description: detail?.description ?? `talk ended with status ${talk.status}`,
    ...(details === undefined ? {} : { details }),
  };
}

/** How long D-ID took to render a finished talk, by its own clock (created_at → modified_at). */
function renderMsOf(talk: Talk): number | undefined {
  if (!talk.created_at || !talk.modified_at) return undefined;
  const ms = parseDidTime(talk.modified_at) - parseDidTime(talk.created_at);
  return Number.isFinite(ms) && ms >= 0 ? ms : undefined;
}

// ---- downloading: verified, atomic; a refused link is renewed by re-reading the talk -------------

/** The finished talk read again for a fresh link. */
function onTalkReread(state: RowState, observation: Extract<Observation, { kind: 'talk-read' | 'talk-read-failed' }>): Decision {
  if (observation.kind === 'talk-read-failed') return { state, action: { kind: 'retry', error: observation.failure.error, ambiguous: false } };
  const next = withAttempt(state, { talk: observation.talk });
  if (!observation.talk.result_url) return { state: next, action: { kind: 'retry-malformed', message: `talk ${talkIdOf(state)} is done but has no result_url` } };
  return { state: next, action: { kind: 'check-file' } };
}

type DownloadingObservation = Extract<Observation, { kind: 'render-ended' | 'file-checked' | 'downloaded' | 'download-failed' | 'file-recorded' }>;

function onDownloading(state: RowState, observation: DownloadingObservation, now: number): Decision {
  const talkId = talkIdOf(state);
  switch (observation.kind) {
    case 'render-ended':
      return nextDownload(state);
    case 'file-checked': {
      // A file already at the path counts as this row's only when the ledger says this row's talk wrote it.
      const { record } = observation;
      if (record !== undefined && record.rowKey !== state.facts.rowKey) {
        return fail(state, {
          code: 'OUTPUT_NAME_TAKEN',
          kind: 'OutputNameTaken',
          description: `output file "${state.facts.outputName}" was written by row "${record.rowKey}" of this batch; not overwritten`,
        });
      }
      const url = state.attempt.talk?.result_url;
      if (!url) return { state, action: { kind: 'retry-malformed', message: `talk ${talkId} is done but has no result_url` } };
      const owned = record !== undefined && record.talkId === talkId ? { owned: record.sha256 } : {};
      return { state, action: { kind: 'download', url, ...owned } };
    }
    case 'downloaded':
      return { state: withAttempt(state, { file: observation.file }), action: { kind: 'record-file', talkId, file: observation.file } };
    case 'download-failed':
      return onDownloadFailed(state, observation);
    case 'file-recorded':
      return markDone(state, now);
  }
}

function nextDownload(state: RowState): Decision {
  if (!state.attempt.talk?.result_url) return { state, action: { kind: 'read-talk', talkId: talkIdOf(state) } };
  return { state, action: { kind: 'check-file' } };
}

function onDownloadFailed(state: RowState, observation: Extract<Observation, { kind: 'download-failed' }>): Decision {
  // The same name fails every try.
  if (observation.reason === 'file-name') return fail(state, { code: observation.code, kind: 'OutputNameUnusable', description: observation.message });
  const tries = state.attempt.downloadTries + 1;
  let talk = state.attempt.talk;
  // Every failure but a short body may come from a stale link: fetch a fresh one next time.
  if (talk && observation.reason !== 'truncated' && observation.reason !== 'network') {
    const { result_url: _stale, ...rest } = talk;
    talk = rest;
  }
  const next = withAttempt(state, { downloadTries: tries, ...(talk ? { talk } : {}) });
  if (tries >= MAX_DOWNLOAD_TRIES) return { state: next, action: { kind: 'retry', error: observation.error, ambiguous: false } };
  return nextDownload(next);
}

function markDone(state: RowState, now: number): Decision {
  const { talk, file } = state.attempt;
  if (!talk || !file) throw new Error('decide: file-recorded before a file was downloaded');
  const { renderStartedAt } = state.checkpoint;
  const result: RowResult = {
    status: 'done',
    talkId: talkIdOf(state),
    file: file.path,
    bytes: file.bytes,
    sha256: file.sha256,
    videoSeconds: typeof talk.duration === 'number' ? talk.duration : null,
    renderSeconds: renderStartedAt ? Math.round((now - renderStartedAt) / 100) / 10 : null,
    finishedAt: new Date(now).toISOString(),
  };
  const { ownWebhook, receiver } = state.facts;
  // D-ID called talkbatch instead of the row's own URL; its view names talkbatch's receiver, so the row sees its own URL.
  const rowWebhook = ownWebhook !== undefined && receiver ? { rowWebhook: { url: ownWebhook, talk: { ...talk, webhook: ownWebhook } } } : {};
  return { state, action: { kind: 'mark-done', result, finishedAt: now, resumed: file.resumed, ...rowWebhook } };
}

// ---- helpers -------------------------------------------------------------------------------------

function fail(state: RowState, failure: RowFailure, releaseBudget = false): Decision {
  return { state: { ...state, checkpoint: { ...state.checkpoint, failure } }, action: { kind: 'fail', failure, checkpoint: state.checkpoint, releaseBudget } };
}

function withAttempt(state: RowState, changes: Partial<Attempt>): RowState {
  return { ...state, attempt: { ...state.attempt, ...changes } };
}

function withWorker(state: RowState, changes: Partial<WorkerView>): RowState {
  return { ...state, worker: { ...state.worker, ...changes } };
}

function talkIdOf(state: RowState): string {
  const { talkId } = state.checkpoint;
  if (talkId === undefined) throw new Error(`decide: no talk id in step ${state.checkpoint.step}`);
  return talkId;
}

function unexpected(state: RowState, observation: Observation): Error {
  return new Error(`decide: "${observation.kind}" cannot happen while ${state.attempt.phase}`);
}
