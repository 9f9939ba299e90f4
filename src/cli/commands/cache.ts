import { parseArgs } from 'node:util';
import { parseAge, pruneRenderCache, renderCacheStats, renderCacheStore } from '../../app/render-cache.js';
import { openQueue } from '../../queue/talk-queue.js';
import { UsageError } from '../../shared/errors.js';
import { configFromFlags, GLOBAL_HELP, GLOBAL_OPTIONS } from '../context.js';

export const CACHE_HELP = `Usage: talkbatch cache stats [--json]
       talkbatch cache prune [--older-than AGE] [--all] [--json]

The render cache: a row whose request (image or its bytes, script after templating, voice, config) was
rendered and downloaded before, in any batch of this queue, gets a copy of that video (hard-linked when
on the same file system) instead of a new paid talk. It lives in the workers' Redis (REDIS_URL).

stats   entries, their total size, and the hits / misses counted since the cache began
prune   drop entries whose video file is gone or changed size; with --older-than AGE (30d, 12h, 90m,
        2w) also entries written longer ago; with --all every entry. Videos are never deleted.

Options:
  --older-than AGE       see prune
  --all                  see prune
  --json                 print the result as JSON
${GLOBAL_HELP}`;

export async function cacheCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { ...GLOBAL_OPTIONS, 'older-than': { type: 'string' }, all: { type: 'boolean' }, json: { type: 'boolean' } },
  });
  if (values.help) {
    console.log(CACHE_HELP);
    return 0;
  }
  const [action, ...extra] = positionals;
  if (action !== 'stats' && action !== 'prune') throw new UsageError('cache needs an action: stats or prune (talkbatch cache --help)');
  if (extra.length > 0) throw new UsageError(`cache ${action} takes no arguments (got "${extra.join(' ')}")`);
  if (action === 'stats' && (values['older-than'] !== undefined || values.all)) throw new UsageError('--older-than and --all are prune options');
  const olderThanMs = values['older-than'] === undefined ? undefined : parseAge(values['older-than']);
  if (values['older-than'] !== undefined && olderThanMs === undefined) {
    throw new UsageError(`--older-than takes an age like 30d, 12h, 90m, 45s or 2w (got "${values['older-than']}")`);
  }
  const config = configFromFlags(values);
  if (!config.redisUrl) throw new UsageError('REDIS_URL is not set: the render cache lives in the Redis your workers use');
  const handle = await openQueue(config, config.redisUrl);
  try {
    const store = renderCacheStore(handle.redis, config.prefix, config.queueName);
    if (action === 'stats') {
      const stats = await renderCacheStats(store);
      if (values.json) {
        console.log(JSON.stringify(stats, null, 2));
      } else {
        const looked = stats.hits + stats.misses;
        console.log(
          [
            `entries    ${stats.entries}${stats.unreadable > 0 ? ` (+${stats.unreadable} unreadable; prune drops them)` : ''}`,
            `bytes      ${stats.bytes} (${(stats.bytes / 1024 / 1024).toFixed(1)} MiB)`,
            `hits       ${stats.hits}`,
            `misses     ${stats.misses}${looked > 0 ? ` (hit rate ${Math.round((stats.hits / looked) * 100)} %)` : ''}`,
            `bypassed   ${stats.bypassed} (rows of --no-cache batches)`,
            `dropped    ${stats.dropped} (file gone or changed, or pruned)`,
            ...(stats.oldest ? [`oldest     ${stats.oldest}`, `newest     ${stats.newest}`] : []),
          ].join('\n'),
        );
      }
      return 0;
    }
    const result = await pruneRenderCache(store, { ...(olderThanMs !== undefined ? { olderThanMs } : {}), ...(values.all ? { all: true } : {}) });
    if (values.json) console.log(JSON.stringify(result, null, 2));
    else console.log(`dropped ${result.dropped} of ${result.seen} entries; ${result.kept} kept`);
    return 0;
  } finally {
    await handle.close();
  }
}
