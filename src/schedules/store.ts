import { createHash, randomBytes } from 'node:crypto';
import { Queue, type JobSchedulerJson, type JobSchedulerTemplateOptions, type RepeatOptions } from 'bullmq';
import type { Config } from '../config/index.js';
import { ManifestError, formatIssue, openManifest, type ManifestRow, type OpenedManifest, type SourceOptions } from '../manifest/index.js';
import type { Logger } from '../shared/logger.js';
import { connectRedis, createRedis, type RedisClient } from '../queue/connections.js';
import { jobIdFor } from '../queue/payload.js';
import { enqueueRows } from '../queue/producer.js';
import {
  ScheduleDefinition,
  TICK_JOB_NAME,
  TickData,
  manifestOptionsOf,
  scheduleQueueName,
  tickStamp,
  type ScheduleTiming,
  type TickDataInput,
} from './spec.js';
import type { QueueHandle } from '../queue/talk-queue.js';

/*
 * Schedules: BullMQ job schedulers on `<queue>-schedules` (same prefix) produce one tick job per run; a schedule
 * worker (worker.ts) turns each tick into a batch of the rows that are new since earlier runs.
 *
 * Per schedule, next to BullMQ's keys:
 *   <prefix>:<queue>-schedules:schedule:<name>:made   hash rowKey -> "<talk hash> <batchId>" (rows made so far)
 *   <prefix>:<queue>-schedules:schedule:<name>:runs   list of recent runs, newest first, capped at RUNS_KEPT
 *   <prefix>:<queue>-schedules:schedule:<name>:lock   held while a tick runs, so two ticks never race over a row
 *
 * A row is marked "pending <batchId> <hash>" before its job is added and "<hash> <batchId>" after. A tick that died in
 * between leaves a pending mark; the next tick looks for the job (or its done mark) and only re-adds the row when
 * the job never got there. So a crash can neither lose a row nor pay for it twice.
 */

export const RUNS_KEPT = 50;
/** A tick holds its lock this long at a time, renewed while it works: a dead worker's lock soon lapses. */
const LOCK_TTL_MS = 60_000;
const TICK_JOB_OPTIONS: JobSchedulerTemplateOptions = { attempts: 1, removeOnComplete: { count: 100 }, removeOnFail: { count: 100 } };

export interface ScheduleRun {
  /** When the tick started (ISO). */
  at: string;
  trigger: 'schedule' | 'manual';
  /** The batch this run made, or null (nothing new, or it failed). */
  batchId: string | null;
  /** Rows enqueued in this run's batch (changed ones included). */
  added: number;
  /** Of `added`: rows made before whose D-ID body changed (with remakeChanged). */
  changed: number;
  /** Valid rows skipped because earlier runs made them. */
  skipped: number;
  /** Rows left out as invalid (only with allowPartial; otherwise the run fails). */
  invalid: number;
  /** Why the run failed (the source could not be read, invalid rows, ...), else null. */
  error: string | null;
  durationMs: number;
}

export interface ScheduleInfo {
  name: string;
  /** The stored definition; undefined if it cannot be read (written by another talkbatch version). */
  definition: ScheduleDefinition | undefined;
  timing: ScheduleTiming | undefined;
  /** Next run (from BullMQ), or null when none is planned. */
  next: Date | null;
  lastRun: ScheduleRun | undefined;
}

export type UpsertOutcome = 'added' | 'changed' | 'unchanged';

/** JSON with sorted keys: equal values give equal text (comparisons, content hashes). */
export function stableJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map((item) => stableJson(item)).join(',')}]`;
  if (typeof value === 'object' && value !== null) {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, item]) => item !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([key, item]) => `${JSON.stringify(key)}:${stableJson(item)}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

/** What "the row changed" means: the D-ID body it would be made from (script, image, voice, config). */
export function talkHash(row: ManifestRow): string {
  return createHash('sha256').update(stableJson(row.talk)).digest('hex').slice(0, 16);
}

function repeatOptionsOf(timing: ScheduleTiming): Omit<RepeatOptions, 'key'> {
  return 'cron' in timing ? { pattern: timing.cron, ...(timing.tz !== undefined ? { tz: timing.tz } : {}) } : { every: timing.everyMs };
}

function timingOf(scheduler: JobSchedulerJson<unknown>): ScheduleTiming | undefined {
  if (scheduler.pattern) return { cron: scheduler.pattern, ...(scheduler.tz ? { tz: scheduler.tz } : {}) };
  if (scheduler.every) return { everyMs: scheduler.every };
  return undefined;
}

function parseRun(text: string | null | undefined): ScheduleRun | undefined {
  if (!text) return undefined;
  try {
    return JSON.parse(text) as ScheduleRun;
  } catch {
    return undefined;
  }
}

