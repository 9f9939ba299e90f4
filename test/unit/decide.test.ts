import { describe, expect, it } from 'vitest';
import { DidApiError, DidPaymentRequiredError, type Talk } from '../../src/did/index.js';
import type { WorkerState } from '../../src/queue/payload.js';
import {
  decide,
  startState,
  type Action,
  type Attempt,
  type CallFailure,
  type Observation,
  type RowFacts,
  type RowState,
  type WorkerView,
} from '../../src/worker/decide.js';

const NOW = Date.parse('2025-03-01T12:00:00.000Z');
const T0 = NOW - 60_000;
const TALK_ID = 'tlk_1';
const URL = 'https://d-id-talks-prod.s3.us-west-2.amazonaws.com/result.mp4?sig=1';
const SETTINGS = { pollInitialMs: 1_000, pollMaxMs: 4_000, renderTimeoutMs: 600_000, creditCheckMs: 30_000 };
const FACTS: RowFacts = { settings: SETTINGS, rowKey: 'row1', outputName: 'row1.mp4', receiver: false, localFiles: false, canUpload: true, replicaAck: false };
/** Recent renders took 2-3 s (poll-schedule.ts): a fresh talk is first looked at when the quickest would be done. */
const WINDOW = { low: 2_000, median: 2_500, high: 3_000 };

const FRESH: WorkerState = { step: 'submitting', polls: 0, creates: 0 };
const IN_FLIGHT: WorkerState = { ...FRESH, submitStartedAt: T0 };
const RENDERING: WorkerState = { step: 'rendering', talkId: TALK_ID, renderStartedAt: NOW - 5_000, polls: 2, creates: 1 };
const DONE_TALK: Talk = { id: TALK_ID, status: 'done', created_at: '2025-03-01T11:59:55.000Z', modified_at: '2025-03-01T11:59:57.500Z', result_url: URL, duration: 4.2 };
const FILE = { path: '/out/b1/row1.mp4', bytes: 17_116, sha256: 'ab'.repeat(32), resumed: false };

interface Given {
  checkpoint?: WorkerState;
  attempt?: Partial<Attempt>;
  worker?: Partial<WorkerView>;
  facts?: Partial<RowFacts>;
}

function given({ checkpoint = FRESH, attempt = {}, worker = {}, facts = {} }: Given = {}): RowState {
  const base = startState(checkpoint, { ...FACTS, ...facts }, { rateLimit: { streak: 0, until: 0 }, renderWindow: undefined, stopping: false, ...worker });
  return { ...base, attempt: { ...base.attempt, ...attempt } };
}

const submitting = (more: Given = {}): RowState => given({ checkpoint: FRESH, ...more, attempt: { phase: 'submitting', ...more.attempt } });
/** Budget reserved and the create marker saved: the state a create answer comes back to. */
const creating = (more: Given = {}): RowState => given({ checkpoint: IN_FLIGHT, ...more, attempt: { phase: 'submitting', budgetReserved: true, ...more.attempt } });
const rendering = (more: Given = {}): RowState =>
  given({ checkpoint: RENDERING, ...more, attempt: { phase: 'rendering', tracked: true, waitStartedAt: NOW - 5_000, ...more.attempt } });
const downloading = (more: Given = {}): RowState => given({ checkpoint: RENDERING, ...more, attempt: { phase: 'downloading', talk: DONE_TALK, ...more.attempt } });

function didError(status: number, body: unknown, headers: Record<string, string> = {}): DidApiError {
  return DidApiError.fromResponse(status, JSON.stringify(body), headers);
}

/** D-ID's answer as decide sees it (processor.ts describes the real error the same way). */
function refused(status: number, didKind: string, description: string, details?: unknown): CallFailure {
  const error = didError(status, { kind: didKind, description, ...(details === undefined ? {} : { details }) });
  const refusal = { status, code: error.code, didKind, description, ...(details === undefined ? {} : { details }) };
  return error instanceof DidPaymentRequiredError ? { kind: 'no-credits', refusal, error } : { kind: 'refused', refusal, error };
}

const KEY_REFUSED = refused(401, 'AuthorizationError', 'user unauthenticated');
const MALFORMED_KEY = refused(403, 'Http403', 'Authorization header requires \'Credential\' parameter');
const PLAN_GATED = refused(403, 'PermissionError', 'user has no permission for stitch');
const INVALID = refused(400, 'ValidationError', 'invalid request', { script: { input: 'too short' } });
const MODERATED = refused(451, 'TextModerationError', 'text moderation failed');
const NO_CREDITS = refused(402, 'InsufficientCreditsError', 'not enough credits');
const NOT_FOUND = refused(404, 'NotFoundError', 'talk not found');
const GATEWAY_504 = { kind: 'server', status: 504, error: didError(504, { message: 'Endpoint request timed out' }) } satisfies CallFailure;
const SERVER_500 = { kind: 'server', status: 500, error: didError(500, { kind: 'InternalServerError', description: 'boom' }) } satisfies CallFailure;
const TIMED_OUT = { kind: 'unreachable', error: new Error('D-ID POST /talks timed out after 30000 ms') } satisfies CallFailure;
const MALFORMED = { kind: 'malformed', error: new Error('answered 201 with a body that is not JSON') } satisfies CallFailure;
const RANDOM_ERROR = { kind: 'other', error: new Error('ECONNRESET from Redis') } satisfies CallFailure;
const rateLimited = (retryAfterMs?: number): CallFailure => ({ kind: 'rate-limited', ...(retryAfterMs === undefined ? {} : { retryAfterMs }), error: didError(429, { kind: 'TooManyRequests', description: 'slow down' }) });
const RATE_LIMITED = rateLimited();

const failure = (code: string, kind: string, description: string, details?: string) => ({ code, kind, description, ...(details === undefined ? {} : { details }) });
const CLEARED: WorkerState = { step: 'submitting', polls: 0, creates: 0 };
const startedRender = (creates: number): WorkerState => ({ step: 'rendering', talkId: TALK_ID, renderStartedAt: NOW, polls: 0, creates });

