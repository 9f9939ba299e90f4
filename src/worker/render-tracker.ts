import type { RedisClient } from '../queue/connections.js';

/**
 * The jobs whose talks D-ID is rendering now, across every worker (a Redis set). When a create gets
 * 429 from a plan's concurrent-render cap, its size is the cap: adaptive concurrency cuts to it
 * directly instead of halving its way down. A dead worker's members go when its jobs are resumed.
 */
export class RenderTracker {
  constructor(
    private readonly redis: RedisClient,
    private readonly key: string,
  ) {}

  async add(jobId: string): Promise<void> {
    await this.redis.sadd(this.key, jobId);
  }

  async remove(jobId: string): Promise<void> {
    await this.redis.srem(this.key, jobId);
  }

  count(): Promise<number> {
    return this.redis.scard(this.key);
  }
}
