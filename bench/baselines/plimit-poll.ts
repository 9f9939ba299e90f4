/*
 * The usual hand-written batch script: p-limit caps the talks in flight, each talk is polled every
 * 2 s until it is done, then its MP4 is fetched and written. A 429 waits Retry-After (else 2 s) and
 * tries again. No queue, no Redis, no checkpoints: a crash loses the batch's progress. This is what
 * talkbatch is measured against in `npm run bench`.
 *
 * Standalone: tsx bench/baselines/plimit-poll.ts --api http://127.0.0.1:8787 --key sim-user:sim-secret --rows 50 --concurrency 8
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import pLimit from 'p-limit';

export interface BaselineRow {
  id: string;
  /** The POST /talks body. */
  body: object;
}

export interface BaselineOptions {
  apiUrl: string;
  apiKey: string;
  rows: readonly BaselineRow[];
  concurrency: number;
  /** Sleep between polls (and before the first one). Default 2000. */
  pollMs?: number;
  outDir: string;
  /** Called when a row's MP4 is on disk. */
  onRowDone?: (id: string, talkId: string) => void;
}

export interface BaselineResult {
  ms: number;
  done: number;
  failed: number;
  rateLimited: number;
  polls: number;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export async function runPlimitPoll(options: BaselineOptions): Promise<BaselineResult> {
  const pollMs = options.pollMs ?? 2000;
  const headers = { authorization: `Basic ${options.apiKey}`, 'content-type': 'application/json' };
  const limit = pLimit(options.concurrency);
  let rateLimited = 0;
  let polls = 0;
  let failed = 0;
  await mkdir(options.outDir, { recursive: true });

  async function makeVideo(row: BaselineRow): Promise<void> {
    let talkId: string;
    for (;;) {
      const created = await fetch(`${options.apiUrl}/talks`, { method: 'POST', headers, body: JSON.stringify({ ...row.body, user_data: row.id }) });
      if (created.status === 429) {
        rateLimited += 1;
        await created.arrayBuffer();
        const retryAfter = Number(created.headers.get('retry-after'));
        await sleep(Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter * 1000 : 2000);
        continue;
      }
      if (!created.ok) throw new Error(`create ${row.id}: HTTP ${created.status}`);
      talkId = ((await created.json()) as { id: string }).id;
      break;
    }
    for (;;) {
      await sleep(pollMs);
      polls += 1;
      const talk = (await (await fetch(`${options.apiUrl}/talks/${talkId}`, { headers })).json()) as { status: string; result_url?: string };
      if (talk.status === 'error' || talk.status === 'rejected') throw new Error(`talk ${talkId} ended ${talk.status}`);
      if (talk.status !== 'done' || !talk.result_url) continue;
      const video = await fetch(talk.result_url);
      if (!video.ok) throw new Error(`download ${row.id}: HTTP ${video.status}`);
      await writeFile(join(options.outDir, `${row.id}.mp4`), Buffer.from(await video.arrayBuffer()));
      options.onRowDone?.(row.id, talkId);
      return;
    }
  }

  const started = performance.now();
  const results = await Promise.allSettled(options.rows.map((row) => limit(() => makeVideo(row))));
  failed = results.filter((result) => result.status === 'rejected').length;
  return { ms: performance.now() - started, done: results.length - failed, failed, rateLimited, polls };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({
    options: {
      api: { type: 'string', default: 'http://127.0.0.1:8787' },
      key: { type: 'string', default: 'sim-user:sim-secret' },
      rows: { type: 'string', default: '20' },
      concurrency: { type: 'string', default: '8' },
      out: { type: 'string', default: 'out/baseline' },
    },
  });
  const rows = Array.from({ length: Number(values.rows) }, (_, index) => ({
    id: `baseline-${index}`,
    body: { source_url: 'https://d-id-public-bucket.s3.us-west-2.amazonaws.com/alice.jpg', script: { type: 'text', input: `Hello number ${index}` } },
  }));
  const result = await runPlimitPoll({ apiUrl: values.api, apiKey: values.key, rows, concurrency: Number(values.concurrency), outDir: values.out });
  console.log(JSON.stringify(result));
}
