import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parse } from 'csv-parse/sync';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { jobIdFor } from '../../src/queue/payload.js';
import { runCli } from '../helpers/cli.js';
import { row, startHarness, type Harness } from '../helpers/harness.js';

let harness: Harness | undefined;
afterEach(async () => {
  await harness?.close();
  harness = undefined;
});

describe('report and retry --failed', () => {
  it('rebuilds the report from Redis, and retries only failed rows with a fresh talk each', async () => {
    harness = await startHarness({ renderMs: 100, errorRate: 1 });
    const h = harness;
    await h.startWorker();
    await h.enqueue('again', [row(0), row(1)]);
    await vi.waitFor(async () => expect((await h.handle.batches.counts('again')).failed).toBe(2), { timeout: 15_000, interval: 100 });
    h.simulator.setKnobs({ errorRate: 0 });
    await h.enqueue('again', [row(2)]);
    await vi.waitFor(async () => expect((await h.handle.batches.counts('again')).done).toBe(1), { timeout: 15_000, interval: 100 });

    const env = { REDIS_URL: h.config.redisUrl, TALKBATCH_QUEUE: h.config.queueName, TALKBATCH_OUT_DIR: h.config.outDir };
    const report = await runCli(['report', 'again'], env);
    expect(report.code, report.stderr).toBe(0);
    const before = parse<Record<string, string>>(await readFile(join(h.config.outDir, 'again', 'results.csv')), { columns: true });
    expect(before.map((r) => [r.row_key, r.status, r.error_kind])).toEqual([
      ['row0000', 'failed', 'FaceError'],
      ['row0001', 'failed', 'FaceError'],
      ['row0002', 'done', ''],
    ]);

    const retry = await runCli(['retry', 'again', '--failed'], env);
    expect(retry.code, retry.stderr).toBe(0);
    expect(retry.stdout).toContain('2 failed rows of again re-enqueued');
    await vi.waitFor(async () => expect((await h.handle.batches.counts('again')).done).toBe(3), { timeout: 15_000, interval: 100 });

    const stats = h.simulator.stats();
    expect(stats.totalCreates).toBe(5);
    // The retried rows carry a new user_data tag, so the failed talks are never adopted again.
    expect(stats.createsByUserData[`${jobIdFor('again', 'row0000')}#1`]).toBe(1);
    expect(stats.duplicateUserData).toEqual([]);
    expect((await h.handle.queue.getJob(jobIdFor('again', 'row0002')))?.data.generation).toBe(0);
  });
});