interface Row {
  name: string;
  state: RowState;
  observed: Observation;
  now?: number;
  random?: number;
  /** The action decide must ask for. */
  action: Action;
  /** Parts of the state decide must leave behind (toMatchObject). */
  next?: Record<string, unknown>;
}

const rows: Row[] = [
  // ---- taking the job -------------------------------------------------------------------------------
  { name: 'a job taken first joins its batch ledger', state: given(), observed: { kind: 'started' }, action: { kind: 'take-row' } },
  { name: 'a row the ledger has done is read from the ledger', state: given(), observed: { kind: 'row-taken', alreadyDone: true }, action: { kind: 'read-finished' } },
  {
    name: 'a done row completes from the ledger, paying nothing',
    state: given(),
    observed: { kind: 'finished-read', result: { status: 'done', talkId: TALK_ID, file: FILE.path, bytes: 1, sha256: 'x', videoSeconds: 2, renderSeconds: 3, finishedAt: 'then' } },
    action: { kind: 'complete-from-ledger', result: { status: 'done', talkId: TALK_ID, file: FILE.path, bytes: 1, sha256: 'x', videoSeconds: 2, renderSeconds: 3, finishedAt: 'then' } },
  },
  { name: 'a "done" row with no ledger entry is made after all', state: given(), observed: { kind: 'finished-read' }, action: { kind: 'reserve-name' }, next: { attempt: { phase: 'submitting' } } },
  { name: 'a new row claims its output name first', state: given(), observed: { kind: 'row-taken', alreadyDone: false }, action: { kind: 'reserve-name' }, next: { attempt: { phase: 'submitting' } } },
  {
    name: 'resumed in submitting with a create in flight: reconcile first, looking 10 min before the attempt',
    state: given({ checkpoint: IN_FLIGHT }),
    observed: { kind: 'row-taken', alreadyDone: false },
    action: { kind: 'reconcile', notBefore: T0 - 600_000 },
  },
  {
    name: 'resumed while D-ID renders: count the talk as rendering again, no new checkpoint',
    state: given({ checkpoint: RENDERING }),
    observed: { kind: 'row-taken', alreadyDone: false },
    action: { kind: 'start-render', talkId: TALK_ID, via: 'resumed' },
    next: { attempt: { phase: 'rendering', tracked: true, created: false }, checkpoint: RENDERING },
  },
  {
    name: 'a rendering checkpoint without a talk id submits',
    state: given({ checkpoint: { step: 'rendering', polls: 0, creates: 0 } }),
    observed: { kind: 'row-taken', alreadyDone: false },
    action: { kind: 'reserve-name' },
  },
  { name: 'a stopping worker hands a new row back before spending', state: given({ worker: { stopping: true } }), observed: { kind: 'row-taken', alreadyDone: false }, action: { kind: 'hand-back', delayMs: 0, why: 'stopping' } },

  // ---- reconciling an ambiguous create ---------------------------------------------------------------
  {
    name: 'reconcile found the talk: adopt it, no second create',
    state: submitting({ checkpoint: { ...IN_FLIGHT, creates: 2 } }),
    observed: { kind: 'reconciled', talkId: TALK_ID },
    action: { kind: 'start-render', talkId: TALK_ID, via: 'adopted', checkpoint: startedRender(3) },
    next: { attempt: { phase: 'rendering', tracked: true, created: false }, checkpoint: startedRender(3) },
  },
  { name: 'reconcile found nothing: create, name first', state: submitting({ checkpoint: IN_FLIGHT }), observed: { kind: 'reconciled' }, action: { kind: 'reserve-name' } },
  {
    name: 'reconcile found nothing while stopping: hand back, the marker kept',
    state: submitting({ checkpoint: IN_FLIGHT, worker: { stopping: true } }),
    observed: { kind: 'reconciled' },
    action: { kind: 'hand-back', delayMs: 0, why: 'stopping' },
    next: { checkpoint: IN_FLIGHT },
  },

  // ---- before the create: name, uploads, budget ------------------------------------------------------
  {
    name: 'output name owned by another row fails the row before any spend',
    state: submitting(),
    observed: { kind: 'name-taken', owner: 'row9' },
    action: {
      kind: 'fail',
      failure: failure('OUTPUT_NAME_TAKEN', 'OutputNameTaken', 'output name "row1.mp4" already belongs to row "row9" of this batch; no talk was created'),
      checkpoint: FRESH,
      releaseBudget: false,
    },
  },
  { name: 'nothing to upload: reserve the budget', state: submitting(), observed: { kind: 'name-reserved' }, action: { kind: 'reserve-budget' } },
  { name: 'local files: upload them first (free, and no create marker yet)', state: submitting({ facts: { localFiles: true } }), observed: { kind: 'name-reserved' }, action: { kind: 'upload' } },
  {
    name: 'local files and no upload cache: fail without a failure record',
    state: submitting({ facts: { localFiles: true, canUpload: false } }),
    observed: { kind: 'name-reserved' },
    action: { kind: 'reject', message: 'LOCAL_FILE: this worker cannot upload local files' },
  },
  {
    name: 'uploaded: the URLs go to the create',
    state: submitting({ facts: { localFiles: true } }),
    observed: { kind: 'uploaded', media: { sourceUrl: 's3://d-id/img.png' } },
    action: { kind: 'reserve-budget' },
    next: { attempt: { uploaded: { sourceUrl: 's3://d-id/img.png' } } },
  },
  {
    name: 'an unreadable local file fails the row',
    state: submitting(),
    observed: { kind: 'upload-failed', failure: { kind: 'local-file', message: 'not a JPEG or PNG: /data/x.gif', error: new Error('x') } },
    action: { kind: 'fail', failure: failure('LOCAL_FILE', 'LocalFileError', 'not a JPEG or PNG: /data/x.gif'), checkpoint: FRESH, releaseBudget: false },
  },
  {
    name: 'upload answered 401: stop the worker, hand the row back',
    state: submitting({ checkpoint: IN_FLIGHT }),
    observed: { kind: 'upload-failed', failure: KEY_REFUSED },
    action: { kind: 'stop-worker', error: KEY_REFUSED.error as DidApiError, delayMs: 30_000 },
  },
  {
    name: 'upload refused by D-ID (451): fail with its kind',
    state: submitting(),
    observed: { kind: 'upload-failed', failure: MODERATED },
    action: { kind: 'fail', failure: failure('DID_MODERATION', 'TextModerationError', 'text moderation failed'), checkpoint: FRESH, releaseBudget: false },
  },
  {
    name: 'upload answered 403 PermissionError: a row problem',
    state: submitting(),
    observed: { kind: 'upload-failed', failure: PLAN_GATED },
    action: { kind: 'fail', failure: failure('DID_AUTH', 'PermissionError', 'user has no permission for stitch'), checkpoint: FRESH, releaseBudget: false },
  },
  {
    name: 'upload answered 402: fails the row like any refusal of the file',
    state: submitting(),
    observed: { kind: 'upload-failed', failure: NO_CREDITS },
    action: { kind: 'fail', failure: failure('DID_NO_CREDITS', 'InsufficientCreditsError', 'not enough credits'), checkpoint: FRESH, releaseBudget: false },
  },
  { name: 'upload answered 429: retry', state: submitting(), observed: { kind: 'upload-failed', failure: RATE_LIMITED }, action: { kind: 'retry', error: RATE_LIMITED.error, ambiguous: false } },
  { name: 'upload got a 500: retry', state: submitting(), observed: { kind: 'upload-failed', failure: SERVER_500 }, action: { kind: 'retry', error: SERVER_500.error, ambiguous: false } },
  {
    name: 'budget spent (--max-talks): fail, no talk',
    state: submitting(),
    observed: { kind: 'budget-refused', verdict: 'max-talks' },
    action: { kind: 'fail', failure: failure('BUDGET_EXCEEDED', 'BudgetExceeded', 'the batch reached its --max-talks budget; no talk was created'), checkpoint: FRESH, releaseBudget: false },
  },
  {
    name: 'budget spent (--max-video-seconds): fail, no talk',
    state: submitting(),
    observed: { kind: 'budget-refused', verdict: 'max-video-seconds' },
    action: {
      kind: 'fail',
      failure: failure('BUDGET_EXCEEDED', 'BudgetExceeded', 'the batch reached its --max-video-seconds budget; no talk was created'),
      checkpoint: FRESH,
      releaseBudget: false,
    },
  },
  {
    name: 'budget reserved: everything a create needs is done, so only now take a render slot',
    state: submitting(),
    observed: { kind: 'budget-reserved' },
    action: { kind: 'take-slot' },
    next: { attempt: { budgetReserved: true }, checkpoint: FRESH },
  },
  {
    name: 'slot taken: checkpoint the create marker, then create',
    state: submitting({ attempt: { budgetReserved: true, uploaded: { audioUrl: 's3://d-id/a.mp3' } } }),
    observed: { kind: 'slot-taken' },
    action: { kind: 'create', checkpoint: { ...FRESH, submitStartedAt: NOW }, confirmReplica: false, uploaded: { audioUrl: 's3://d-id/a.mp3' } },
    next: { checkpoint: { ...FRESH, submitStartedAt: NOW } },
  },
  {
    name: 'a create after a fruitless reconcile keeps the first attempt time',
    state: submitting({ checkpoint: IN_FLIGHT, attempt: { budgetReserved: true } }),
    observed: { kind: 'slot-taken' },
    action: { kind: 'create', checkpoint: IN_FLIGHT, confirmReplica: false, uploaded: {} },
  },
  {
    name: 'behind Sentinel a replica confirms the marker before the create',
    state: submitting({ facts: { replicaAck: true }, attempt: { budgetReserved: true } }),
    observed: { kind: 'slot-taken' },
    action: { kind: 'create', checkpoint: { ...FRESH, submitStartedAt: NOW }, confirmReplica: true, uploaded: {} },
  },
  {
    name: 'every render slot held: wait for one to free (no marker saved, nothing spent)',
    state: submitting({ attempt: { budgetReserved: true } }),
    observed: { kind: 'slot-refused', why: 'full' },
    action: { kind: 'await-slot', ms: 500 },
    next: { checkpoint: FRESH },
  },
  {
    name: 'the queue backs off a 429: wait out the back-off before asking for a slot again',
    state: submitting({ attempt: { budgetReserved: true } }),
    observed: { kind: 'slot-refused', why: 'rate-limited', waitMs: 1_250 },
    action: { kind: 'await-slot', ms: 1_250 },
  },
  {
    name: 'the queue is paused (operator, credits): back to the queue, not held in a worker',
    state: submitting({ attempt: { budgetReserved: true } }),
    observed: { kind: 'slot-refused', why: 'paused' },
    action: { kind: 'hand-back', delayMs: 0, why: 'paused' },
  },
  {
    name: 'the batch was cancelled while the row waited for a slot: fail it, nothing created, budget given back',
    state: submitting({ attempt: { budgetReserved: true } }),
    observed: { kind: 'slot-refused', why: 'cancelled' },
    action: {
      kind: 'fail',
      failure: { code: 'BATCH_CANCELLED', kind: 'BatchCancelled', description: "the batch was cancelled before this row's talk was created; nothing was spent" },
      checkpoint: FRESH,
      releaseBudget: true,
    },
  },
  {
    name: 'no slot while the worker stops: hand the row back',
    state: submitting({ attempt: { budgetReserved: true }, worker: { stopping: true } }),
    observed: { kind: 'slot-refused', why: 'full' },
    action: { kind: 'hand-back', delayMs: 0, why: 'stopping' },
  },
  {
    name: 'a slot freed (or the wait ran out): ask again',
    state: submitting({ attempt: { budgetReserved: true } }),
    observed: { kind: 'slot-waited' },
    action: { kind: 'take-slot' },
  },
  {
    name: 'the wait for a slot cut short by the worker stopping: hand the row back',
    state: submitting({ attempt: { budgetReserved: true }, worker: { stopping: true } }),
    observed: { kind: 'slot-wait-aborted', error: new Error('worker shutting down') },
    action: { kind: 'hand-back', delayMs: 0, why: 'stopping' },
  },
  {
    name: 'the wait for a slot cut short by the row\'s own signal (lock lost): end the try',
    state: submitting({ attempt: { budgetReserved: true } }),
    observed: { kind: 'slot-wait-aborted', error: new Error('lost the lock') },
    action: { kind: 'retry', error: new Error('lost the lock'), ambiguous: false },
  },
  {
    name: 'no replica confirmed the marker: hand back, the marker kept for reconciling',
    state: creating(),
    observed: { kind: 'replica-unconfirmed' },
    action: { kind: 'hand-back', delayMs: 2_000, why: 'replica-unconfirmed' },
    next: { checkpoint: IN_FLIGHT },
  },

  // ---- the create's answer ----------------------------------------------------------------------------
  {
    name: 'create answered 201: count it as rendering, checkpoint the talk, end the 429 streak',
    state: creating({ worker: { rateLimit: { streak: 3, until: NOW - 1 } } }),
    observed: { kind: 'created', talkId: TALK_ID },
    action: { kind: 'start-render', talkId: TALK_ID, via: 'created', checkpoint: startedRender(1) },
    next: { attempt: { phase: 'rendering', tracked: true, created: true }, worker: { rateLimit: { streak: 0, until: NOW - 1 } }, checkpoint: startedRender(1) },
  },
  {
    name: '429 with Retry-After: clear the marker, back the whole queue off that long',
    state: creating(),
    observed: { kind: 'create-failed', failure: rateLimited(3_000) },
    action: { kind: 'rate-limit', checkpoint: CLEARED, backoffMs: 3_000, queueMs: 3_000 },
    next: { checkpoint: CLEARED, worker: { rateLimit: { streak: 1, until: NOW + 3_000 } } },
  },
  {
    name: '429 without Retry-After, first of a burst: 250 ms base, jittered',
    state: creating(),
    observed: { kind: 'create-failed', failure: RATE_LIMITED },
    random: 0.5,
    action: { kind: 'rate-limit', checkpoint: CLEARED, backoffMs: 188, queueMs: 188 },
    next: { worker: { rateLimit: { streak: 1, until: NOW + 188 } } },
  },
  {
    name: '429 in the same burst (back-off still running): the streak does not grow',
    state: creating({ worker: { rateLimit: { streak: 1, until: NOW + 100 } } }),
    observed: { kind: 'create-failed', failure: RATE_LIMITED },
    random: 0,
    action: { kind: 'rate-limit', checkpoint: CLEARED, backoffMs: 125, queueMs: 125 },
    next: { worker: { rateLimit: { streak: 1, until: NOW + 125 } } },
  },
  {
    name: '429s that keep coming after the back-off ran out: the back-off doubles',
    state: creating({ worker: { rateLimit: { streak: 3, until: NOW - 1 } } }),
    observed: { kind: 'create-failed', failure: RATE_LIMITED },
    random: 0,
    action: { kind: 'rate-limit', checkpoint: CLEARED, backoffMs: 1_000, queueMs: 1_000 },
    next: { worker: { rateLimit: { streak: 4, until: NOW + 1_000 } } },
  },
  {
    name: 'the 429 back-off is capped at 10 s',
    state: creating({ worker: { rateLimit: { streak: 20, until: NOW - 1 } } }),
    observed: { kind: 'create-failed', failure: RATE_LIMITED },
    random: 0.999_999,
    action: { kind: 'rate-limit', checkpoint: CLEARED, backoffMs: 10_000, queueMs: 10_000 },
  },
  {
    name: 'a tiny Retry-After still rate-limits the queue for 50 ms',
    state: creating(),
    observed: { kind: 'create-failed', failure: rateLimited(10) },
    action: { kind: 'rate-limit', checkpoint: CLEARED, backoffMs: 10, queueMs: 50 },
  },
  {
    name: '402: clear the marker, pause for credits, back off at most 5 s',
    state: creating(),
    observed: { kind: 'create-failed', failure: NO_CREDITS },
    action: { kind: 'pause-for-credits', checkpoint: CLEARED, queueMs: 5_000, error: NO_CREDITS.error as DidPaymentRequiredError },
  },
  {
    name: '402 with a short credit check: back off that long',
    state: creating({ facts: { settings: { ...SETTINGS, creditCheckMs: 2_000 } } }),
    observed: { kind: 'create-failed', failure: NO_CREDITS },
    action: { kind: 'pause-for-credits', checkpoint: CLEARED, queueMs: 2_000, error: NO_CREDITS.error as DidPaymentRequiredError },
  },
  {
    name: '401: clear the marker, stop the worker, hand the row back for the credit-check time',
    state: creating(),
    observed: { kind: 'create-failed', failure: KEY_REFUSED },
    action: { kind: 'stop-worker', error: KEY_REFUSED.error as DidApiError, delayMs: 30_000, checkpoint: CLEARED },
  },
  {
    name: 'a malformed key (gateway 403): stop the worker',
    state: creating(),
    observed: { kind: 'create-failed', failure: MALFORMED_KEY },
    action: { kind: 'stop-worker', error: MALFORMED_KEY.error as DidApiError, delayMs: 30_000, checkpoint: CLEARED },
  },
  {
    name: '403 PermissionError (a plan-gated feature): fail the row, give the budget back',
    state: creating(),
    observed: { kind: 'create-failed', failure: PLAN_GATED },
    action: { kind: 'fail', failure: failure('DID_AUTH', 'PermissionError', 'user has no permission for stitch'), checkpoint: CLEARED, releaseBudget: true },
    next: { checkpoint: { ...CLEARED, failure: failure('DID_AUTH', 'PermissionError', 'user has no permission for stitch') } },
  },
  {
    name: '400 ValidationError: fail with D-ID\'s kind, description and details',
    state: creating(),
    observed: { kind: 'create-failed', failure: INVALID },
    action: {
      kind: 'fail',
      failure: failure('DID_BAD_REQUEST', 'ValidationError', 'invalid request', '{"script":{"input":"too short"}}'),
      checkpoint: CLEARED,
      releaseBudget: true,
    },
  },
  {
    name: '451 moderation: fail the row',
    state: creating(),
    observed: { kind: 'create-failed', failure: MODERATED },
    action: { kind: 'fail', failure: failure('DID_MODERATION', 'TextModerationError', 'text moderation failed'), checkpoint: CLEARED, releaseBudget: true },
  },
  {
    name: 'gateway 504 after the request was sent: ambiguous, the marker stays for the next try to reconcile',
    state: creating(),
    observed: { kind: 'create-failed', failure: GATEWAY_504 },
    action: { kind: 'retry', error: GATEWAY_504.error, ambiguous: true },
    next: { checkpoint: IN_FLIGHT },
  },
  { name: 'create timed out: ambiguous', state: creating(), observed: { kind: 'create-failed', failure: TIMED_OUT }, action: { kind: 'retry', error: TIMED_OUT.error, ambiguous: true }, next: { checkpoint: IN_FLIGHT } },
  { name: 'create answered 201 with a broken body: ambiguous', state: creating(), observed: { kind: 'create-failed', failure: MALFORMED }, action: { kind: 'retry', error: MALFORMED.error, ambiguous: true } },
  { name: 'any other error during the create: retry, marker kept', state: creating(), observed: { kind: 'create-failed', failure: RANDOM_ERROR }, action: { kind: 'retry', error: RANDOM_ERROR.error, ambiguous: false }, next: { checkpoint: IN_FLIGHT } },

  // ---- waiting for the render -------------------------------------------------------------------------
  {
    name: 'a fresh talk, render times unknown: look at once',
    state: given({ checkpoint: startedRender(1), attempt: { phase: 'rendering', tracked: true, created: true } }),
    observed: { kind: 'render-started' },
    action: { kind: 'poll', talkId: TALK_ID },
    next: { attempt: { waitStartedAt: NOW, pollFailures: 0 } },
  },
  {
    name: 'a fresh talk, render times known: first look when the quickest recent render would be done',
    state: rendering({ checkpoint: { ...startedRender(1), renderStartedAt: NOW - 100 }, attempt: { created: true }, worker: { renderWindow: WINDOW } }),
    observed: { kind: 'render-started' },
    action: { kind: 'wait', talkId: TALK_ID, ms: 1_900 },
  },
  {
    name: 'a fresh talk with the webhook on: wait for the webhook, the slow fallback poll behind it',
    state: rendering({ checkpoint: startedRender(1), attempt: { created: true }, worker: { renderWindow: WINDOW }, facts: { receiver: true } }),
    observed: { kind: 'render-started' },
    random: 0.5,
    action: { kind: 'wait', talkId: TALK_ID, ms: 10_500 },
  },
  {
    name: 'a resumed or adopted talk may be done already: look at once',
    state: rendering({ attempt: { created: false }, worker: { renderWindow: WINDOW } }),
    observed: { kind: 'render-started' },
    action: { kind: 'poll', talkId: TALK_ID },
    next: { attempt: { waitStartedAt: RENDERING.renderStartedAt } },
  },
  {
    name: 'near-instant renders: a fresh talk is looked at once',
    state: rendering({ checkpoint: startedRender(1), attempt: { created: true }, worker: { renderWindow: { low: 100, median: 2_500, high: 3_000 } } }),
    observed: { kind: 'render-started' },
    action: { kind: 'poll', talkId: TALK_ID },
  },
  { name: 'the webhook woke the row: look now', state: rendering(), observed: { kind: 'waited', woken: true }, action: { kind: 'poll', talkId: TALK_ID } },
  { name: 'the wait ran out: look', state: rendering(), observed: { kind: 'waited', woken: false }, action: { kind: 'poll', talkId: TALK_ID } },
  {
    name: 'shutdown during the wait: checkpoint the polls, hand the row back at once',
    state: rendering({ checkpoint: { ...RENDERING, polls: 7 }, worker: { stopping: true } }),
    observed: { kind: 'wait-aborted', error: new Error('worker closing') },
    action: { kind: 'hand-back', delayMs: 0, why: 'stopping-while-rendering', checkpoint: { ...RENDERING, polls: 7 } },
  },
  {
    name: 'the job\'s own signal ended the wait (lock lost): plain retry',
    state: rendering(),
    observed: { kind: 'wait-aborted', error: new Error('lock lost') },
    action: { kind: 'retry', error: new Error('lock lost'), ambiguous: false },
  },
  {
    name: 'not done, render times unknown: back off from the initial interval, jittered down to 3/4',
    state: rendering({ checkpoint: { ...RENDERING, polls: 0 } }),
    observed: { kind: 'talk-read', talk: { id: TALK_ID, status: 'started' } },
    random: 0.5,
    action: { kind: 'wait', talkId: TALK_ID, ms: 875 },
    next: { checkpoint: { ...RENDERING, polls: 1 } },
  },
  {
    name: 'not done after 4 looks: 1.5× per look',
    state: rendering({ checkpoint: { ...RENDERING, polls: 3 } }),
    observed: { kind: 'talk-read', talk: { id: TALK_ID, status: 'created' } },
    random: 0,
    action: { kind: 'wait', talkId: TALK_ID, ms: 2_531 },
    next: { checkpoint: { ...RENDERING, polls: 4 } },
  },
  {
    name: 'not done while due (render times known): look again every 2.5 % of the typical render',
    state: rendering({ attempt: { waitStartedAt: NOW - 2_100 }, worker: { renderWindow: WINDOW } }),
    observed: { kind: 'talk-read', talk: { id: TALK_ID, status: 'started' } },
    action: { kind: 'wait', talkId: TALK_ID, ms: 62.5 },
  },
  {
    name: 'not done with the webhook on: only the slow fallback poll',
    state: rendering({ facts: { receiver: true }, worker: { renderWindow: WINDOW } }),
    observed: { kind: 'talk-read', talk: { id: TALK_ID, status: 'started' } },
    random: 0,
    action: { kind: 'wait', talkId: TALK_ID, ms: 9_000 },
  },
  {
    name: 'done: remember D-ID\'s own render time, give the render slot back, download',
    state: rendering(),
    observed: { kind: 'talk-read', talk: DONE_TALK },
    action: { kind: 'end-render', renderMs: 2_500 },
    next: { attempt: { phase: 'downloading', tracked: false, talk: DONE_TALK } },
  },
  {
    name: 'done, D-ID times without a zone are UTC',
    state: rendering(),
    observed: { kind: 'talk-read', talk: { ...DONE_TALK, created_at: '2025-03-01T11:59:55.000', modified_at: '2025-03-01T11:59:58.000Z' } },
    action: { kind: 'end-render', renderMs: 3_000 },
  },
  {
    name: 'done without D-ID times: the render took as long as we waited',
    state: rendering({ attempt: { waitStartedAt: NOW - 4_321 } }),
    observed: { kind: 'talk-read', talk: { id: TALK_ID, status: 'done', result_url: URL } },
    action: { kind: 'end-render', renderMs: 4_321 },
  },
  {
    name: 'talk ended in error: fail with D-ID\'s kind, description and details',
    state: rendering(),
    observed: { kind: 'talk-read', talk: { id: TALK_ID, status: 'error', error: { kind: 'SourceError', description: 'no face', details: { source_url: 'x.mp4' } } } },
    action: { kind: 'fail', failure: failure('TALK_ERROR', 'SourceError', 'no face', '{"source_url":"x.mp4"}'), checkpoint: RENDERING, releaseBudget: false },
  },
  {
    name: 'talk ended in error without saying why',
    state: rendering(),
    observed: { kind: 'talk-read', talk: { id: TALK_ID, status: 'error' } },
    action: { kind: 'fail', failure: failure('TALK_ERROR', 'UnknownError', 'talk ended with status error'), checkpoint: RENDERING, releaseBudget: false },
  },
  {
    name: 'talk rejected by moderation',
    state: rendering(),
    observed: { kind: 'talk-read', talk: { id: TALK_ID, status: 'rejected', error: { kind: 'TextModerationError', description: 'flagged' } } },
    action: { kind: 'fail', failure: failure('TALK_REJECTED', 'TextModerationError', 'flagged'), checkpoint: RENDERING, releaseBudget: false },
  },
  {
    name: 'talk rejected without a reason',
    state: rendering(),
    observed: { kind: 'talk-read', talk: { id: TALK_ID, status: 'rejected' } },
    action: { kind: 'fail', failure: failure('TALK_REJECTED', 'Rejected', 'talk ended with status rejected'), checkpoint: RENDERING, releaseBudget: false },
  },
  {
    name: 'still rendering past the render timeout: fail',
    state: rendering({ attempt: { waitStartedAt: NOW - 600_001 } }),
    observed: { kind: 'talk-read', talk: { id: TALK_ID, status: 'started' } },
    action: { kind: 'fail', failure: failure('RENDER_TIMEOUT', 'RenderTimeout', 'talk tlk_1 not done after 600 s'), checkpoint: RENDERING, releaseBudget: false },
  },
  {
    name: 'the talk is gone at D-ID (404, expired): fail',
    state: rendering(),
    observed: { kind: 'talk-read-failed', failure: NOT_FOUND },
    action: { kind: 'fail', failure: failure('DID_NOT_FOUND', 'TalkNotFound', 'talk tlk_1 no longer exists at D-ID'), checkpoint: RENDERING, releaseBudget: false },
  },
  {
    name: 'a poll answered 401: stop the worker, hand back without a checkpoint',
    state: rendering(),
    observed: { kind: 'talk-read-failed', failure: KEY_REFUSED },
    action: { kind: 'stop-worker', error: KEY_REFUSED.error as DidApiError, delayMs: 30_000 },
  },
  {
    name: 'a poll answered 403 (any kind): the key, not the row',
    state: rendering(),
    observed: { kind: 'talk-read-failed', failure: PLAN_GATED },
    action: { kind: 'stop-worker', error: PLAN_GATED.error as DidApiError, delayMs: 30_000 },
  },
  {
    name: 'a poll got a 500: count it, poll on',
    state: rendering({ checkpoint: { ...RENDERING, polls: 0 } }),
    observed: { kind: 'talk-read-failed', failure: SERVER_500 },
    random: 0.5,
    action: { kind: 'wait', talkId: TALK_ID, ms: 875 },
    next: { attempt: { pollFailures: 1 }, checkpoint: { ...RENDERING, polls: 1 } },
  },
  {
    name: 'the 10th failed poll in a row still polls on',
    state: rendering({ attempt: { pollFailures: 9 }, worker: { renderWindow: WINDOW } }),
    observed: { kind: 'talk-read-failed', failure: TIMED_OUT },
    action: { kind: 'wait', talkId: TALK_ID, ms: 1_000 },
    next: { attempt: { pollFailures: 10 } },
  },
  {
    name: 'the 11th failed poll in a row ends the try',
    state: rendering({ attempt: { pollFailures: 10 } }),
    observed: { kind: 'talk-read-failed', failure: RATE_LIMITED },
    action: { kind: 'retry', error: RATE_LIMITED.error, ambiguous: false },
  },
  {
    name: 'a poll answered something not transient (400): retry',
    state: rendering(),
    observed: { kind: 'talk-read-failed', failure: INVALID },
    action: { kind: 'retry', error: (INVALID as { error: unknown }).error, ambiguous: false },
  },
  {
    name: 'a failed poll past the render timeout fails the row',
    state: rendering({ attempt: { waitStartedAt: NOW - 600_001 } }),
    observed: { kind: 'talk-read-failed', failure: MALFORMED },
    action: { kind: 'fail', failure: failure('RENDER_TIMEOUT', 'RenderTimeout', 'talk tlk_1 not done after 600 s'), checkpoint: RENDERING, releaseBudget: false },
  },
  {
    name: 'a good poll resets the failure count',
    state: rendering({ attempt: { pollFailures: 6 }, worker: { renderWindow: WINDOW } }),
    observed: { kind: 'talk-read', talk: { id: TALK_ID, status: 'started' } },
    action: { kind: 'wait', talkId: TALK_ID, ms: 1_000 },
    next: { attempt: { pollFailures: 0 } },
  },

  // ---- downloading -----------------------------------------------------------------------------------
  { name: 'render ended with a link: check who owns the file, then download', state: downloading(), observed: { kind: 'render-ended' }, action: { kind: 'check-file' } },
  {
    name: 'render ended without a link: read the talk for one',
    state: downloading({ attempt: { talk: { id: TALK_ID, status: 'done' } } }),
    observed: { kind: 'render-ended' },
    action: { kind: 'read-talk', talkId: TALK_ID },
  },
  {
    name: 'the re-read talk has a fresh link',
    state: downloading({ attempt: { talk: { id: TALK_ID, status: 'done' } } }),
    observed: { kind: 'talk-read', talk: DONE_TALK },
    action: { kind: 'check-file' },
    next: { attempt: { talk: DONE_TALK } },
  },
  {
    name: 'a done talk with no link at all: protocol error, retry',
    state: downloading({ attempt: { talk: { id: TALK_ID, status: 'done' } } }),
    observed: { kind: 'talk-read', talk: { id: TALK_ID, status: 'done' } },
    action: { kind: 'retry-malformed', message: 'talk tlk_1 is done but has no result_url' },
  },
  {
    name: 're-reading the talk failed (even a 401): plain retry',
    state: downloading(),
    observed: { kind: 'talk-read-failed', failure: KEY_REFUSED },
    action: { kind: 'retry', error: (KEY_REFUSED as { error: unknown }).error, ambiguous: false },
  },
  { name: 'no file at the path yet: download', state: downloading(), observed: { kind: 'file-checked' }, action: { kind: 'download', url: URL } },
  {
    name: 'this row\'s talk wrote the file already: keep it if its hash matches',
    state: downloading(),
    observed: { kind: 'file-checked', record: { rowKey: 'row1', talkId: TALK_ID, sha256: FILE.sha256 } },
    action: { kind: 'download', url: URL, owned: FILE.sha256 },
  },
  {
    name: 'an earlier talk of this row wrote the file: replace it',
    state: downloading(),
    observed: { kind: 'file-checked', record: { rowKey: 'row1', talkId: 'tlk_old', sha256: FILE.sha256 } },
    action: { kind: 'download', url: URL },
  },
  {
    name: 'another row wrote the file: fail, never overwrite',
    state: downloading(),
    observed: { kind: 'file-checked', record: { rowKey: 'row7', talkId: 'tlk_7', sha256: FILE.sha256 } },
    action: {
      kind: 'fail',
      failure: failure('OUTPUT_NAME_TAKEN', 'OutputNameTaken', 'output file "row1.mp4" was written by row "row7" of this batch; not overwritten'),
      checkpoint: RENDERING,
      releaseBudget: false,
    },
  },
  {
    name: 'downloaded: record the file as this row\'s',
    state: downloading(),
    observed: { kind: 'downloaded', file: FILE },
    action: { kind: 'record-file', talkId: TALK_ID, file: FILE },
    next: { attempt: { file: FILE } },
  },
  {
    name: 'the link expired (403): re-read the talk for a new one',
    state: downloading(),
    observed: { kind: 'download-failed', reason: 'expired', code: 'DOWNLOAD_FAILED', message: 'link expired', error: new Error('expired') },
    action: { kind: 'read-talk', talkId: TALK_ID },
    next: { attempt: { downloadTries: 1, talk: { id: TALK_ID, status: 'done', duration: 4.2 } } },
  },
  {
    name: 'the link answered another HTTP error: re-read the talk',
    state: downloading({ attempt: { downloadTries: 1 } }),
    observed: { kind: 'download-failed', reason: 'http', code: 'DOWNLOAD_FAILED', message: '500', error: new Error('http') },
    action: { kind: 'read-talk', talkId: TALK_ID },
    next: { attempt: { downloadTries: 2 } },
  },
  {
    name: 'a body cut short: resume from the same link',
    state: downloading(),
    observed: { kind: 'download-failed', reason: 'truncated', code: 'DOWNLOAD_FAILED', message: 'short', error: new Error('short') },
    action: { kind: 'check-file' },
    next: { attempt: { downloadTries: 1, talk: DONE_TALK } },
  },
  {
    name: 'a network error: try the same link again',
    state: downloading({ attempt: { downloadTries: 2 } }),
    observed: { kind: 'download-failed', reason: 'network', code: 'DOWNLOAD_FAILED', message: 'reset', error: new Error('reset') },
    action: { kind: 'check-file' },
  },
  {
    name: 'the 4th failed download ends the try with its error',
    state: downloading({ attempt: { downloadTries: 3 } }),
    observed: { kind: 'download-failed', reason: 'expired', code: 'DOWNLOAD_FAILED', message: 'link expired', error: new Error('expired 4') },
    action: { kind: 'retry', error: new Error('expired 4'), ambiguous: false },
  },
  {
    name: 'a name the file system refuses: fail at once',
    state: downloading(),
    observed: { kind: 'download-failed', reason: 'file-name', code: 'DOWNLOAD_FAILED', message: 'ENAMETOOLONG', error: new Error('x') },
    action: { kind: 'fail', failure: failure('DOWNLOAD_FAILED', 'OutputNameUnusable', 'ENAMETOOLONG'), checkpoint: RENDERING, releaseBudget: false },
  },
  {
    name: 'file recorded: mark the row done with its result',
    state: downloading({ attempt: { file: FILE } }),
    observed: { kind: 'file-recorded' },
    action: {
      kind: 'mark-done',
      result: { status: 'done', talkId: TALK_ID, file: FILE.path, bytes: FILE.bytes, sha256: FILE.sha256, videoSeconds: 4.2, renderSeconds: 5, finishedAt: '2025-03-01T12:00:00.000Z' },
      finishedAt: NOW,
      resumed: false,
    },
  },
  {
    name: 'file recorded, talkbatch took D-ID\'s webhook: call the row\'s own, with its own URL in the talk',
    state: downloading({ attempt: { file: { ...FILE, resumed: true } }, facts: { receiver: true, ownWebhook: 'https://crm.example/hook' } }),
    observed: { kind: 'file-recorded' },
    now: NOW + 1_234,
    action: {
      kind: 'mark-done',
      result: { status: 'done', talkId: TALK_ID, file: FILE.path, bytes: FILE.bytes, sha256: FILE.sha256, videoSeconds: 4.2, renderSeconds: 6.2, finishedAt: '2025-03-01T12:00:01.234Z' },
      finishedAt: NOW + 1_234,
      resumed: true,
      rowWebhook: { url: 'https://crm.example/hook', talk: { ...DONE_TALK, webhook: 'https://crm.example/hook' } },
    },
  },
  {
    name: 'file recorded, D-ID called the row\'s own webhook itself: nothing more to call',
    state: downloading({ checkpoint: { step: 'rendering', talkId: TALK_ID, polls: 0, creates: 1 }, attempt: { file: FILE, talk: { id: TALK_ID, status: 'done', result_url: URL } }, facts: { ownWebhook: 'https://crm.example/hook' } }),
    observed: { kind: 'file-recorded' },
    action: {
      kind: 'mark-done',
      result: { status: 'done', talkId: TALK_ID, file: FILE.path, bytes: FILE.bytes, sha256: FILE.sha256, videoSeconds: null, renderSeconds: null, finishedAt: '2025-03-01T12:00:00.000Z' },
      finishedAt: NOW,
      resumed: false,
    },
  },
];

