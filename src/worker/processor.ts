import { join, relative } from 'node:path';
import { DelayedError, RateLimitError, UnrecoverableError, type Job, type Queue } from 'bullmq';
import type { Config } from '../config/index.js';
import { DidApiError, DidConnectionError, DidPaymentRequiredError, DidProtocolError, DidRateLimitError, DidServerError, type DidClient } from '../did/index.js';
import { DownloadError, downloadVerified } from '../download/downloader.js';
import { outputPathFor } from '../download/paths.js';
import type { BatchStore } from '../queue/batches.js';
import type { RedisClient } from '../queue/connections.js';
import { HeldJob, LockLostError } from '../queue/job-lock.js';
import type { ReplicaAck } from '../queue/replica-ack.js';
import { rowCredits } from '../queue/credits.js';
import { createTalkBody, JobPayloadV1, scriptText, talkTagFor, userDataFor, type JobPayload, type RowResult, type UploadedMedia, type WorkerState } from '../queue/payload.js';
import type { Logger } from '../shared/logger.js';
import type { AdaptiveConcurrency } from './adaptive-concurrency.js';
import { decide, startState, type Action, type CallFailure, type DidRefusal, type Observation, type RateLimitMemory, type RowFacts, type RowState } from './decide.js';
import type { PreviewJob } from './preview-worker.js';
import { RenderTimes } from './poll-schedule.js';
import type { RenderCacheProbe } from '../queue/render-cache-store.js';
import type { RenderCache } from './render-cache.js';
import type { RenderTracker } from './render-tracker.js';
import type { SlotKeeper } from './slot-keeper.js';
import { LocalFileError, type UploadCache } from './uploads.js';
import type { Wakeups } from './wakeups.js';

export { FAILURE_DETAILS_MAX, failureDetails, type RowFailure } from './decide.js';


