import { parseArgs } from 'node:util';
import type { Config } from '../../config/index.js';
import { creditMarkerKey } from '../../worker/credit-watch.js';
import { openQueue, type QueueHandle } from '../../queue/talk-queue.js';
import { BatchService } from '../../app/index.js';
import { UsageError } from '../../shared/errors.js';
import { silentLogger } from '../../shared/logger.js';
import { configFromFlags, GLOBAL_HELP, GLOBAL_OPTIONS } from '../context.js';

export const REPORT_HELP = `Usage: talkbatch report <batchId> [options]

Rebuilds out/<batch>/results.csv and results.jsonl from Redis and the files on disk.

Options:
  --charged-failures     write out/<batch>/charged-failures.csv instead: every talk that was paid for and came to
                         nothing (D-ID ended it error or rejected, or its video could not be downloaded), with D-ID's
                         error, the request's SHA-256 and the credits, for a refund claim
${GLOBAL_HELP}`;

export const PAUSE_HELP = `Usage: talkbatch pause | resume [options]

pause: every worker stops taking new jobs (rows already rendering finish).
resume: undo a pause, including one made because D-ID ran out of credits (402).
${GLOBAL_HELP}`;

export const RETRY_HELP = `Usage: talkbatch retry <batchId> --failed [options]

Puts the batch's failed rows back in the queue (a new D-ID talk is made for each).
${GLOBAL_HELP}`;

export const APPROVE_HELP = `Usage: talkbatch approve <batchId> [options]

Approves a batch enqueued with --sample: the rows it held back go into the queue, and workers make them.
Approving again adds nothing. Exit code 2 for a batch that was cancelled or enqueued without --sample.
${GLOBAL_HELP}`;

export const CANCEL_HELP = `Usage: talkbatch cancel <batchId> [options]

Takes the batch's rows that have not started off the queue, and drops the rows a sample holds back: none of
them is made (or paid for). Rows being worked on finish. Rejects a sample under review.
${GLOBAL_HELP}`;

interface CommandContext {
  handle: QueueHandle;
  /** The batch services on this command's queue handle; closed (after its reports and callbacks) when the command ends. */
  service: BatchService;
  positionals: string[];
  values: Record<string, unknown>;
  config: Config;
}

async function withQueue<T>(argv: string[], extra: Record<string, { type: 'boolean' | 'string' }>, help: string, fn: (ctx: CommandContext) => Promise<T>): Promise<T | 0> {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: { ...GLOBAL_OPTIONS, ...extra } });
  if (values.help) {
    console.log(help);
    return 0;
  }
  const config = configFromFlags(values);
  if (!config.redisUrl) throw new UsageError('REDIS_URL is not set: this command works on the Redis your workers use');
  const handle = await openQueue(config, config.redisUrl);
  const service = new BatchService({ config, handle, logger: silentLogger });
  try {
    return await fn({ handle, service, positionals, values, config });
  } finally {
    // A cancel that finished its batch writes the report and calls back before the command exits.
    await service.finisher.idle();
    await service.close();
    await handle.close();
  }
}

export function reportCommand(argv: string[]): Promise<number> {
  return withQueue(argv, { 'charged-failures': { type: 'boolean' } }, REPORT_HELP, async ({ handle, service, positionals, values }) => {
    const batchId = positionals[0];
    if (!batchId) throw new UsageError('report needs a batch id');
    if (!(await handle.batches.exists(batchId))) {
      process.stderr.write(`no batch "${batchId}"\n`);
      return 1;
    }
    if (values['charged-failures'] === true) {
      const charged = await service.chargedFailures(batchId);
      console.log(`${charged.path}\n${charged.rows} charged failure${charged.rows === 1 ? '' : 's'}`);
      return 0;
    }
    const report = await service.writeReport(batchId);
    console.log(`${report.csv}\n${report.jsonl}\n${Object.entries(report.counts).filter(([, n]) => n > 0).map(([s, n]) => `${n} ${s}`).join(', ')}`);
    return 0;
  });
}

export function pauseCommand(argv: string[], action: 'pause' | 'resume'): Promise<number> {
  return withQueue(argv, {}, PAUSE_HELP, async ({ handle, config: { prefix, queueName } }) => {
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
  return withQueue(argv, { failed: { type: 'boolean' } }, RETRY_HELP, async ({ service, positionals, values }) => {
    const batchId = positionals[0];
    if (!batchId || values.failed !== true) throw new UsageError('usage: talkbatch retry <batchId> --failed');
    const { retried } = await service.retryFailed(batchId);
    console.log(`${retried} failed rows of ${batchId} re-enqueued`);
    return 0;
  });
}

export function approveCommand(argv: string[]): Promise<number> {
  return withQueue(argv, {}, APPROVE_HELP, async ({ service, positionals }) => {
    const batchId = positionals[0];
    if (!batchId) throw new UsageError('usage: talkbatch approve <batchId>');
    const { released } = await service.approve(batchId);
    console.log(released > 0 ? `approved: ${released} held rows of ${batchId} enqueued for the workers` : `${batchId}: nothing held (approved already)`);
    return 0;
  });
}

export function cancelCommand(argv: string[]): Promise<number> {
  return withQueue(argv, {}, CANCEL_HELP, async ({ service, positionals }) => {
    const batchId = positionals[0];
    if (!batchId) throw new UsageError('usage: talkbatch cancel <batchId>');
    const result = await service.cancel(batchId);
    console.log(
      `cancelled ${batchId}: ${result.removed.length} queued rows removed` +
        (result.heldDropped > 0 ? `, ${result.heldDropped} held rows dropped` : '') +
        (result.kept.length > 0 ? `, ${result.kept.length} rows already started finish` : ''),
    );
    return 0;
  });
}
