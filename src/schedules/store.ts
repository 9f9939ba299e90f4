import { randomBytes } from 'node:crypto';
import { Queue, type JobSchedulerJson, type JobSchedulerTemplateOptions, type RepeatOptions } from 'bullmq';
import type { Config } from '../config/index.js';
import { connectRedis, createRedis, type RedisClient } from '../queue/connections.js';
import { ScheduleDefinition, TICK_JOB_NAME, scheduleQueueName, type ScheduleTiming, type TickDataInput } from './spec.js';
import { queueKeys, type QueueKeys } from '../queue/keys.js';
import { stableJson } from '../shared/stable-json.js';

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

// Lives in src/shared (the render cache keys on it too); still exported here for the schedule modules.
export { stableJson };

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
  readonly #keys: QueueKeys;

  constructor(queue: Queue<TickDataInput, ScheduleRun>, redis: RedisClient, prefix: string, queueName: string) {
    this.queue = queue;
    this.#redis = redis;
    this.#keys = queueKeys(prefix, queueName);
  }

  #key(name: string, part: 'made' | 'runs' | 'lock'): string {
    return this.#keys.schedule(name, part);
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
      if ((existing.pattern !== undefined) !== (repeat.pattern !== undefined)) await this.queue.removeJobScheduler(checked.name);
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
export async function openScheduleStore(config: Config, redisUrl: string): Promise<{ store: ScheduleStore; close: () => Promise<void> }> {
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

