/*
 * One enqueue measurement in a fresh process, so its peak RSS is its own. Prints one JSON line.
 *   tsx bench/scenarios/enqueue-child.ts talkbatch <redisUrl> <csv>   enqueueManifest, as `talkbatch enqueue` does
 *   tsx bench/scenarios/enqueue-child.ts raw <redisUrl> <csv>         the same payloads, prepared first, then only queue.addBulk
 */
import { loadConfig } from '../../src/config/index.js';
import { readManifest } from '../../src/manifest/index.js';
import { enqueueManifest, payloadFor } from '../../src/queue/producer.js';
import { JOB_NAME, jobIdFor, type JobPayload } from '../../src/queue/payload.js';
import { openQueue } from '../../src/queue/talk-queue.js';
import { TEMPLATE } from '../lib/rows.js';

const CHUNK = 500;
const [mode, redisUrl, csv] = process.argv.slice(2);
if ((mode !== 'talkbatch' && mode !== 'raw') || !redisUrl || !csv) throw new Error('usage: enqueue-child.ts talkbatch|raw <redisUrl> <csv>');

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