describe('decide: every transition of a row', () => {
  it.each(rows)('$name', ({ state, observed, now = NOW, random = 0.5, action, next }) => {
    const decision = decide(state, observed, now, random);
    expect(decision.action).toStrictEqual(action);
    if (next) expect(decision.state).toMatchObject(next);
  });

  it('is pure: the same inputs give the same decision and the input state is left as it was', () => {
    const state = rendering({ checkpoint: { ...RENDERING, polls: 0 } });
    const before = structuredClone(state);
    const observed: Observation = { kind: 'talk-read', talk: { id: TALK_ID, status: 'started' } };
    expect(decide(state, observed, NOW, 0.25)).toStrictEqual(decide(state, observed, NOW, 0.25));
    expect(state).toStrictEqual(before);
  });

  it.each<[string, RowState, Observation]>([
    ['a talk read while submitting', submitting(), { kind: 'talk-read', talk: DONE_TALK }],
    ['a create answer while rendering', rendering(), { kind: 'created', talkId: TALK_ID }],
    ['a download result while rendering', rendering(), { kind: 'downloaded', file: FILE }],
    ['a webhook wake while downloading', downloading(), { kind: 'waited', woken: true }],
    ['a ledger answer after the row was taken', submitting(), { kind: 'row-taken', alreadyDone: false }],
  ])('refuses an observation that cannot happen: %s', (_name, state, observed) => {
    expect(() => decide(state, observed, NOW, 0.5)).toThrow(/cannot happen while/);
  });
});

