import { parseArgs } from 'node:util';
import { ShareStore } from '../../queue/previews.js';
import { openQueue } from '../../queue/talk-queue.js';
import { UsageError } from '../../shared/errors.js';
import { configFromFlags, GLOBAL_HELP, GLOBAL_OPTIONS } from '../context.js';

export const SHARE_HELP = `Usage: talkbatch share revoke <batchId> [rowKey] [options]

Turns off share-page links (served by "talkbatch serve" under /s/<token>): every link of the batch,
or only the row's. A revoked link answers 410 Gone from then on; the videos stay on disk.
${GLOBAL_HELP}`;

export async function shareCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: GLOBAL_OPTIONS });
  if (values.help) {
    console.log(SHARE_HELP);
    return 0;
  }
  const [action, batchId, rowKey, ...extra] = positionals;
  if (action !== 'revoke') throw new UsageError(`share: unknown action "${action ?? ''}" (talkbatch share --help)`);
  if (!batchId || extra.length > 0) throw new UsageError('usage: talkbatch share revoke <batchId> [rowKey]');
  const config = configFromFlags(values);
  if (!config.redisUrl) throw new UsageError('REDIS_URL is not set: this command works on the Redis your workers use');
  const handle = await openQueue(config, config.redisUrl);
  try {
    if (!(await handle.batches.exists(batchId))) {
      process.stderr.write(`no batch "${batchId}"\n`);
      return 1;
    }
    const revoked = await new ShareStore(handle.redis, config.prefix, config.queueName).revoke(batchId, rowKey);
    console.log(`${revoked} share link${revoked === 1 ? '' : 's'} revoked${rowKey ? ` (row ${rowKey})` : ''} in batch ${batchId}`);
    return 0;
  } finally {
    await handle.close();
  }
}
