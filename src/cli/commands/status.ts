import { parseArgs } from 'node:util';
import { batchCredits, type BatchCredits } from '../../queue/credits.js';
import { openQueue } from '../../queue/talk-queue.js';
import { UsageError } from '../../shared/errors.js';
import { configFromFlags, GLOBAL_HELP, GLOBAL_OPTIONS, onStopSignals, stderrIsTty } from '../context.js';
import { describeCounts, watchBatch } from '../progress.js';

export const STATUS_HELP = `Usage: talkbatch status [batchId] [options]

Without a batch id: the queue's job counts and the newest batches. With one: that batch's counts and
credits (D-ID's balance before its first talk and after its last, and what its talks cost).

Options:
  --watch                follow the batch until it finishes (a bar on a terminal, lines otherwise)
  --json                 print JSON
  --limit N              batches to list (default 20)
${GLOBAL_HELP}`;

export async function statusCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { ...GLOBAL_OPTIONS, watch: { type: 'boolean', short: 'w' }, json: { type: 'boolean' }, limit: { type: 'string' } },
  });
  if (values.help) {
    console.log(STATUS_HELP);
    return 0;
  }
  const config = configFromFlags(values);
  if (!config.redisUrl) throw new UsageError('REDIS_URL is not set: status reads the Redis your workers use');
  const handle = await openQueue(config, config.redisUrl);
  try {
    const batchId = positionals[0];
    if (batchId) {
      const batch = await handle.batches.get(batchId);
      if (!batch) {
        process.stderr.write(`no batch "${batchId}"\n`);
        return 1;
      }
      if (values.watch) {
        const stop = new AbortController();
        const removeSignals = onStopSignals(() => stop.abort());
        try {
          await watchBatch({ batches: handle.batches, batchId, tty: stderrIsTty(), signal: stop.signal });
        } finally {
          removeSignals();
        }
        return 0;
      }
      const credits = batchCredits(await handle.batches.creditLedger(batchId));
      if (values.json) console.log(JSON.stringify({ ...batch, credits }, null, 2));
      else {
        const sample = !batch.sample
          ? ''
          : batch.sample.approvedAt
            ? `\nsample of ${batch.sample.size} approved ${batch.sample.approvedAt}`
            : batch.cancelledAt
              ? `\nsample of ${batch.sample.size} rejected (cancelled ${batch.cancelledAt})`
              : `\nsample of ${batch.sample.size}: ${batch.counts.held} rows held until "talkbatch approve ${batchId}"`;
        console.log(`${describeCounts(batchId, batch.counts)}\ncreated ${batch.createdAt} from ${batch.source}${batch.finishedAt ? `, finished ${batch.finishedAt}` : ''}${sample}`);
        console.log(describeCredits(credits));
      }
      return 0;
    }
    const [jobCounts, paused, ids] = await Promise.all([
      handle.queue.getJobCounts('waiting', 'active', 'delayed', 'completed', 'failed', 'prioritized'),
      handle.queue.isPaused(),
      handle.batches.list(0, Number(values.limit ?? 20)),
    ]);
    const batches = await Promise.all(ids.map((id) => handle.batches.get(id)));
    if (values.json) {
      console.log(JSON.stringify({ queue: config.queueName, paused, jobs: jobCounts, batches: batches.filter(Boolean) }, null, 2));
      return 0;
    }
    console.log(`queue ${config.queueName}${paused ? ' (PAUSED)' : ''}: ${Object.entries(jobCounts).map(([state, n]) => `${n} ${state}`).join(', ')}`);
    for (const batch of batches) {
      if (batch) console.log(`  ${describeCounts(batch.id, batch.counts)}${batch.finishedAt ? ' [finished]' : batch.counts.held > 0 ? ' [sample: awaiting approval]' : ''}`);
    }
    if (batches.length === 0) console.log('  no batches yet');
    return 0;
  } finally {
    await handle.close();
  }
}

/** `credits: 1000 before, 990 after, 10 used (D-ID's balance); 10 counted for its talks`. */
export function describeCredits(credits: BatchCredits): string {
  const figure = (value: number | null, unknown: string): string => (value === null ? unknown : String(value));
  return (
    `credits: ${figure(credits.before, 'unknown')} before, ${figure(credits.after, credits.before === null ? 'unknown' : 'not yet')} after, ` +
    `${figure(credits.used, '?')} used (D-ID's balance); ${credits.estimated} counted for its talks`
  );
}