/** Feeds decide what the world answers and returns the actions it asked for, as the processor would run them. */
function walk(state: RowState, observations: Observation[], now = NOW): Action['kind'][] {
  const kinds: Action['kind'][] = [];
  let current = state;
  for (const observation of observations) {
    const decision = decide(current, observation, now, 0.5);
    kinds.push(decision.action.kind);
    current = decision.state;
  }
  return kinds;
}

describe('decide: whole tries', () => {
  it('a new row: create, wait, download, done', () => {
    const observations: Observation[] = [
      { kind: 'started' },
      { kind: 'row-taken', alreadyDone: false },
      { kind: 'name-reserved' },
      { kind: 'budget-reserved' },
      { kind: 'slot-refused', why: 'full' },
      { kind: 'slot-waited' },
      { kind: 'slot-taken' },
      { kind: 'created', talkId: TALK_ID },
      { kind: 'render-started' },
      { kind: 'talk-read', talk: { id: TALK_ID, status: 'started' } },
      { kind: 'waited', woken: true },
      { kind: 'talk-read', talk: DONE_TALK },
      { kind: 'render-ended' },
      { kind: 'file-checked' },
      { kind: 'downloaded', file: FILE },
      { kind: 'file-recorded' },
    ];
    expect(walk(startState(undefined, FACTS, { rateLimit: { streak: 0, until: 0 }, renderWindow: undefined, stopping: false }), observations)).toEqual([
      'take-row',
      'reserve-name',
      'reserve-budget',
      'take-slot',
      'await-slot',
      'take-slot',
      'create',
      'start-render',
      'poll',
      'wait',
      'poll',
      'end-render',
      'check-file',
      'download',
      'record-file',
      'mark-done',
    ]);
  });

  it('a row killed after its create was sent: the next try finds the talk and never creates again', () => {
    const first = walk(given(), [{ kind: 'started' }, { kind: 'row-taken', alreadyDone: false }, { kind: 'name-reserved' }, { kind: 'budget-reserved' }, { kind: 'slot-taken' }]);
    expect(first.at(-1)).toBe('create');
    // The worker died here; the checkpoint the create action saved is what the next try starts from.
    const afterCrash = given({ checkpoint: { ...FRESH, submitStartedAt: NOW } });
    expect(walk(afterCrash, [{ kind: 'started' }, { kind: 'row-taken', alreadyDone: false }, { kind: 'reconciled', talkId: TALK_ID }, { kind: 'render-started' }])).toEqual([
      'take-row',
      'reconcile',
      'start-render',
      'poll',
    ]);
  });

  it('an expired link three times, then a good download', () => {
    const expired: Observation = { kind: 'download-failed', reason: 'expired', code: 'DOWNLOAD_FAILED', message: 'expired', error: new Error('expired') };
    const fresh: Observation = { kind: 'talk-read', talk: DONE_TALK };
    expect(
      walk(downloading(), [
        { kind: 'render-ended' },
        { kind: 'file-checked' },
        expired,
        fresh,
        { kind: 'file-checked' },
        expired,
        fresh,
        { kind: 'file-checked' },
        expired,
        fresh,
        { kind: 'file-checked' },
        { kind: 'downloaded', file: FILE },
      ]),
    ).toEqual(['check-file', 'download', 'read-talk', 'check-file', 'download', 'read-talk', 'check-file', 'download', 'read-talk', 'check-file', 'download', 'record-file']);
  });
});