export interface ProcessorDeps {
  config: Config;
  did: DidClient;
  queue: Queue;
  /** The worker's Redis connection: checkpoints are written only while BullMQ's lock on the job is this try's. */
  redis: RedisClient;
  batches: BatchStore;
  logger: Logger;
  wakeups: Wakeups;
  concurrency: AdaptiveConcurrency;
  /** Our talks D-ID is rendering now, across all workers. */
  rendering: RenderTracker;
  /** The render slots every worker shares: held from just before a create until the talk is seen finished. */
  slots: SlotKeeper;
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
  /** Identical requests rendered before (any batch) are copied, not paid again (src/worker/render-cache.ts). */
  renderCache?: RenderCache;
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
type Step = Observation | RowResult;
type ActionOf<K extends Action['kind']> = Extract<Action, { kind: K }>;

/** What one worker process remembers across its rows. */
interface ProcessorMemory {
  rateLimit: RateLimitMemory;
  /** What D-ID's renders took lately, so polls land when a talk is due (poll-schedule.ts). */
  renderTimes: RenderTimes;
}

function parsePayload(job: TalkJob): JobPayload {
  const parsed = JobPayloadV1.safeParse(job.data);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  throw new UnrecoverableError(`PAYLOAD_INVALID: ${issue ? `${issue.path.join('.') || 'payload'}: ${issue.message}` : 'invalid payload'}`);
}

/** A failed call as plain data for decide; the error itself travels along to be thrown or reported. */
function describeFailure(error: unknown): CallFailure {
  if (error instanceof DidRateLimitError) return { kind: 'rate-limited', ...(error.retryAfterMs === undefined ? {} : { retryAfterMs: error.retryAfterMs }), error };
  if (error instanceof DidServerError) return { kind: 'server', status: error.status, error };
  if (error instanceof DidPaymentRequiredError) return { kind: 'no-credits', refusal: refusalOf(error), error };
  if (error instanceof DidApiError) return { kind: 'refused', refusal: refusalOf(error), error };
  if (error instanceof DidConnectionError) return { kind: 'unreachable', error };
  if (error instanceof DidProtocolError) return { kind: 'malformed', error };
  if (error instanceof LocalFileError) return { kind: 'local-file', message: error.message, error };
  return { kind: 'other', error };
}

function refusalOf(error: DidApiError): DidRefusal {
  return { status: error.status, code: error.code, didKind: error.kind, description: error.description, ...(error.details === undefined ? {} : { details: error.details }) };
}

function factsFor(deps: ProcessorDeps, payload: JobPayload, jobId: string): RowFacts {
  const { config } = deps;
  const { talk } = payload;
  const audioFile = 'audio_file' in talk.script ? talk.script.audio_file : undefined;
  return {
    settings: { pollInitialMs: config.pollInitialMs, pollMaxMs: config.pollMaxMs, renderTimeoutMs: config.renderTimeoutMs, creditCheckMs: config.creditCheckMs },
    rowKey: payload.rowKey,
    outputName: payload.output.name,
    receiver: Boolean(deps.webhookUrlFor?.(jobId)),
    ...(talk.webhook === undefined ? {} : { ownWebhook: talk.webhook }),
    localFiles: talk.source_file !== undefined || talk.source_link !== undefined || audioFile !== undefined,
    canUpload: deps.uploads !== undefined,
    replicaAck: deps.replicaAck !== undefined,
  };
}

function previewJobFor(payload: JobPayload, file: string): PreviewJob {
  const title = payload.input.share_title?.trim();
  const message = payload.input.share_message?.trim();
  return { batchId: payload.batchId, rowKey: payload.rowKey, file, ...(title ? { title } : {}), ...(message ? { message } : {}) };
}

/**
 * One try at one row: asks `decide` what to do, does it, tells `decide` what happened, until the row is
 * done or the try ends. The only place where a row's outcome becomes a queue signal (DelayedError,
 * RateLimitError, UnrecoverableError, or a plain retryable throw).
 */
class RowRun {
  #state: RowState;
  /** Render cache (issue 17): this row's request, looked up (and claimed) inside the takeRow script. */
  #cacheProbe: RenderCacheProbe | undefined;
  readonly #jobId: string;
  readonly #log: Logger;
  readonly #call: { signal?: AbortSignal };
  /**
   * A worker cut off from Redis past the lock duration comes back to a row another worker took over: what it
   * learnt meanwhile is not written (job-lock.ts), and BullMQ refuses its completion.
   */
  readonly #held: HeldJob<JobPayload>;
  /** This try holds one of the shared render slots. */
  #slot = false;
  /** Handed back while D-ID renders: the talk keeps its place in the render count and its slot for the next try. */
  #handedOverRendering = false;

  constructor(
    private readonly deps: ProcessorDeps,
    private readonly memory: ProcessorMemory,
    private readonly job: TalkJob,
    private readonly payload: JobPayload,
    private readonly token: string | undefined,
    private readonly signal: AbortSignal | undefined,
  ) {
    this.#jobId = job.id ?? '';
    this.#log = deps.logger.child({ jobId: this.#jobId, batchId: payload.batchId, rowKey: payload.rowKey });
    this.#call = signal ? { signal } : {};
    this.#held = new HeldJob(deps.redis, deps.queue, job, token, deps.config.lockMs);
    this.#state = startState(payload.state, factsFor(deps, payload, this.#jobId), this.#workerView());
  }

