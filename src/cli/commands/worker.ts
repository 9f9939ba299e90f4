import { parseArgs } from 'node:util';
import { startScheduleWorker, type ScheduleWorker } from '../../schedules/worker.js';
import { openQueue } from '../../queue/talk-queue.js';
import { BatchService } from '../../app/index.js';
import { UsageError } from '../../shared/errors.js';
import { startTalkWorker } from '../../worker/create-worker.js';
import { PREVIEW_HELP, PREVIEW_OPTIONS, previewOverrides } from '../preview-flags.js';
import { configFromFlags, GLOBAL_HELP, GLOBAL_OPTIONS, loggerFor, onStopSignals } from '../context.js';

export const WORKER_HELP = `Usage: talkbatch worker [options]

Processes jobs from the queue until stopped. Run as many as you like, on any machines that share
the Redis; --concurrency (global, stored in Redis) caps renders in flight across all of them.
SIGTERM/SIGINT: stop taking jobs, hand rows waiting on D-ID back to the queue, finish downloads,
exit within TALKBATCH_SHUTDOWN_TIMEOUT_MS; a second signal exits at once.

Options:
  --worker-concurrency N jobs this process runs at once (default: --concurrency)
  --no-schedules         do not run schedule ticks here (by default every worker can run them; see
                         talkbatch schedule --help)
${PREVIEW_HELP}
${GLOBAL_HELP}`;

export async function workerCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { ...GLOBAL_OPTIONS, 'worker-concurrency': { type: 'string' }, 'no-schedules': { type: 'boolean' }, ...PREVIEW_OPTIONS } });
  if (values.help) {
    console.log(WORKER_HELP);
    return 0;
  }
  const config = configFromFlags(values, { TALKBATCH_WORKER_CONCURRENCY: values['worker-concurrency'], ...previewOverrides(values) });
  if (!config.redisUrl) throw new UsageError('REDIS_URL is not set: workers need the Redis their jobs are in');
  if (!config.didApiKey) throw new UsageError('DID_API_KEY is not set');
  const logger = loggerFor(config);
  // Listen for signals before anything starts, so an early SIGTERM is a graceful stop too: it waits for a worker to stop.
  const stopping = new AbortController();
  const removeSignals = onStopSignals(() => stopping.abort());
  const handle = await openQueue(config, config.redisUrl).catch((error: unknown) => {
    removeSignals();
    throw error;
  });
  // Whichever worker finishes a batch writes its report and tells its callbackUrl.
  const { finisher } = new BatchService({ config, handle, logger });
  const worker = await startTalkWorker({
    config,
    redisUrl: config.redisUrl,
    logger,
    onBatchFinished: finisher.onBatchFinished,
    onSampleReady: finisher.onSampleReady,
    onRowWebhook: finisher.onRowWebhook,
  });
  // Schedule ticks only read a sheet and enqueue rows, so any worker process can run them.
  const schedules: ScheduleWorker | undefined =
    values['no-schedules'] === true ? undefined : await startScheduleWorker({ config, redisUrl: config.redisUrl, logger });
  const stop = (): void => {
    void schedules?.close();
    void worker.close();
  };
  if (stopping.signal.aborted) stop();
  else stopping.signal.addEventListener('abort', stop, { once: true });
  logger.info({ queue: config.queueName, concurrency: config.concurrency, workerConcurrency: config.workerConcurrency }, 'worker started');
  try {
    await worker.stopped;
  } finally {
    removeSignals();
    await schedules?.close();
    await finisher.close();
    await handle.close();
  }
  logger.info('worker stopped');
  return worker.fatal ? 1 : 0;
}
