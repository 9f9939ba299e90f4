import type { Redis } from 'ioredis';

export interface BatchBudget {
  /** Talks this batch may create at most (each create is paid). */
  maxTalks?: number;
  /** Estimated seconds of video this batch may make at most. */
  maxVideoSeconds?: number;
}

export type BudgetVerdict = 'ok' | 'max-talks' | 'max-video-seconds';

/*
 * Reserve budget for one create, atomically across every worker. A row that already holds a
 * reservation (a retry, a resumed job) passes without counting twice.
 * KEYS[1] batch hash, KEYS[2] set of members that hold a reservation; ARGV[1] member, ARGV[2] seconds.
 */
const RESERVE_BUDGET = `
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then return 1 end
local maxTalks = tonumber(redis.call('HGET', KEYS[1], 'maxTalks') or '')
local maxSeconds = tonumber(redis.call('HGET', KEYS[1], 'maxVideoSeconds') or '')
if maxTalks and redis.call('SCARD', KEYS[2]) >= maxTalks then return -1 end
local used = tonumber(redis.call('HGET', KEYS[1], 'videoSecondsReserved') or '0')
if maxSeconds and used + tonumber(ARGV[2]) > maxSeconds then return -2 end
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('HINCRBYFLOAT', KEYS[1], 'videoSecondsReserved', ARGV[2])
return 1
`;

const RELEASE_BUDGET = `
if redis.call('SREM', KEYS[2], ARGV[1]) == 1 then
  redis.call('HINCRBYFLOAT', KEYS[1], 'videoSecondsReserved', -tonumber(ARGV[2]))
end
return 1
`;

export interface BatchMeta {
  id: string;
  createdAt: string;
  /** Where the rows came from: a file path, a URL, "api", "library". */
  source: string;
  /** Distinct rows ever added to the batch. */
  total: number;
  finishedAt?: string;
  callbackUrl?: string;
  cancelledAt?: string;
  budget?: BatchBudget & { talksReserved: number; videoSecondsReserved: number };
}

export interface BatchCounts {
  total: number;
  done: number;
  failed: number;
  /** Rows a worker holds right now (submitting, rendering or downloading). */
  active: number;
  /** Neither finished nor held by a worker: waiting, delayed or paused. */
  queued: number;
}

export interface BatchRowRef {
  rowKey: string;
  line: number;
}

/**
 * The batch ledger in Redis, next to BullMQ's own keys and under the same hash-tagged prefix (one
 * Cluster slot). Row membership and outcomes are sets, so recording an outcome twice (a job re-run after
 * a stall) changes nothing.
 */
export class BatchStore {
  readonly #redis: Redis;
  readonly #base: string;

  constructor(redis: Redis, prefix: string, queueName: string) {
    this.#redis = redis;
    this.#base = `${prefix}:${queueName}`;
  }

