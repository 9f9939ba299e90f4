import { parseArgs } from 'node:util';
import type { Config } from '../../config/index.js';
import { creditMarkerKey } from '../../worker/credit-watch.js';
import { openQueue } from '../../queue/talk-queue.js';
import { BatchService } from '../../app/index.js';
import { UsageError } from '../../shared/errors.js';
import { silentLogger } from '../../shared/logger.js';
import { configFromFlags, GLOBAL_HELP, GLOBAL_OPTIONS } from '../context.js';

export const REPORT_HELP = `Usage: talkbatch report <batchId> [options]

Rebuilds out/<batch>/results.csv and results.jsonl from Redis and the files on disk.
${GLOBAL_HELP}`;

export const PAUSE_HELP = `Usage: talkbatch pause | resume [options]

pause: every worker stops taking new jobs (rows already rendering finish).
resume: undo a pause, including one made because D-ID ran out of credits (402).
${GLOBAL_HELP}`;

export const RETRY_HELP = `Usage: talkbatch retry <batchId> --failed [options]

Puts the batch's failed rows back in the queue (a new D-ID talk is made for each).
${GLOBAL_HELP}`;

async function withQueue<T>(argv: string[], extra: Record<string, { type: 'boolean' | 'string' }>, help: string, fn: (ctx: Awaited<ReturnType<typeof openQueue>>, positionals: string[], values: Record<string, unknown>, outDir: string, prefix: string, queueName: string, config: Config) => Promise<T>): Promise<T | 0> {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: { ...GLOBAL_OPTIONS, ...extra } });
  if (values.help) {
    console.log(help);
    return 0;
  }
  const config = configFromFlags(values);
  if (!config.redisUrl) throw new UsageError('REDIS_URL is not set: this command works on the Redis your workers use');
  const handle = await openQueue(config, config.redisUrl);
  try {
    return await fn(handle, positionals, values, config.outDir, config.prefix, config.queueName, config);
  } finally {
    await handle.close();
  }
}

export function reportCommand(argv: string[]): Promise<number> {
  return withQueue(argv, {}, REPORT_HELP, async (handle, positionals, _values, _outDir, _prefix, _queueName, config) => {
    const batchId = positionals[0];
    if (!batchId) throw new UsageError('report needs a batch id');
    if (!(await handle.batches.exists(batchId))) {
      process.stderr.write(`no batch "${batchId}"\n`);
      return 1;
    }
    const report = await new BatchService({ config, handle, logger: silentLogger }).writeReport(batchId);
    console.log(`${report.csv}\n${report.jsonl}\n${Object.entries(report.counts).filter(([, n]) => n > 0).map(([s, n]) => `${n} ${s}`).join(', ')}`);
    return 0;
  });
}

export function pauseCommand(argv: string[], action: 'pause' | 'resume'): Promise<number> {
  return withQueue(argv, {}, PAUSE_HELP, async (handle, _positionals, _values, _outDir, prefix, queueName) => {
    if (action === 'pause') {
      await handle.queue.pause();
      console.log(`queue ${queueName} paused`);
    } else {
      await handle.redis.del(creditMarkerKey(prefix, queueName));
      await handle.queue.resume();
      console.log(`queue ${queueName} resumed`);
    }
    return 0;
  });
}

export function retryCommand(argv: string[]): Promise<number> {
  return withQueue(argv, { failed: { type: 'boolean' } }, RETRY_HELP, async (handle, positionals, values, _outDir, _prefix, _queueName, config) => {
    const batchId = positionals[0];
    if (!batchId || values.failed !== true) throw new UsageError('usage: talkbatch retry <batchId> --failed');
    const { retried } = await new BatchService({ config, handle, logger: silentLogger }).retryFailed(batchId);
    console.log(`${retried} failed rows of ${batchId} re-enqueued`);
    return 0;
  });
}