type MadeMark = { state: 'made'; hash: string; batchId: string } | { state: 'pending'; hash: string; batchId: string };

function parseMark(value: string | null): MadeMark | undefined {
  if (value === null) return undefined;
  const [first, second, third] = value.split(' ');
  if (first === 'pending' && second !== undefined && third !== undefined) return { state: 'pending', batchId: second, hash: third };
  if (first !== undefined && second !== undefined) return { state: 'made', hash: first, batchId: second };
  return undefined;
}

/** The schedules of one talk queue: BullMQ's job schedulers plus talkbatch's per-schedule records. */
export class ScheduleStore {
  readonly queue: Queue<TickDataInput, ScheduleRun>;
  readonly #redis: RedisClient;
  readonly #base: string;

  constructor(queue: Queue<TickDataInput, ScheduleRun>, redis: RedisClient, prefix: string, queueName: string) {
    this.queue = queue;
    this.#redis = redis;
    this.#base = `${prefix}:${scheduleQueueName(queueName)}:schedule`;
  }

  #key(name: string, part: 'made' | 'runs' | 'lock'): string {
    return `${this.#base}:${name}:${part}`;
  }

  /** Creates or updates a schedule; a definition identical to the stored one is left alone. */
  async upsert(definition: ScheduleDefinition): Promise<UpsertOutcome> {
    const checked = ScheduleDefinition.parse(definition);
    const repeat = repeatOptionsOf(checked.timing);
    const existing = await this.queue.getJobScheduler(checked.name);
    if (existing !== undefined) {
      const sameTiming = existing.pattern === repeat.pattern && (existing.tz ?? undefined) === repeat.tz && (existing.every ?? undefined) === repeat.every;
      if (sameTiming && stableJson(existing.template?.data) === stableJson(checked)) return 'unchanged';
      // A cron schedule turned into an interval one (or back) starts afresh rather than mixing both.
      if ((existing.pattern !== undefined && existing.pattern !== null) !== (repeat.pattern !== undefined)) await this.queue.removeJobScheduler(checked.name);
    }
    await this.queue.upsertJobScheduler(checked.name, repeat, { name: TICK_JOB_NAME, data: checked, opts: TICK_JOB_OPTIONS });
    return existing === undefined ? 'added' : 'changed';
  }

  async get(name: string): Promise<ScheduleInfo | undefined> {
    const scheduler = await this.queue.getJobScheduler(name);
    if (scheduler === undefined) return undefined;
    const [info] = await this.#infos([scheduler]);
    return info;
  }

  /** Every schedule, soonest next run first. */
  async list(): Promise<ScheduleInfo[]> {
    return this.#infos(await this.queue.getJobSchedulers(0, -1, true));
  }

  async #infos(schedulers: JobSchedulerJson<TickDataInput>[]): Promise<ScheduleInfo[]> {
    if (schedulers.length === 0) return [];
    const pipeline = this.#redis.pipeline();
    for (const scheduler of schedulers) pipeline.lindex(this.#key(scheduler.key, 'runs'), 0);
    const lastRuns = (await pipeline.exec()) ?? [];
    return schedulers.map((scheduler, index) => {
      const parsed = ScheduleDefinition.safeParse(scheduler.template?.data);
      const lastRun = parseRun(lastRuns[index]?.[1] as string | null | undefined);
      return {
        name: scheduler.key,
        definition: parsed.success ? parsed.data : undefined,
        timing: timingOf(scheduler),
        next: typeof scheduler.next === 'number' ? new Date(scheduler.next) : null,
        lastRun,
      };
    });
  }

  /** Stops the schedule. `forget` also deletes which rows it made and its run history. */
  async remove(name: string, forget = false): Promise<boolean> {
    const removed = await this.queue.removeJobScheduler(name);
    if (forget) await this.#redis.del(this.#key(name, 'made'), this.#key(name, 'runs'), this.#key(name, 'lock'));
    return removed;
  }

  /** Adds a tick now (besides the planned ones); the schedule workers run it. Returns the job id, or undefined. */
  async runNow(name: string): Promise<string | undefined> {
    const scheduler = await this.queue.getJobScheduler(name);
    if (scheduler === undefined) return undefined;
    const definition = ScheduleDefinition.parse(scheduler.template?.data);
    const job = await this.queue.add(TICK_JOB_NAME, { ...definition, trigger: 'manual' }, TICK_JOB_OPTIONS);
    return job.id;
  }

  /** Recent runs, newest first. */
  async runs(name: string, limit = RUNS_KEPT): Promise<ScheduleRun[]> {
    const texts = await this.#redis.lrange(this.#key(name, 'runs'), 0, limit - 1);
    return texts.map((text) => parseRun(text)).filter((run): run is ScheduleRun => run !== undefined);
  }

  async recordRun(name: string, run: ScheduleRun): Promise<void> {
    await this.#redis
      .multi()
      .lpush(this.#key(name, 'runs'), JSON.stringify(run))
      .ltrim(this.#key(name, 'runs'), 0, RUNS_KEPT - 1)
      .exec();
  }

  /** Rows recorded as made (or pending) by earlier runs, for these row keys. */
  async marks(name: string, rowKeys: readonly string[]): Promise<(MadeMark | undefined)[]> {
    if (rowKeys.length === 0) return [];
    const values = await this.#redis.hmget(this.#key(name, 'made'), ...rowKeys);
    return values.map(parseMark);
  }

  async markPending(name: string, batchId: string, rows: readonly { rowKey: string; hash: string }[]): Promise<void> {
    if (rows.length === 0) return;
    await this.#redis.hset(this.#key(name, 'made'), Object.fromEntries(rows.map((row) => [row.rowKey, `pending ${batchId} ${row.hash}`])));
  }

  async markMade(name: string, batchId: string, rows: readonly { rowKey: string; hash: string }[]): Promise<void> {
    if (rows.length === 0) return;
    await this.#redis.hset(this.#key(name, 'made'), Object.fromEntries(rows.map((row) => [row.rowKey, `${row.hash} ${batchId}`])));
  }

  /** How many rows the schedule has made so far. */
  async madeCount(name: string): Promise<number> {
    return this.#redis.hlen(this.#key(name, 'made'));
  }

  /**
   * Takes the schedule's tick lock, renewed until released. Undefined when another tick holds it. Release is
   * compare-and-delete, so a tick whose lock lapsed never frees a newer tick's lock.
   */
  async lock(name: string): Promise<(() => Promise<void>) | undefined> {
    const key = this.#key(name, 'lock');
    const token = randomBytes(8).toString('hex');
    if ((await this.#redis.set(key, token, 'PX', LOCK_TTL_MS, 'NX')) !== 'OK') return undefined;
    const renew = setInterval(() => {
      void this.#redis
        .eval("if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0", 1, key, token, LOCK_TTL_MS)
        .catch(() => undefined);
    }, LOCK_TTL_MS / 3);
    renew.unref();
    return async () => {
      clearInterval(renew);
      await this.#redis.eval("if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0", 1, key, token);
    };
  }
}

/** A store for the command line: fails fast when Redis is down. */
export async function openScheduleStore(config: Config, redisUrl: string): Promise<{ store: ScheduleStore; close(): Promise<void> }> {
  const redis = createRedis(redisUrl, 'producer');
  await connectRedis(redis, redisUrl);
  const queue = new Queue<TickDataInput, ScheduleRun>(scheduleQueueName(config.queueName), { connection: redis, prefix: config.prefix });
  queue.on('error', () => {
    // Surfaced through the failing call instead; an unhandled 'error' event would crash the process.
  });
  return {
    store: new ScheduleStore(queue, redis, config.prefix, config.queueName),
    close: async () => {
      await queue.close();
      redis.disconnect();
    },
  };
}

export interface TickDeps {
  /** Where the rows go: the talk queue and its batch ledger. */
  talks: QueueHandle;
  store: ScheduleStore;
  logger: Logger;
  /** Limits for URL sources (timeout, size). */
  sourceOptions?: SourceOptions;
  now?: () => Date;
  chunkSize?: number;
}

/** `<name>-20261125-0900`; a second batch within the same minute gets the seconds too, then a counter. */
async function chooseBatchId(talks: QueueHandle, definition: ScheduleDefinition, at: Date): Promise<string> {
  const tz = 'cron' in definition.timing ? definition.timing.tz : undefined;
  const minute = `${definition.name}-${tickStamp(at, tz)}`;
  if (!(await talks.batches.exists(minute))) return minute;
  const second = `${definition.name}-${tickStamp(at, tz, true)}`;
  if (!(await talks.batches.exists(second))) return second;
  for (let n = 2; ; n++) {
    const id = `${second}-${n}`;
    if (!(await talks.batches.exists(id))) return id;
  }
}

function describeFailure(error: unknown): string {
  if (error instanceof ManifestError) {
    const [first] = error.issues;
    const count = error.issues.length;
    if (first === undefined) return 'invalid manifest';
    return count === 1 ? formatIssue(first) : `${count} problems in the manifest, first: ${formatIssue(first)}`;
  }
  return error instanceof Error ? error.message : String(error);
}

/** Whether a row marked pending by a tick that died actually reached the queue. */
async function pendingWasEnqueued(talks: QueueHandle, batchId: string, rowKey: string): Promise<boolean> {
  if ((await talks.queue.getJob(jobIdFor(batchId, rowKey))) !== undefined) return true;
  const [done] = await talks.batches.areDone(batchId, [rowKey]);
  return done === true;
}

/**
 * One run of a schedule: read the manifest again, pick the rows earlier runs did not make (or all of them), enqueue
 * them as a new batch, and record the run. Never throws for a bad source or bad rows: those are recorded as a failed
 * run and the next tick tries again. `saveBatchId` checkpoints the chosen batch id in the tick job, so a tick
 * retried after a crash adds to the same batch.
 */
export async function runScheduleTick(deps: TickDeps, rawData: unknown, saveBatchId: (batchId: string) => Promise<void> = async () => {}): Promise<ScheduleRun> {
  const started = deps.now?.() ?? new Date();
  const run: ScheduleRun = { at: started.toISOString(), trigger: 'schedule', batchId: null, added: 0, changed: 0, skipped: 0, invalid: 0, error: null, durationMs: 0 };
  const parsed = TickData.safeParse(rawData);
  const name = parsed.success ? parsed.data.name : String((rawData as { name?: unknown } | null)?.name ?? 'unknown');
  const finish = async (): Promise<ScheduleRun> => {
    run.durationMs = Date.now() - started.getTime();
    await deps.store.recordRun(name, run);
    if (run.error !== null) deps.logger.warn({ schedule: name, error: run.error }, 'schedule run failed; the next run tries again');
    else deps.logger.info({ schedule: name, batchId: run.batchId, added: run.added, skipped: run.skipped }, run.batchId ? 'schedule run enqueued a batch' : 'schedule run: nothing new');
    return run;
  };
  if (!parsed.success) {
    run.error = `the stored schedule cannot be read (${parsed.error.issues[0]?.message ?? 'invalid'}); save it again with talkbatch schedule add or apply`;
    return finish();
  }
  const data = parsed.data;
  run.trigger = data.trigger;

  const release = await deps.store.lock(data.name);
  if (release === undefined) {
    run.error = 'skipped: the previous run of this schedule is still going';
    return finish();
  }
  let manifest: OpenedManifest | undefined;
  try {
    manifest = await openManifest(data.manifest, { ...manifestOptionsOf(data.options), ...(deps.sourceOptions ? { source: deps.sourceOptions } : {}) });
    const report = await manifest.validate({ keepValidRows: true });
    run.invalid = report.rows - report.valid - report.skippedEmpty;
    if (report.issues.length > 0 && !data.allowPartial) throw new ManifestError(report.issues);

    let batchId = data.batchId;
    let chunk: ManifestRow[] = [];
    const flush = async (): Promise<void> => {
      const rows = chunk;
      chunk = [];
      if (rows.length === 0) return;
      const marks = await deps.store.marks(data.name, rows.map((row) => row.rowKey));
      const wanted: { row: ManifestRow; hash: string }[] = [];
      for (const [index, row] of rows.entries()) {
        const hash = talkHash(row);
        let mark = marks[index];
        if (mark?.state === 'pending' && !(await pendingWasEnqueued(deps.talks, mark.batchId, row.rowKey))) mark = undefined;
        if (data.rows === 'all' || mark === undefined) {
          wanted.push({ row, hash });
        } else if (data.remakeChanged && mark.hash !== hash) {
          wanted.push({ row, hash });
          run.changed++;
        } else {
          run.skipped++;
        }
      }
      if (wanted.length === 0) return;
      if (batchId === undefined) {
        batchId = await chooseBatchId(deps.talks, data, started);
        await saveBatchId(batchId);
      }
      if (run.batchId === null) {
        run.batchId = batchId;
        await deps.talks.batches.create(batchId, `schedule ${data.name}: ${manifest?.label ?? data.manifest}`);
      }
      const refs = wanted.map(({ row, hash }) => ({ rowKey: row.rowKey, hash }));
      await deps.store.markPending(data.name, batchId, refs);
      const result = await enqueueRows(deps.talks, batchId, wanted.map(({ row }) => row), deps.chunkSize);
      await deps.store.markMade(data.name, batchId, refs);
      run.added += result.added + result.alreadyPresent;
    };
    for await (const row of manifest.validRows()) {
      chunk.push(row);
      if (chunk.length >= (deps.chunkSize ?? 500)) await flush();
    }
    await flush();
  } catch (error) {
    run.error = describeFailure(error);
    if (!(error instanceof ManifestError)) deps.logger.debug({ schedule: data.name, err: String(error) }, 'schedule run error');
  } finally {
    await manifest?.close();
    await release().catch(() => undefined);
  }
  return finish();
}
