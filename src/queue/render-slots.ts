import type { Queue } from 'bullmq';
import type { RedisClient } from './connections.js';
import type { QueueKeys } from './keys.js';
import { LuaScript } from './lua-script.js';

/*
 * D-ID's plan limits the talks it renders at once, not what talkbatch does before and after a render. A row
 * takes a render slot just before its `POST /talks` and gives it back the moment it sees the talk finished, so
 * uploading local files, the ledger's bookkeeping, the download with its fsyncs and the hand-over to the next
 * job all happen outside the plan's limit. BullMQ's global concurrency (rows being worked on) is the render
 * limit plus a little headroom (headroomFor): the rows in it that wait for a slot have done everything a
 * create needs, and create the moment one frees.
 *
 * The slots are a sorted set of job ids scored by when each holder's lease ends; holders renew them while
 * they render (worker/slot-keeper.ts), so a dead worker's slots free themselves after TALKBATCH_LOCK_MS, as BullMQ
 * gives its rows to another worker after that time. The render limit itself is a key of its own beside it:
 * adaptive concurrency (429s) lowers and raises it for every worker at once.
 */

/** What a try for a slot found. */
export type SlotVerdict =
  | { kind: 'taken' }
  /** Every slot is held: wait for one to free. */
  | { kind: 'full' }
  /** The queue is backing off a 429 (queue.rateLimit): wait this long. */
  | { kind: 'rate-limited'; waitMs: number }
  /** The queue is paused (an operator, or no credits left): the row goes back to the queue. */
  | { kind: 'paused' }
  /** The row's batch was cancelled while it waited: it must not create its talk. */
  | { kind: 'cancelled' };

/**
 * The worker's BullMQ limiter: set so high it never binds, since BullMQ only honours queue.rateLimit() (the 429
 * back-off, which sets the limiter key to a number far above `max`) when a worker has one.
 */
export const QUEUE_LIMITER = { max: 1_000_000, duration: 1_000 } as const;

/** Rows in progress beyond the render limit: enough to keep a create ready for each slot that frees. */
export function headroomFor(renderLimit: number): number {
  return Math.max(2, Math.ceil(renderLimit / 4));
}

/** The milliseconds of Redis's own clock, so that hosts whose clocks differ agree on when a lease ends. */
const NOW = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`;

/**
 * KEYS[1] slots, KEYS[2] render limit, KEYS[3] BullMQ's limiter, KEYS[4] BullMQ's meta hash, KEYS[5] the row's
 * batch hash; ARGV[1] job id, ARGV[2] lease ms, ARGV[3] the limit to assume when none is stored, ARGV[4] '1' to
 * take the slot whatever the count (the talk already renders at D-ID), ARGV[5] the workers' limiter max (BullMQ
 * keeps it in meta only for a queue-wide rate limit). Returns { verdict, wait ms }: 1 taken,
 * 0 full, 2 rate limited, 3 paused, 4 the batch was cancelled. A holder asking again keeps its slot.
 */
const TAKE = new LuaScript(`${NOW}
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local expires = now + tonumber(ARGV[2])
if ARGV[4] == '1' or redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], expires, ARGV[1])
  return {1, 0}
end
if redis.call('HEXISTS', KEYS[5], 'cancelledAt') == 1 then return {4, 0} end
if redis.call('HEXISTS', KEYS[4], 'paused') == 1 then return {3, 0} end
local max = tonumber(redis.call('HGET', KEYS[4], 'max') or ARGV[5])
if max <= tonumber(redis.call('GET', KEYS[3]) or 0) then
  local pttl = redis.call('PTTL', KEYS[3])
  if pttl > 0 then return {2, pttl} end
end
local limit = tonumber(redis.call('GET', KEYS[2]) or ARGV[3])
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], expires, ARGV[1])
  return {1, 0}
