import { Queue, Worker, type Job } from 'bullmq';
import type { Config } from '../config/index.js';
import type { SourceOptions } from '../manifest/index.js';
import type { Logger } from '../shared/logger.js';
import { scheduleQueueName, type TickDataInput } from './spec.js';
import { ScheduleStore, type ScheduleRun } from './store.js';
import { runScheduleTick } from './tick.js';
import { openQueue } from '../queue/talk-queue.js';

export interface ScheduleWorkerOptions {
  config: Config;
  redisUrl: string;
  logger: Logger;
  /** Limits for manifests at URLs. */
  sourceOptions?: SourceOptions;
}

export interface ScheduleWorker {
  worker: Worker<TickDataInput, ScheduleRun>;
  store: ScheduleStore;
  close(): Promise<void>;
}

/**
 * Runs schedule ticks in this process: each tick reads its schedule's manifest and enqueues the new rows for the talk
 * workers. Any number of processes may run one; a per-schedule lock keeps two ticks of one schedule apart. Ticks
 * record their own failures (see runScheduleTick), so a bad sheet never stops the schedule.
 */
export async function startScheduleWorker(options: ScheduleWorkerOptions): Promise<ScheduleWorker> {
  const { config, logger, redisUrl } = options;
  const talks = await openQueue(config, redisUrl, { role: 'worker', onError: (error) => logger.warn({ err: error.message }, 'queue connection error') });
  const connection = talks.redis;
  const scheduleQueue = new Queue<TickDataInput, ScheduleRun>(scheduleQueueName(config.queueName), { connection, prefix: config.prefix });
  scheduleQueue.on('error', (error) => logger.warn({ err: error.message }, 'schedule queue connection error'));
  const store = new ScheduleStore(scheduleQueue, connection, config.prefix, config.queueName);
  const worker = new Worker<TickDataInput, ScheduleRun>(
    scheduleQueueName(config.queueName),
    (job: Job<TickDataInput, ScheduleRun>) =>
      runScheduleTick({ talks, store, logger, sourceOptions: { outboundAllow: config.outboundAllow, ...options.sourceOptions } }, job.data, async (batchId) => {
        await job.updateData({ ...job.data, batchId });
      }),
    // One tick at a time per process: ticks are short, and each one streams a whole sheet.
    { connection, prefix: config.prefix, concurrency: 1 },
  );
  worker.on('error', (error) => logger.warn({ err: error.message }, 'schedule worker connection error'));
  worker.on('failed', (job, error) => logger.error({ schedule: job?.data.name, err: error.message }, 'schedule run could not be recorded'));

  let closing: Promise<void> | undefined;
  return {
    worker,
    store,
    close: () =>
      (closing ??= (async () => {
        await worker.close();
        await scheduleQueue.close();
        await talks.close();
      })()),
  };
}
