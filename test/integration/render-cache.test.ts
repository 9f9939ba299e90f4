import { createHash } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'csv-parse/sync';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { submitBatch } from '../../src/app/submit.js';
import { enqueueManifest } from '../../src/queue/producer.js';
import { BatchOptionsSchema, CsvQuerySchema } from '../../src/server/api-schemas.js';
import { queueKeys } from '../../src/queue/keys.js';
import { RenderCacheStore } from '../../src/queue/render-cache-store.js';
import { writeBatchReport } from '../../src/report/results.js';
import { runCli } from '../helpers/cli.js';
import { FIXTURE_SHA256, FIXTURE_VIDEO, IMAGE, row, startHarness, untilBatchFinished, type Harness } from '../helpers/harness.js';
import { spawnWorker, type WorkerProcess } from '../helpers/worker-process.js';

let harness: Harness | undefined;
const processes: WorkerProcess[] = [];

afterEach(async () => {
  for (const worker of processes) worker.child.kill('SIGKILL');
  await Promise.all(processes.map((worker) => worker.exited));
  processes.length = 0;
  if (harness) await rm(harness.config.outDir, { recursive: true, force: true });
  await harness?.close();
  harness = undefined;
});

const TEMPLATE = 'Hello {{first_name}}, here is the video we made for you.';

async function writeSheet(rows: number): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'tb-cache-sheet-'));
  const path = join(dir, 'people.csv');
  const lines = ['id,first_name,image_url'];
  for (let i = 0; i < rows; i += 1) lines.push(`p${i},Person${i},https://example.com/faces/p${i}.png`);
  await writeFile(path, `${lines.join('\n')}\n`);
  return path;
}

async function sha256Of(path: string): Promise<string> {
  return createHash('sha256').update(await readFile(path)).digest('hex');
}

function cacheStore(h: Harness): RenderCacheStore {
  return new RenderCacheStore(h.handle.redis, queueKeys(h.config.prefix, h.config.queueName));
}

/** The environment of a `talkbatch` process on the harness's Redis, queue, simulator and output folder. */
function cliEnv(h: Harness, extra: Record<string, string> = {}): Record<string, string> {
  return {
    REDIS_URL: h.config.redisUrl as string,
    TALKBATCH_QUEUE: h.config.queueName,
    TALKBATCH_OUT_DIR: h.config.outDir,
    DID_API_URL: h.simulator.url,
    DID_API_KEY: h.simulator.apiKey,
    TALKBATCH_LOG_LEVEL: 'error',
    ...extra,
  };
}