  async run(): Promise<RowResult> {
    let step: Step = { kind: 'started' };
    let lostRow = false;
    try {
      for (;;) {
        step = await this.#execute(this.#decide(step));
        if ('status' in step) return step;
      }
    } catch (error) {
      lostRow = error instanceof LockLostError;
      // The ledger hears of a final failure before BullMQ does: a worker that dies in between leaves a row the
      // ledger calls failed (its batch can finish), never a failed job the ledger still counts as running.
      if (this.#endsTheRow(error)) await this.deps.batches.markFailed(this.payload.batchId, this.payload.rowKey);
      throw error;
    } finally {
      await this.#leaveSlot(lostRow || this.signal?.aborted === true);
    }
  }

  /**
   * Whatever ended the try, the talk no longer holds one of our render slots. A try that lost its row keeps its
   * hands off the slot and the render count: the worker that took the row over holds them now. A failure here
   * must not replace the try's own signal (DelayedError, RateLimitError...): the lease frees the slot anyway.
   */
  async #leaveSlot(lostRow: boolean): Promise<void> {
    try {
      if (lostRow || this.#handedOverRendering) {
        if (this.#slot) this.deps.slots.forget(this.#jobId);
        this.#slot = false;
        return;
      }
      // Giving the slot back takes the talk off the render count too (one script); without a slot, only the count.
      if (this.#slot) await this.#releaseSlot();
      else if (this.#state.attempt.tracked) await this.deps.rendering.remove(this.#jobId);
    } catch (error) {
      this.#log.warn({ err: error instanceof Error ? error.message : String(error) }, 'could not give the render slot back; its lease frees it');
    }
  }

  /** Whether BullMQ will move the job to failed for this error instead of trying it again or holding it. */
  #endsTheRow(error: unknown): boolean {
    if (error instanceof DelayedError || error instanceof RateLimitError) return false;
    // Not this try's row any more (lost lock; create-worker.ts aborts the signal then): its holder decides.
    if (error instanceof LockLostError || this.signal?.aborted === true) return false;
    if (error instanceof UnrecoverableError) return true;
    return this.job.attemptsMade + 1 >= (this.job.opts.attempts ?? 1);
  }

  #workerView(): RowState['worker'] {
    return { rateLimit: this.memory.rateLimit, renderWindow: this.memory.renderTimes.window(), stopping: this.deps.handback.aborted };
  }

  #decide(observation: Observation): Action {
    const decision = decide({ ...this.#state, worker: this.#workerView() }, observation, Date.now(), Math.random());
    this.#state = decision.state;
    this.memory.rateLimit = decision.state.worker.rateLimit;
    return decision.action;
  }

  #execute(action: Action): Promise<Step> {
    switch (action.kind) {
      case 'take-row':
        return this.#takeRow();
      case 'read-finished':
        return this.#readFinished();
      case 'complete-from-ledger':
        this.#log.info({ talkId: action.result.talkId }, 'row already done in its batch; not made again');
        return Promise.resolve(action.result);
      case 'reconcile':
        return this.#reconcile(action);
      case 'reserve-name':
        return this.#reserveName();
      case 'upload':
        return this.#upload();
      case 'reserve-budget':
        return this.#reserveBudget();
      case 'take-slot':
        return this.#takeSlot();
      case 'await-slot':
        return this.#awaitSlot(action.ms);
      case 'create':
        return this.#create(action);
      case 'start-render':
        return this.#startRender(action);
      case 'wait':
        return this.#wait(action);
      case 'poll':
      case 'read-talk':
        return this.#readTalk(action.talkId);
      case 'end-render':
        return this.#endRender(action);
      case 'check-file':
        return this.#checkFile();
      case 'download':
        return this.#download(action);
      case 'record-file':
        return this.#recordFile(action);
      case 'mark-done':
        return this.#markDone(action);
      default:
        return this.#endTry(action);
    }
  }

  /** The actions that end the try with a BullMQ signal or a plain (retryable) throw. */
  async #endTry(action: ActionOf<'fail' | 'reject' | 'rate-limit' | 'pause-for-credits' | 'stop-worker' | 'hand-back' | 'retry' | 'retry-malformed'>): Promise<never> {
    switch (action.kind) {
      case 'fail':
        return this.#fail(action);
      case 'reject':
        throw new UnrecoverableError(action.message);
      case 'rate-limit':
        await this.deps.concurrency.onRateLimited(await this.deps.rendering.count(), () => this.deps.rendering.count());
        this.#log.warn({ wait: action.backoffMs, concurrency: this.deps.concurrency.current }, 'D-ID rate limit (429): backing off the whole queue');
        await this.#save(action.checkpoint);
        await this.deps.queue.rateLimit(action.queueMs);
        throw new RateLimitError();
      case 'pause-for-credits':
        await this.#save(action.checkpoint);
        await this.deps.onCreditsExhausted(action.error);
        await this.deps.queue.rateLimit(action.queueMs);
        throw new RateLimitError();
      case 'stop-worker':
        if (action.checkpoint) await this.#save(action.checkpoint);
        this.deps.onAuthFailure(action.error);
        return this.#handBack(action.delayMs);
      case 'hand-back':
        if (action.checkpoint) await this.#save(action.checkpoint);
        if (action.why === 'replica-unconfirmed') this.#log.warn('no Redis replica confirmed the checkpoint in time; handing the row back before creating its talk');
        if (action.why === 'paused') this.#log.debug('queue paused while the row waited for a render slot; back to the queue');
        if (action.why === 'stopping-while-rendering') this.#log.info({ talkId: this.#state.checkpoint.talkId }, 'handing the row back while D-ID renders');
        return this.#handBack(action.delayMs);
      case 'retry':
        if (action.ambiguous) this.#log.warn({ err: (action.error as Error).message }, 'create failed ambiguously; the next try reconciles first');
        throw action.error;
      case 'retry-malformed':
        throw new DidProtocolError(action.message);
    }
  }

