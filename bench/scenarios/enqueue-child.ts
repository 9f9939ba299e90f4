/*
 * One enqueue measurement in a fresh process, so its peak RSS is its own. Prints one JSON line.
 *   tsx bench/scenarios/enqueue-child.ts talkbatch <redisUrl> <csv> [dist]   enqueueManifest, as `talkbatch enqueue` does
 *   tsx bench/scenarios/enqueue-child.ts raw <redisUrl> <csv> [dist]         the same payloads, prepared first, then only queue.addBulk
 * With [dist] (a build of src/, as `npm run build` makes it) talkbatch's code is the compiled JavaScript users run,
 * not tsx's on-the-fly transform (which adds a helper call per function created).
 */
import { pathToFileURL } from 'node:url';
import type * as ConfigModule from '../../src/config/index.js';
import type * as ManifestModule from '../../src/manifest/index.js';
import type * as PayloadModule from '../../src/queue/payload.js';
import type * as ProducerModule from '../../src/queue/producer.js';
import type * as TalkQueueModule from '../../src/queue/talk-queue.js';
import type { JobPayload } from '../../src/queue/payload.js';
import { TEMPLATE } from '../lib/rows.js';

const CHUNK = 500;
const [mode, redisUrl, csv, dist] = process.argv.slice(2);
if ((mode !== 'talkbatch' && mode !== 'raw') || !redisUrl || !csv) throw new Error('usage: enqueue-child.ts talkbatch|raw <redisUrl> <csv> [dist]');
const from = (path: string): string => (dist === undefined ? new URL(`../../src/${path}`, import.meta.url).href : pathToFileURL(`${dist}/${path}`).href);
const { loadConfig } = (await import(from('config/index.js'))) as typeof ConfigModule;
const { readManifest } = (await import(from('manifest/index.js'))) as typeof ManifestModule;
const { enqueueManifest, payloadFor } = (await import(from('queue/producer.js'))) as typeof ProducerModule;
const { JOB_NAME, jobIdFor } = (await import(from('queue/payload.js'))) as typeof PayloadModule;
const { openQueue } = (await import(from('queue/talk-queue.js'))) as typeof TalkQueueModule;

const config = loadConfig({ dotenvPath: false, env: { REDIS_URL: redisUrl, TALKBATCH_LOG_LEVEL: 'silent' } });
const handle = await openQueue(config, redisUrl);
const batchId = `enqueue-${mode}`;
let rows = 0;
let ms: number;
if (mode === 'talkbatch') {
  const started = performance.now();
  const result = await enqueueManifest(handle, csv, { batchId, template: TEMPLATE });
  ms = performance.now() - started;
  rows = result.added;
} else {
  // Not timed: reading and validating the sheet into memory.
  const payloads: JobPayload[] = [];
  for await (const record of readManifest(csv, { template: TEMPLATE })) if (record.ok === true) payloads.push(payloadFor(batchId, record.row));
  const started = performance.now();
  for (let start = 0; start < payloads.length; start += CHUNK) {
    await handle.queue.addBulk(payloads.slice(start, start + CHUNK).map((data) => ({ name: JOB_NAME, data, opts: { jobId: jobIdFor(batchId, data.rowKey) } })));
  }
  ms = performance.now() - started;
  rows = payloads.length;
}
const jobs = await handle.queue.count();
await handle.close();
console.log(JSON.stringify({ mode, rows, jobs, ms, maxRssMB: process.resourceUsage().maxRSS / 1024 }));