  #key(id: string, part?: 'rows' | 'done' | 'failed' | 'active' | 'spent'): string {
    return part ? `${this.#base}:batch:${id}:${part}` : `${this.#base}:batch:${id}`;
  }

  async create(id: string, source: string, extra: { callbackUrl?: string; budget?: BatchBudget } = {}): Promise<void> {
    const now = new Date().toISOString();
    const multi = this.#redis.multi();
    multi.hsetnx(this.#key(id), 'createdAt', now);
    multi.hsetnx(this.#key(id), 'source', source);
    if (extra.callbackUrl) multi.hset(this.#key(id), 'callbackUrl', extra.callbackUrl);
    if (extra.budget?.maxTalks !== undefined) multi.hset(this.#key(id), 'maxTalks', extra.budget.maxTalks);
    if (extra.budget?.maxVideoSeconds !== undefined) multi.hset(this.#key(id), 'maxVideoSeconds', extra.budget.maxVideoSeconds);
    // A batch that grows again is no longer finished.
    multi.zadd(`${this.#base}:batches`, 'NX', Date.parse(now), id);
    await multi.exec();
  }

  async exists(id: string): Promise<boolean> {
    return (await this.#redis.exists(this.#key(id))) === 1;
  }

  /** Adds row keys (idempotent); returns which of them were new to the batch. */
  async addRows(id: string, rows: readonly BatchRowRef[]): Promise<boolean[]> {
    if (rows.length === 0) return [];
    const pipeline = this.#redis.pipeline();
    for (const row of rows) pipeline.zadd(this.#key(id, 'rows'), 'NX', row.line, row.rowKey);
    const results = (await pipeline.exec()) ?? [];
    const added = results.map(([error, value]) => {
      if (error) throw error;
      return value === 1;
    });
    if (added.some(Boolean)) await this.#redis.hdel(this.#key(id), 'finishedAt');
    return added;
  }

  /** Takes budget for one create; `member` is the row key plus its retry generation. */
  async reserveBudget(id: string, member: string, seconds: number): Promise<BudgetVerdict> {
    const result = Number(await this.#redis.eval(RESERVE_BUDGET, 2, this.#key(id), this.#key(id, 'spent'), member, String(seconds)));
    return result === 1 ? 'ok' : result === -1 ? 'max-talks' : 'max-video-seconds';
  }

  /** Gives a reservation back when the create certainly did not happen (D-ID refused the row). */
  async releaseBudget(id: string, member: string, seconds: number): Promise<void> {
    await this.#redis.eval(RELEASE_BUDGET, 2, this.#key(id), this.#key(id, 'spent'), member, String(seconds));
  }

  async areDone(id: string, rowKeys: readonly string[]): Promise<boolean[]> {
    if (rowKeys.length === 0) return [];
    const flags = await this.#redis.smismember(this.#key(id, 'done'), ...rowKeys);
    return flags.map((flag) => flag === 1);
  }

  async markActive(id: string, rowKey: string): Promise<void> {
    await this.#redis.sadd(this.#key(id, 'active'), rowKey);
  }

  async markDone(id: string, rowKey: string): Promise<void> {
    await this.#redis
      .multi()
      .sadd(this.#key(id, 'done'), rowKey)
      .srem(this.#key(id, 'failed'), rowKey)
      .srem(this.#key(id, 'active'), rowKey)
      .exec();
  }

  async markFailed(id: string, rowKey: string): Promise<void> {
    await this.#redis
      .multi()
      .sadd(this.#key(id, 'failed'), rowKey)
      .srem(this.#key(id, 'done'), rowKey)
      .srem(this.#key(id, 'active'), rowKey)
      .exec();
  }

  /** A row handed back to the queue (shutdown, credits): no longer held by anyone. */
  async markReleased(id: string, rowKey: string): Promise<void> {
    await this.#redis.srem(this.#key(id, 'active'), rowKey);
  }

  /** A failed row going round again (`retry --failed`). */
  async markRetrying(id: string, rowKey: string): Promise<void> {
    await this.#redis.multi().srem(this.#key(id, 'failed'), rowKey).hdel(this.#key(id), 'finishedAt').exec();
  }

  async counts(id: string): Promise<BatchCounts> {
    const results = (await this.#redis
      .multi()
      .zcard(this.#key(id, 'rows'))
      .scard(this.#key(id, 'done'))
      .scard(this.#key(id, 'failed'))
      .scard(this.#key(id, 'active'))
      .exec()) ?? [];
    const [total, done, failed, active] = results.map(([error, value]) => {
      if (error) throw error;
      return Number(value);
    }) as [number, number, number, number];
    return { total, done, failed, active, queued: Math.max(0, total - done - failed - active) };
  }

  async get(id: string): Promise<(BatchMeta & { counts: BatchCounts }) | undefined> {
    const hash = await this.#redis.hgetall(this.#key(id));
    if (!hash.createdAt) return undefined;
    const counts = await this.counts(id);
    return {
      id,
      createdAt: hash.createdAt,
      source: hash.source ?? '',
      total: counts.total,
      ...(hash.finishedAt ? { finishedAt: hash.finishedAt } : {}),
      ...(hash.callbackUrl ? { callbackUrl: hash.callbackUrl } : {}),
      ...(hash.cancelledAt ? { cancelledAt: hash.cancelledAt } : {}),
      ...(hash.maxTalks || hash.maxVideoSeconds
        ? {
            budget: {
              ...(hash.maxTalks ? { maxTalks: Number(hash.maxTalks) } : {}),
              ...(hash.maxVideoSeconds ? { maxVideoSeconds: Number(hash.maxVideoSeconds) } : {}),
              talksReserved: await this.#redis.scard(this.#key(id, 'spent')),
              videoSecondsReserved: Number(hash.videoSecondsReserved ?? 0),
            },
          }
        : {}),
      counts,
    };
  }

  /** Newest first. */
  async list(offset = 0, limit = 50): Promise<string[]> {
    return this.#redis.zrevrange(`${this.#base}:batches`, offset, offset + limit - 1);
  }

  /** Rows in manifest order, a page at a time so big batches never sit in memory at once. */
  async *rows(id: string, pageSize = 1000): AsyncGenerator<BatchRowRef> {
    for (let start = 0; ; start += pageSize) {
      const page = await this.#redis.zrange(this.#key(id, 'rows'), start, start + pageSize - 1, 'WITHSCORES');
      for (let i = 0; i + 1 < page.length; i += 2) yield { rowKey: page[i] as string, line: Number(page[i + 1]) };
      if (page.length < pageSize * 2) return;
    }
  }

  /** Records that the batch was cancelled; the first time wins. Returns the recorded time. */
  async markCancelled(id: string): Promise<string> {
    await this.#redis.hsetnx(this.#key(id), 'cancelledAt', new Date().toISOString());
    return (await this.#redis.hget(this.#key(id), 'cancelledAt')) ?? new Date().toISOString();
  }

  async failedRowKeys(id: string): Promise<string[]> {
    return this.#redis.smembers(this.#key(id, 'failed'));
  }

  /** True for exactly one caller once every row has an outcome: that caller writes the report. */
  async claimFinished(id: string): Promise<boolean> {
    const counts = await this.counts(id);
    if (counts.total === 0 || counts.done + counts.failed < counts.total) return false;
    return (await this.#redis.hsetnx(this.#key(id), 'finishedAt', new Date().toISOString())) === 1;
  }
}