describe('render cache', () => {
  it('makes a sheet run again under a new batch id from the cache: no talk created, verified files, "cached" in the report', async () => {
    harness = await startHarness({ renderMs: 100 }, { TALKBATCH_CONCURRENCY: 8 });
    const sheet = await writeSheet(8);
    await enqueueManifest(harness.handle, sheet, { template: TEMPLATE, batchId: 'first' });
    await harness.startWorker();
    expect(await untilBatchFinished(harness.handle.batches, 'first', 30_000)).toMatchObject({ done: 8, failed: 0 });
    expect(harness.simulator.stats().totalCreates).toBe(8);

    await enqueueManifest(harness.handle, sheet, { template: TEMPLATE, batchId: 'second' });
    expect(await untilBatchFinished(harness.handle.batches, 'second', 30_000)).toMatchObject({ done: 8, failed: 0 });
    expect(harness.simulator.stats().totalCreates).toBe(8);

    const first = parse<Record<string, string>>(await readFile((await writeBatchReport(harness.handle, 'first', harness.config.outDir)).csv), { columns: true });
    const report = await writeBatchReport(harness.handle, 'second', harness.config.outDir);
    const second = parse<Record<string, string>>(await readFile(report.csv), { columns: true });
    expect(second).toHaveLength(8);
    for (const [index, line] of second.entries()) {
      const source = first[index];
      expect(line).toMatchObject({ row_key: `p${index}`, status: 'done', sha256: FIXTURE_SHA256, cached_from_batch: 'first', cached_from_talk: source?.talk_id, talk_id: source?.talk_id });
      expect(source).toMatchObject({ cached_from_batch: '', cached_from_talk: '' });
      // The file is in the new batch's folder, verified, and on one file system it is the same file (a hard link).
      const copy = join(harness.config.outDir, 'second', `p${index}.mp4`);
      expect(await sha256Of(copy)).toBe(FIXTURE_SHA256);
      expect((await stat(copy)).ino).toBe((await stat(join(harness.config.outDir, 'first', `p${index}.mp4`))).ino);
    }
    expect((await readdir(join(harness.config.outDir, 'second'))).filter((name) => name.endsWith('.part') || name.endsWith('.copy'))).toEqual([]);
    const jsonl = (await readFile(report.jsonl, 'utf8')).trim().split('\n').map((text) => JSON.parse(text) as Record<string, unknown>);
    expect(jsonl[0]).toMatchObject({ status: 'done', cachedFromBatch: 'first', cachedFromTalk: first[0]?.talk_id });
    const page = await readFile(report.html, 'utf8');
    expect(page).toContain('<span class="b q">cached</span>');
    expect(page).toContain('cached from batch first');
    expect(await cacheStore(harness).counters()).toMatchObject({ hits: 8, misses: 8 });
  });

  it('creates one talk for two identical rows of a batch, under concurrency 8 with two worker processes', async () => {
    harness = await startHarness({ renderMs: 600 });
    // Four slots each under a global 8: both processes take rows, so identical rows meet within and across them.
    const env = { ...cliEnv(harness), TALKBATCH_CONCURRENCY: '8', TALKBATCH_WORKER_CONCURRENCY: '4', TALKBATCH_POLL_INITIAL_MS: '100', TALKBATCH_POLL_MAX_MS: '300', TALKBATCH_LOG_LEVEL: 'debug' };
    // Three requests, each asked for by two rows (different ids and file names, the same talk), plus two single rows.
    const rows = [0, 1, 2, 3, 4, 5, 6, 7].map((index) => {
      const request = index < 6 ? index % 3 : index;
      return row(index, { talk: { source_url: IMAGE, script: { type: 'text', input: `Hello person number ${request}, this is your video.` } } });
    });
    const workers = [spawnWorker(env), spawnWorker(env)];
    processes.push(...workers);
    await Promise.all(workers.map((worker) => worker.ready));
    await harness.enqueue('twins', rows);
    expect(await untilBatchFinished(harness.handle.batches, 'twins', 60_000, 200)).toMatchObject({ done: 8, failed: 0 });

    const stats = harness.simulator.stats();
    expect(stats.totalCreates).toBe(5);
    expect(stats.duplicateUserData).toEqual([]);
    const finished = await harness.handle.batches.finishedRows('twins', rows.map((r) => r.rowKey));
    for (const request of [0, 1, 2]) {
      const [a, b] = [finished[request], finished[request + 3]];
      expect(a?.talkId).toBeDefined();
      expect(b?.talkId).toBe(a?.talkId);
      // One of the two rendered it; the other copied it from the cache.
      expect([a?.cachedFrom, b?.cachedFrom].filter(Boolean)).toEqual([{ batchId: 'twins', talkId: a?.talkId }]);
    }
    for (const r of rows) expect(await sha256Of(join(harness.config.outDir, 'twins', r.outputName))).toBe(FIXTURE_SHA256);
    // Both processes took rows: the waiting was across processes, not only inside one.
    expect(workers.every((worker) => worker.output().includes('"batchId":"twins"'))).toBe(true);
  });

  // Another file system than the temp folder's (tmpfs on Linux): no hard link is possible there.
  const otherFs = existsSync('/dev/shm') && statSync('/dev/shm').dev !== statSync(tmpdir()).dev;
  it.skipIf(!otherFs)('copies a cached video to another file system through a verified copy', async () => {
    harness = await startHarness({ renderMs: 50 });
    const rows = [0, 1].map((index) => row(index));
    await harness.enqueue('here', rows);
    const local = await harness.startWorker();
    await untilBatchFinished(harness.handle.batches, 'here', 30_000);
    await local.close();
    const elsewhere = await mkdtemp('/dev/shm/tb-cache-');
    try {
      await harness.startWorker({ config: { ...harness.config, outDir: elsewhere } });
      await harness.enqueue('there', rows);
      expect(await untilBatchFinished(harness.handle.batches, 'there', 30_000)).toMatchObject({ done: 2, failed: 0 });
      expect(harness.simulator.stats().totalCreates).toBe(2);
      for (const r of rows) {
        const copy = join(elsewhere, 'there', r.outputName);
        expect(await sha256Of(copy)).toBe(FIXTURE_SHA256);
        expect((await stat(copy)).dev).not.toBe((await stat(join(harness.config.outDir, 'here', r.outputName))).dev);
      }
      expect((await readdir(join(elsewhere, 'there'))).sort()).toEqual(rows.map((r) => r.outputName).sort());
      const finished = await harness.handle.batches.finishedRows('there', rows.map((r) => r.rowKey));
      expect(finished.map((entry) => entry?.cachedFrom?.batchId)).toEqual(['here', 'here']);
    } finally {
      await rm(elsewhere, { recursive: true, force: true });
    }
  });

  it('renders a row again when its cached file was deleted or changed, and drops the entry', async () => {
    harness = await startHarness({ renderMs: 100 });
    const rows = [0, 1, 2, 3].map((index) => row(index));
    await harness.enqueue('made', rows);
    await harness.startWorker();
    await untilBatchFinished(harness.handle.batches, 'made', 30_000);
    expect(harness.simulator.stats().totalCreates).toBe(4);
    await unlink(join(harness.config.outDir, 'made', 'row0000.mp4'));
    // Same size, other bytes: only the sha256 check can tell.
    const changed = Buffer.from(FIXTURE_VIDEO);
    changed[changed.length - 1] = (changed.at(-1) ?? 0) ^ 0xff;
    await writeFile(join(harness.config.outDir, 'made', 'row0001.mp4'), changed);

    await harness.enqueue('again', rows);
    expect(await untilBatchFinished(harness.handle.batches, 'again', 30_000)).toMatchObject({ done: 4, failed: 0 });
    expect(harness.simulator.stats().totalCreates).toBe(6);
    const finished = await harness.handle.batches.finishedRows('again', rows.map((r) => r.rowKey));
    expect(finished.map((entry) => entry?.cachedFrom?.batchId ?? null)).toEqual([null, null, 'made', 'made']);
    for (const r of rows) expect(await sha256Of(join(harness.config.outDir, 'again', r.outputName))).toBe(FIXTURE_SHA256);
    expect(await cacheStore(harness).counters()).toMatchObject({ hits: 2, dropped: 2 });

    // The new renders are the cache's entries now: a third batch is served entirely from it.
    await harness.enqueue('third', rows);
    await untilBatchFinished(harness.handle.batches, 'third', 30_000);
    expect(harness.simulator.stats().totalCreates).toBe(6);
    const third = await harness.handle.batches.finishedRows('third', rows.map((r) => r.rowKey));
    expect(third.map((entry) => entry?.cachedFrom?.batchId)).toEqual(['again', 'again', 'made', 'made']);
  });

  it('makes new talks for a batch enqueued with --no-cache, and stores the setting with the batch', async () => {
    harness = await startHarness({ renderMs: 100 });
    const sheet = await writeSheet(3);
    await enqueueManifest(harness.handle, sheet, { template: TEMPLATE, batchId: 'cached-once' });
    await harness.startWorker();
    await untilBatchFinished(harness.handle.batches, 'cached-once', 30_000);
    expect(harness.simulator.stats().totalCreates).toBe(3);

    const enqueued = await runCli(['enqueue', sheet, '--template', TEMPLATE, '--batch', 'fresh', '--no-cache'], cliEnv(harness));
    expect(enqueued.code, enqueued.stderr).toBe(0);
    expect((await harness.handle.batches.get('fresh'))?.cache).toBe(false);
    expect(await untilBatchFinished(harness.handle.batches, 'fresh', 30_000)).toMatchObject({ done: 3, failed: 0 });
    expect(harness.simulator.stats().totalCreates).toBe(6);
    const report = parse<Record<string, string>>(await readFile((await writeBatchReport(harness.handle, 'fresh', harness.config.outDir)).csv), { columns: true });
    expect(report.map((line) => line.cached_from_batch)).toEqual(['', '', '']);
    expect(await cacheStore(harness).counters()).toMatchObject({ hits: 0, misses: 3, bypassed: 3 });

    // Without --no-cache the same sheet is copied again (from the newest renders).
    await enqueueManifest(harness.handle, sheet, { template: TEMPLATE, batchId: 'copied' });
    await untilBatchFinished(harness.handle.batches, 'copied', 30_000);
    expect(harness.simulator.stats().totalCreates).toBe(6);
    expect((await harness.handle.batches.get('copied'))?.cache).toBe(true);

    // The REST API and the library take the same setting (`cache: false`, `?cache=false` for CSV bodies).
    expect(BatchOptionsSchema.parse({ cache: false })).toEqual({ cache: false });
    expect(CsvQuerySchema.parse({ cache: 'false' })).toEqual({ cache: false });
    await submitBatch(harness.handle, { rows: [{ id: 'api', image_url: IMAGE, script: 'Hello from the API, this is your video.' }] }, { batchId: 'api-fresh', cache: false });
    expect((await harness.handle.batches.get('api-fresh'))?.cache).toBe(false);
  });

  it('takes over the claim of a worker killed mid-render and adopts its talk instead of paying twice', async () => {
    harness = await startHarness({ renderMs: 6_000 });
    const env = {
      ...cliEnv(harness),
      TALKBATCH_POLL_INITIAL_MS: '100',
      TALKBATCH_POLL_MAX_MS: '300',
      TALKBATCH_LOCK_MS: '2000',
      TALKBATCH_STALLED_INTERVAL_MS: '1000',
      TALKBATCH_RENDER_CACHE_CLAIM_MS: '1000',
      TALKBATCH_LOG_LEVEL: 'debug',
    };
    const talk = { source_url: IMAGE, script: { type: 'text' as const, input: 'One request, asked for twice.' } };
    const doomed = spawnWorker(env);
    processes.push(doomed);
    await doomed.ready;
    await harness.enqueue('takeover', [row(0, { talk })]);
    await vi.waitFor(() => expect(harness?.simulator.stats().totalCreates).toBe(1), { timeout: 20_000, interval: 50 });
    doomed.child.kill('SIGKILL');
    await doomed.exited;

    // The identical row comes after the claimant died with its talk rendering; its claim lapses and is taken over.
    await harness.enqueue('takeover', [row(1, { talk })]);
    const survivor = spawnWorker(env);
    processes.push(survivor);
    await survivor.ready;
    expect(await untilBatchFinished(harness.handle.batches, 'takeover', 60_000, 200)).toMatchObject({ done: 2, failed: 0 });
    expect(harness.simulator.stats().totalCreates).toBe(1);
    const [first, second] = await harness.handle.batches.finishedRows('takeover', ['row0000', 'row0001']);
    expect(second?.talkId).toBe(first?.talkId);
    expect(survivor.output()).toContain('took over a lapsed render-cache claim and adopted its talk');
    for (const name of ['row0000.mp4', 'row0001.mp4']) expect(await sha256Of(join(harness.config.outDir, 'takeover', name))).toBe(FIXTURE_SHA256);
  }, 120_000);

  it('lets a waiting identical row take over at once when the claimant fails for good', async () => {
    // Every talk ends in error; the claim would outlive the test if only its expiry freed it.
    harness = await startHarness({ renderMs: 100, errorRate: 1 }, { TALKBATCH_RENDER_CACHE_CLAIM_MS: 600_000 });
    const talk = { source_url: IMAGE, script: { type: 'text' as const, input: 'A request D-ID cannot render.' } };
    await harness.enqueue('doomed', [row(0, { talk }), row(1, { talk })]);
    await harness.startWorker();
    expect(await untilBatchFinished(harness.handle.batches, 'doomed', 20_000)).toMatchObject({ done: 0, failed: 2 });
    // The waiter rendered on its own after the claimant failed: a failed talk is never copied or adopted.
    expect(harness.simulator.stats().totalCreates).toBe(2);
    expect(await cacheStore(harness).size()).toBe(0);
  });

  it('reports and prunes the cache from the CLI', async () => {
    harness = await startHarness({ renderMs: 50 });
    const rows = [0, 1, 2].map((index) => row(index));
    await harness.enqueue('listed', rows);
    await harness.startWorker();
    await untilBatchFinished(harness.handle.batches, 'listed', 30_000);

    const stats = await runCli(['cache', 'stats', '--json'], cliEnv(harness));
    expect(stats.code, stats.stderr).toBe(0);
    expect(JSON.parse(stats.stdout)).toMatchObject({ entries: 3, bytes: 3 * FIXTURE_VIDEO.length, hits: 0, misses: 3, dropped: 0 });
    const human = await runCli(['cache', 'stats'], cliEnv(harness));
    expect(human.stdout).toMatch(/^entries +3$/m);

    await unlink(join(harness.config.outDir, 'listed', 'row0002.mp4'));
    const young = await runCli(['cache', 'prune', '--older-than', '30d', '--json'], cliEnv(harness));
    expect(young.code, young.stderr).toBe(0);
    expect(JSON.parse(young.stdout)).toEqual({ seen: 3, dropped: 1, kept: 2 });
    expect(await cacheStore(harness).size()).toBe(2);

    const bad = await runCli(['cache', 'prune', '--older-than', 'soon'], cliEnv(harness));
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--older-than takes an age like 30d');
    expect(await cacheStore(harness).size()).toBe(2);

    const all = await runCli(['cache', 'prune', '--all'], cliEnv(harness));
    expect(all.code, all.stderr).toBe(0);
    expect(all.stdout).toContain('dropped 2 of 2 entries');
    expect(JSON.parse((await runCli(['cache', 'stats', '--json'], cliEnv(harness))).stdout)).toMatchObject({ entries: 0, bytes: 0 });
    // Prune forgets entries; the videos stay where their batch put them.
    expect(await sha256Of(join(harness.config.outDir, 'listed', 'row0000.mp4'))).toBe(FIXTURE_SHA256);
  });
});
