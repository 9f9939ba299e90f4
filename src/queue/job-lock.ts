import type { Job, Queue } from 'bullmq';
import { LuaScript } from './lua-script.js';
import type { RedisClient } from './connections.js';

/*
 * A worker that was cut off from Redis for longer than the lock duration (TALKBATCH_LOCK_MS) comes back to
 * rows that another worker took over, and maybe finished, meanwhile. BullMQ refuses its stale completion by
 * the lock token; these refuse what it would write before that: job data and, through HeldJob.check, the
 * output file and the ledger's record of the row.
 */

/** This try no longer holds the job: another worker took the row over (or it ended without us). */
export class LockLostError extends Error {
  constructor(jobId: string) {
    super(`lost the lock on job ${jobId}: another worker has taken the row over`);
    this.name = 'LockLostError';
  }
}

/**
 * KEYS[1] the job hash, KEYS[2] its lock; ARGV[1] our token, ARGV[2] the data as JSON. 1 written, 0 the lock is
 * not ours, -1 no such job. One script call, as BullMQ's own updateData.
 */
const UPDATE_DATA_IF_HELD = new LuaScript(`
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
redis.call('HSET', KEYS[1], 'data', ARGV[2])
return 1
`);

export class HeldJob<T> {
  constructor(
    /** The worker's connection, on which BullMQ keeps the job's lock. */
    private readonly redis: RedisClient,
    private readonly queue: Queue,
    private readonly job: Job<T>,
    /** The lock token BullMQ gave this try; without one (a processor called directly) nothing is checked. */
    private readonly token: string | undefined,
    private readonly lockMs: number,
  ) {}

  /** Until when (this process's clock) the lock is ours for sure: it was renewed for lockMs at the last check. */
  #heldUntil = 0;

  /** Writes the job's data while this try holds the lock; else LockLostError and nothing is written. */
  async updateData(data: T): Promise<void> {
    if (this.token === undefined) {
      await this.job.updateData(data);
      return;
    }
    const jobKey = this.queue.toKey(this.job.id ?? '');
    const written = Number(await UPDATE_DATA_IF_HELD.run(this.redis, [jobKey, `${jobKey}:lock`], [this.token, JSON.stringify(data)]));
    if (written === 0) throw new LockLostError(this.job.id ?? '');
    if (written < 0) throw new Error(`Missing key for job ${this.job.id}. updateData`);
    this.job.data = data;
  }

  /**
   * Throws LockLostError unless this try holds the lock for at least half the lock duration more. Asks Redis
   * (BullMQ's extendLock, which renews it) only when that is not known from the last time it asked.
   */
  async check(): Promise<void> {
    if (this.token === undefined) return;
    const asked = Date.now();
    if (asked < this.#heldUntil - this.lockMs / 2) return;
    if ((await this.job.extendLock(this.token, this.lockMs)) !== 1) throw new LockLostError(this.job.id ?? '');
    this.#heldUntil = asked + this.lockMs;
  }
}
