import { Queue, type DefaultJobOptions } from 'bullmq';
import type { Config } from '../config/index.js';
import { BatchStore } from './batches.js';
import { connectRedis, createRedis, type RedisClient } from './connections.js';
import type { JobPayload, RowResult } from './payload.js';

export type TalkQueue = Queue<JobPayload, RowResult>;

export interface QueueHandle {
  queue: TalkQueue;
  batches: BatchStore;
  redis: RedisClient;
  close(): Promise<void>;
}

/**
 * Completed jobs BullMQ keeps (the newest; each also goes after TALKBATCH_KEEP_JOBS_HOURS). A done row's
 * report entry lives in the batch ledger (BatchStore.finishedRows, about 0.5 KB) and the ledger's done set
 * keeps re-enqueueing it a no-op, so a job (about 2.5 KB) need not outlive its row: Redis stays small however
 * large the batch. Failed jobs are all kept for the hours: `retry --failed` re-runs them.
 */
export const KEEP_COMPLETED_JOBS = 1_000;

export function defaultJobOptions(config: Pick<Config, 'attempts' | 'keepJobsHours'>): DefaultJobOptions {
  const keepSeconds = config.keepJobsHours * 3600;
  return {
    attempts: config.attempts,
    // Failures that reach BullMQ's retry are the transient kind (network, 5xx, a broken download).
    backoff: { type: 'exponential', delay: 2_000, jitter: 0.5 },
    removeOnComplete: { age: keepSeconds, count: KEEP_COMPLETED_JOBS },
    removeOnFail: { age: keepSeconds },
  };
}

export interface OpenQueueOptions {
  /**
   * `producer` (default): connects now and fails fast when Redis is down, instead of queueing commands in memory.
   * `worker`: a long-lived process that waits for Redis to come back; connection errors go to `onError`.
   */
  role?: 'producer' | 'worker';
  onError?: (error: Error) => void;
}

/** The talk queue and its batch ledger on one connection. */
export async function openQueue(config: Config, redisUrl: string, options: OpenQueueOptions = {}): Promise<QueueHandle> {
  const role = options.role ?? 'producer';
  const redis = createRedis(redisUrl, role);
  if (role === 'producer') await connectRedis(redis, redisUrl);
  const queue: TalkQueue = new Queue<JobPayload, RowResult>(config.queueName, {
    connection: redis,
    prefix: config.prefix,
    defaultJobOptions: defaultJobOptions(config),
  });
  // A producer's errors surface through the failing call; an unhandled 'error' event would crash the process.
  queue.on('error', options.onError ?? (() => {}));
  return {
    queue,
    batches: new BatchStore(redis, config.prefix, config.queueName),
    redis,
    close: async () => {
      await queue.close();
      redis.disconnect();
    },
  };
}