  async #save(next: WorkerState): Promise<void> {
    await this.#held.updateData({ ...this.job.data, state: next });
  }

  async #fail(action: ActionOf<'fail'>): Promise<never> {
    const { details } = action.failure;
    const failure = details === undefined ? action.failure : { ...action.failure, details: this.deps.did.redact(details) };
    if (action.releaseBudget) {
      await this.#save(action.checkpoint);
      await this.deps.batches.releaseBudget(this.payload.batchId, this.#budgetMember(), this.#budgetSeconds());
    }
    await this.#save({ ...action.checkpoint, failure });
    throw new UnrecoverableError(`${failure.kind}: ${failure.description}`);
  }

  /** Give the slot back without burning an attempt; the checkpoint says where to go on. */
  async #handBack(delayMs: number): Promise<never> {
    // Settled before the job moves: once it has, another worker may resume it and take the same slot (job id).
    if (this.#state.attempt.tracked) this.#handedOverRendering = true;
    else await this.#leaveSlot(false);
    await this.deps.batches.markReleased(this.payload.batchId, this.payload.rowKey);
    await this.job.moveToDelayed(Date.now() + delayMs, this.token);
    throw new DelayedError();
  }

  // ---- taking and submitting ---------------------------------------------------------------------

  async #takeRow(): Promise<Step> {
    const { batchId, rowKey, line } = this.payload;
    // A job added by another BullMQ client (docs/api.md) joins its batch's ledger the first time a worker sees it.
    this.#cacheProbe = await this.deps.renderCache?.probeFor(this.#jobId, this.payload, this.signal);
    const taken = await this.deps.batches.takeRow(batchId, { rowKey, line: line ?? 0 }, this.#cacheProbe);
    if (taken === 'new') await this.deps.batches.create(batchId, 'bullmq');
    return { kind: 'row-taken', alreadyDone: taken === 'done' };
  }