end
return {0, 0}
`);

/**
 * KEYS[1] slots, KEYS[2] the set of talks rendering (worker/render-tracker.ts); ARGV[1] job id, ARGV[2] the
 * slot-freed channel. Gives the slot back, takes the talk off the render count and tells every worker, in one
 * round trip (PUBLISH names no key, so this stays legal on a Cluster).
 */
const RELEASE = new LuaScript(`
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('SREM', KEYS[2], ARGV[1])
redis.call('PUBLISH', ARGV[2], '1')
return 1
`);

/** KEYS[1] slots; ARGV[1] lease ms, ARGV[2..] job ids: extends the leases of those still held. */
const RENEW = new LuaScript(`${NOW}
local expires = now + tonumber(ARGV[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], 'XX', expires, ARGV[i]) end
return #ARGV - 1
`);

/** The render limit every worker of the queue follows, or null when none is stored yet. */
export async function readRenderLimit(redis: RedisClient, keys: QueueKeys): Promise<number | null> {
  const value = await redis.get(keys.renderLimit());
  const limit = value === null ? Number.NaN : Number(value);
  return Number.isInteger(limit) && limit > 0 ? limit : null;
}

export class RenderSlots {
  readonly #slots: string;
  /** BullMQ's own names for the queue's rate limiter and meta hash: the take script reads both. */
  readonly #bullmq: { limiter: string; meta: string };

  constructor(
    private readonly redis: RedisClient,
    private readonly keys: QueueKeys,
    queue: Pick<Queue, 'toKey'>,
    /** How long a slot stays held without renewal. */
    readonly leaseMs: number,
    /** The render limit assumed before any worker stored one (TALKBATCH_CONCURRENCY). */
    private readonly defaultLimit: number,
  ) {
    this.#slots = keys.renderSlots();
    this.#bullmq = { limiter: queue.toKey('limiter'), meta: queue.toKey('meta') };
  }

  /**
   * A slot for a create of a row of `batchId`; `force` for a talk D-ID already renders (adopted, or resumed after
   * a crash).
   */
  async take(jobId: string, batchId: string, options: { force?: boolean } = {}): Promise<SlotVerdict> {
    const keys = [this.#slots, this.keys.renderLimit(), this.#bullmq.limiter, this.#bullmq.meta, this.keys.batch(batchId)];
    const reply = (await TAKE.run(this.redis, keys, [jobId, this.leaseMs, this.defaultLimit, options.force ? '1' : '0', QUEUE_LIMITER.max])) as [number, number];
    const [verdict, waitMs] = reply;
    if (verdict === 1) return { kind: 'taken' };
    if (verdict === 2) return { kind: 'rate-limited', waitMs };
    if (verdict === 3) return { kind: 'paused' };
    if (verdict === 4) return { kind: 'cancelled' };
    return { kind: 'full' };
  }

  /** Gives the slot back, takes the job's talk off the render count, and announces the freed slot to every worker. */
  async release(jobId: string): Promise<void> {
    await RELEASE.run(this.redis, [this.#slots, this.keys.rendering()], [jobId, this.keys.slotFreedChannel()]);
  }

  async renew(jobIds: readonly string[]): Promise<void> {
    if (jobIds.length > 0) await RENEW.run(this.redis, [this.#slots], [this.leaseMs, ...jobIds]);
  }

  /** Slots held now (expired leases included until the next take clears them). */
  held(): Promise<number> {
    return this.redis.zcard(this.#slots);
  }

  /** The render limit every worker follows, or null when none is stored yet. */
  limit(): Promise<number | null> {
    return readRenderLimit(this.redis, this.keys);
  }

  async setLimit(limit: number): Promise<void> {
    await this.redis.set(this.keys.renderLimit(), String(limit));
  }
}

/**
 * Where adaptive concurrency keeps the render limit: the limit in its own key, and BullMQ's global
 * concurrency (rows being worked on, across every worker) the limit plus headroom.
 */
export class RenderLimit {
  constructor(
    private readonly slots: RenderSlots,
    private readonly queue: Pick<Queue, 'setGlobalConcurrency'>,
  ) {}

  get(): Promise<number | null> {
    return this.slots.limit();
  }

  async set(limit: number): Promise<void> {
    await this.slots.setLimit(limit);
    await this.queue.setGlobalConcurrency(limit + headroomFor(limit));
  }
}