  /** A copy of a row finished earlier (its job already removed, talk-queue.ts): answer from the ledger, pay nothing. */
  async #readFinished(): Promise<Step> {
    const { batchId, rowKey } = this.payload;
    const [finished] = await this.deps.batches.finishedRows(batchId, [rowKey]);
    if (!finished) return { kind: 'finished-read' };
    const result: RowResult = {
      status: 'done',
      talkId: finished.talkId,
      file: join(this.deps.config.outDir, batchId, finished.file),
      bytes: finished.bytes,
      sha256: finished.sha256,
      videoSeconds: finished.videoSeconds,
      renderSeconds: finished.renderSeconds,
      finishedAt: new Date(finished.finishedAt).toISOString(),
    };
    return { kind: 'finished-read', result };
  }

  #tag(): string {
    return talkTagFor(this.#jobId, this.payload.generation);
  }

  async #reconcile(action: ActionOf<'reconcile'>): Promise<Step> {
    const userData = userDataFor(this.payload.talk.user_data, this.#tag());
    const found = await this.deps.did.findTalkByUserData(userData, { window: this.deps.config.reconcileWindow, notBefore: action.notBefore, ...this.#call });
    return found ? { kind: 'reconciled', talkId: found.id } : { kind: 'reconciled' };
  }

  async #reserveName(): Promise<Step> {
    // Render cache (issue 17), the first step towards a create: done from an identical earlier render (no talk), handed
    // back while an identical row renders (no slot held), or the talk of a lapsed claimant adopted (nothing paid twice).
    const cached = await this.deps.renderCache?.beforeCreate({ job: this.job, payload: this.payload, probe: this.#cacheProbe, signal: this.signal });
    if (cached?.kind === 'done') return cached.result;
    if (cached?.kind === 'wait') return this.#handBack(cached.delayMs);
    if (cached?.kind === 'adopt') return { kind: 'reconciled', talkId: cached.talkId };
    const { batchId, rowKey, output } = this.payload;
    const names = await this.deps.batches.reserveNames(batchId, [{ name: output.name, rowKey }]);
    return names.ok ? { kind: 'name-reserved' } : { kind: 'name-taken', owner: names.owner };
  }

  async #upload(): Promise<Step> {
    const { config, uploads } = this.deps;
    const { talk } = this.payload;
    const audioFile = 'audio_file' in talk.script ? talk.script.audio_file : undefined;
    if (!uploads) throw new Error('upload asked of a worker without an upload cache');
    try {
      const media: UploadedMedia = {};
      if (talk.source_file !== undefined) media.sourceUrl = await uploads.urlFor('image', talk.source_file, this.#call);
      if (talk.source_link !== undefined) {
        media.sourceUrl = await uploads.urlForLink(talk.source_link, { allow: config.outboundAllow }, { ...this.#call, timeoutMs: config.downloadTimeoutMs });
      }
      if (audioFile !== undefined) media.audioUrl = await uploads.urlFor('audio', audioFile, this.#call);
      return { kind: 'uploaded', media };
    } catch (error) {
      return { kind: 'upload-failed', failure: describeFailure(error) };
    }
  }

  #budgetMember(): string {
    return `${this.payload.rowKey}#${this.payload.generation}`;
  }

  #budgetSeconds(): number {
    return this.payload.estimatedSeconds ?? 0;
  }

  async #reserveBudget(): Promise<Step> {
    const verdict = await this.deps.batches.reserveBudget(this.payload.batchId, this.#budgetMember(), this.#budgetSeconds());
    return verdict === 'ok' ? { kind: 'budget-reserved' } : { kind: 'budget-refused', verdict };
  }

  async #create(action: ActionOf<'create'>): Promise<Step> {
    await this.#save(action.checkpoint);
    if (action.confirmReplica && this.deps.replicaAck && !(await this.deps.replicaAck.confirm())) return { kind: 'replica-unconfirmed' };
    // With talkbatch's receiver on, D-ID calls talkbatch, which calls the row's own webhook once the file is on disk.
    const webhook = this.deps.webhookUrlFor?.(this.#jobId) ?? this.payload.talk.webhook;
    try {
      const created = await this.deps.did.createTalk(createTalkBody(this.payload.talk, this.#tag(), webhook, action.uploaded), this.#call);
      return { kind: 'created', talkId: created.id };
    } catch (error) {
      return { kind: 'create-failed', failure: describeFailure(error) };
    }
  }

  async #takeSlot(): Promise<Step> {
    const verdict = await this.deps.slots.take(this.#jobId, this.payload.batchId);
    if (verdict.kind === 'taken') {
      this.#slot = true;
      return { kind: 'slot-taken' };
    }
    return verdict.kind === 'rate-limited' ? { kind: 'slot-refused', why: verdict.kind, waitMs: verdict.waitMs } : { kind: 'slot-refused', why: verdict.kind };
  }

  async #awaitSlot(ms: number): Promise<Step> {
    try {
      await this.deps.slots.wait(ms, [this.deps.handback, this.signal]);
      return { kind: 'slot-waited' };
    } catch (error) {
      return { kind: 'slot-wait-aborted', error };
    }
  }

  async #releaseSlot(): Promise<void> {
    this.#slot = false;
    await this.deps.slots.release(this.#jobId);
  }

  // ---- rendering ---------------------------------------------------------------------------------

  async #startRender(action: ActionOf<'start-render'>): Promise<Step> {
    // Counted as rendering before anything else is awaited: a 429 answered to a create sent at the
    // same moment reads this count as the plan's render cap (adaptive concurrency).
    // An adopted or resumed talk renders at D-ID already: it holds a slot whatever the count.
    await Promise.all([this.deps.rendering.add(this.#jobId), this.#slot ? undefined : this.deps.slots.take(this.#jobId, this.payload.batchId, true).then(() => (this.#slot = true))]);
    if (action.via === 'created') {
      await this.deps.concurrency.onCreated();
      this.#log.debug({ talkId: action.talkId }, 'talk created');
    }
    if (action.via === 'adopted') this.#log.info({ talkId: action.talkId }, 'adopted talk created by an earlier try');
    if (action.checkpoint) await this.#save(action.checkpoint);
    return { kind: 'render-started' };
  }

  /** Waits, or less if woken (the webhook); the worker stopping or the job's signal cuts it short. */
  async #wait(action: ActionOf<'wait'>): Promise<Step> {
    try {
      return { kind: 'waited', woken: await this.deps.wakeups.wait(this.#jobId, action.ms, [this.deps.handback, this.signal]) };
    } catch (error) {
      return { kind: 'wait-aborted', error };
    }
  }

  async #readTalk(talkId: string): Promise<Step> {
    try {
      return { kind: 'talk-read', talk: await this.deps.did.getTalk(talkId, this.#call) };
    } catch (error) {
      this.#log.debug({ err: (error as Error).message, failures: this.#state.attempt.pollFailures + 1 }, 'reading the talk failed');
      return { kind: 'talk-read-failed', failure: describeFailure(error) };
    }
  }

  async #endRender(action: ActionOf<'end-render'>): Promise<Step> {
    const wasKnown = this.memory.renderTimes.window() !== undefined;
    this.memory.renderTimes.record(action.renderMs);
    // The first renders of a run are waited for on the generic back-off (1 s, then × 1.5): once a few are
    // timed, the rows still sleeping on it look now and then follow the render times (poll-schedule.ts).
    if (!wasKnown && this.memory.renderTimes.window() !== undefined) this.deps.wakeups.wakeAllHere();
    // One call: the slot back, the talk off the render count, every worker told (render-slots.ts).
    await this.#releaseSlot();
    return { kind: 'render-ended' };
  }

  // ---- downloading -------------------------------------------------------------------------------

  async #checkFile(): Promise<Step> {
    // Nothing is written unless the row is still ours: else the worker that has it writes the file, once.
    const [record] = await Promise.all([this.deps.batches.fileRecord(this.payload.batchId, this.payload.output.name), this.#held.check()]);
    return record === undefined ? { kind: 'file-checked' } : { kind: 'file-checked', record };
  }

  async #download(action: ActionOf<'download'>): Promise<Step> {
    const path = outputPathFor(this.deps.config.outDir, this.payload.batchId, this.payload.output.name);
    const owned = action.owned === undefined ? {} : { owned: { sha256: action.owned } };
    try {
      const file = await downloadVerified(action.url, path, { timeoutMs: this.deps.config.downloadTimeoutMs, ...owned, ...this.#call });
      return { kind: 'downloaded', file: { path: file.path, bytes: file.bytes, sha256: file.sha256, resumed: file.resumed } };
    } catch (error) {
      if (!(error instanceof DownloadError)) throw error;
      if (error.reason !== 'file-name') {
        const attempt = this.#state.attempt.downloadTries + 1;
        this.#log.warn({ talkId: this.#state.checkpoint.talkId, attempt, reason: error.reason, err: error.message }, 'download failed');
      }
      return { kind: 'download-failed', reason: error.reason, code: error.code, message: error.message, error };
    }
  }

  async #recordFile(action: ActionOf<'record-file'>): Promise<Step> {
    const { batchId, rowKey, output } = this.payload;
    // The download may have outlasted the lock (Redis unreachable meanwhile): the outcome is recorded by its holder.
    await this.#held.check();
    await this.deps.batches.recordFile(batchId, output.name, { rowKey, talkId: action.talkId, sha256: action.file.sha256 });
    // Before markDone, so a batch that reads as finished already lists this row's preview as pending.
    if (this.deps.requestPreview) await this.deps.requestPreview(previewJobFor(this.payload, action.file.path));
    return { kind: 'file-recorded' };
  }

  async #markDone(action: ActionOf<'mark-done'>): Promise<RowResult> {
    // The billing rule on the length D-ID reported (videoSeconds is the talk's duration), else the estimate (queue/credits.ts).
    const spent = rowCredits(this.payload, action.result.videoSeconds);
    const result: RowResult = { ...action.result, ...spent };
    const { batchId, rowKey } = this.payload;
    const file = relative(join(this.deps.config.outDir, batchId), result.file);
    // What the report shows of the row once BullMQ drops its completed job (talk-queue.ts).
    await this.deps.batches.markDone(batchId, rowKey, {
      talkId: result.talkId,
      file,
      bytes: result.bytes,
      sha256: result.sha256,
      videoSeconds: result.videoSeconds,
      renderSeconds: result.renderSeconds,
      // BullMQ counts this attempt once the job moves to completed.
      attempts: this.job.attemptsMade + 1,
      script: scriptText(this.payload.talk.script),
      input: this.payload.input,
      enqueuedAt: this.job.timestamp || null,
      finishedAt: action.finishedAt,
      ...spent,
    },
    // Render cache (issue 17): the verified file becomes the entry for this request in the same script call.
    await this.deps.renderCache?.recordFor(this.#jobId, this.payload, { talkId: result.talkId, path: result.file, bytes: result.bytes, sha256: result.sha256, videoSeconds: result.videoSeconds }, this.#cacheProbe));
    if (action.rowWebhook) {
      const { url, talk } = action.rowWebhook;
      this.deps.onRowWebhook?.({ batchId, rowKey, jobId: this.#jobId, url, talkId: result.talkId, file, sha256: result.sha256, bytes: result.bytes, talk });
    }
    this.#log.debug({ talkId: result.talkId, bytes: result.bytes, resumed: action.resumed }, 'row done');
    return result;
  }
}

/**
 * The step machine of one row (submit, wait for the render, download), driven by `decide` (decide.ts).
 * Errors become queue signals here and nowhere else.
 */
export function createProcessor(deps: ProcessorDeps) {
  // 429s in one burst are one signal; the back-off only grows when 429s keep coming after the previous one ran out.
  const memory: ProcessorMemory = { rateLimit: { streak: 0, until: 0 }, renderTimes: new RenderTimes() };
  return async function processTalk(job: TalkJob, token?: string, signal?: AbortSignal): Promise<RowResult> {
    return new RowRun(deps, memory, job, parsePayload(job), token, signal).run();
  };
}
