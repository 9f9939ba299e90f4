import { createHash } from 'node:crypto';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { jobIdFor } from '../../src/queue/payload.js';
import { FIXTURE_SHA256, renderLimitOf, row, startHarness, untilBatchFinished, type Harness } from '../helpers/harness.js';

let harness: Harness | undefined;
afterEach(async () => {
  await harness?.close();
  harness = undefined;
});

function waitForBatch(h: Harness, batchId: string, timeout = 30_000) {
  return untilBatchFinished(h.handle.batches, batchId, timeout);
}

async function expectVideos(h: Harness, batchId: string, count: number): Promise<void> {
  const dir = join(h.config.outDir, batchId);
  const files = (await readdir(dir)).filter((name) => name.endsWith('.mp4'));
  expect(files).toHaveLength(count);
  for (const file of files) {
    const sha = createHash('sha256').update(await readFile(join(dir, file))).digest('hex');
    expect(sha, file).toBe(FIXTURE_SHA256);
  }
  expect((await readdir(dir)).filter((name) => name.endsWith('.part'))).toEqual([]);
}

describe('worker', () => {
  it('renders and downloads every row under the global concurrency cap', async () => {
    harness = await startHarness({ renderMs: 150 }, { TALKBATCH_CONCURRENCY: 3 });
    await harness.startWorker();
    await harness.startWorker();
    await harness.enqueue('b1', Array.from({ length: 12 }, (_, i) => row(i)));
    const counts = await waitForBatch(harness, 'b1');
    expect(counts).toMatchObject({ total: 12, done: 12, failed: 0 });
    await expectVideos(harness, 'b1', 12);
    const stats = harness.simulator.stats();
    expect(stats.totalCreates).toBe(12);
    expect(stats.duplicateUserData).toEqual([]);
    // Two workers of concurrency 3 each, one global cap of 3.
    expect(stats.maxConcurrentRendersSeen).toBeLessThanOrEqual(3);
    const job = await harness.handle.queue.getJob(jobIdFor('b1', 'row0000'));
    expect(job?.returnvalue).toMatchObject({ status: 'done', sha256: FIXTURE_SHA256, bytes: 17116 });
  });

  it('fails a row whose talk ends in error with D-ID kind and description, without retrying', async () => {
    harness = await startHarness({ errorRate: 1 });
    await harness.startWorker();
    await harness.enqueue('b2', [row(1)]);
    const counts = await waitForBatch(harness, 'b2');
    expect(counts).toMatchObject({ done: 0, failed: 1 });
    const job = await harness.handle.queue.getJob(jobIdFor('b2', 'row0001'));
    expect(job?.failedReason).toBe('FaceError: face not detected');
    expect(job?.attemptsMade).toBe(1);
    expect(job?.data.state?.failure).toMatchObject({ kind: 'FaceError', description: 'face not detected' });
    expect(harness.simulator.stats().totalCreates).toBe(1);
  });

  it('fails a rejected talk with its moderation kind', async () => {
    harness = await startHarness({ rejectRate: 1 });
    await harness.startWorker();
    await harness.enqueue('b3', [row(1)]);
    await waitForBatch(harness, 'b3');
    const job = await harness.handle.queue.getJob(jobIdFor('b3', 'row0001'));
    expect(job?.data.state?.failure?.kind).toBe('TextModerationError');
  });

  it('adopts a talk whose create answered 504 instead of paying again', async () => {
    harness = await startHarness({ gateway504AfterCreateRate: 1 });
    await harness.startWorker();
    await harness.enqueue('b4', [row(1), row(2)]);
    // Every create answers 504 but happened: the retry must find the talk instead of creating it again.
    await vi.waitFor(() => expect(harness?.simulator.stats().totalCreates).toBe(2), { timeout: 10_000 });
    harness.simulator.setKnobs({ gateway504AfterCreateRate: 0 });
    const counts = await waitForBatch(harness, 'b4');
    expect(counts).toMatchObject({ done: 2, failed: 0 });
    expect(harness.simulator.stats().totalCreates).toBe(2);
    expect(harness.simulator.stats().duplicateUserData).toEqual([]);
  });

  it("keeps the user's own user_data and still adopts the talk after a 504-after-create", async () => {
    harness = await startHarness({ gateway504AfterCreateRate: 1 });
    await harness.startWorker();
    const withOwn = (i: number) => row(i, { talk: { ...row(i).talk, user_data: `crm-${i}` } });
    await harness.enqueue('b4u', [withOwn(1), withOwn(2)]);
    await vi.waitFor(() => expect(harness?.simulator.stats().totalCreates).toBe(2), { timeout: 10_000 });
    harness.simulator.setKnobs({ gateway504AfterCreateRate: 0 });
    expect(await waitForBatch(harness, 'b4u')).toMatchObject({ done: 2, failed: 0 });
    const stats = harness.simulator.stats();
    expect(stats.totalCreates).toBe(2);
    expect(stats.duplicateUserData).toEqual([]);
    // The user's value reaches D-ID (and so its list and webhook) first and unchanged.
    expect(Object.keys(stats.createsByUserData).sort()).toEqual(['crm-1 [talkbatch b4u-row0001]', 'crm-2 [talkbatch b4u-row0002]']);
  });

  it('backs off on 429 from a plan cap below its concurrency and still finishes every row', async () => {
    harness = await startHarness({ renderMs: 200, maxConcurrentRenders: 2, retryAfterSeconds: null }, { TALKBATCH_CONCURRENCY: 6 });
    await harness.startWorker();
    await harness.enqueue('b5', Array.from({ length: 10 }, (_, i) => row(i)));
    const counts = await waitForBatch(harness, 'b5');
    expect(counts).toMatchObject({ done: 10, failed: 0 });
    const stats = harness.simulator.stats();
    expect(stats.responsesByStatus['429']).toBeGreaterThan(0);
    expect(stats.totalCreates).toBe(10);
    expect(await renderLimitOf(harness.handle, harness.config)).toBeLessThan(6);
    for (let i = 0; i < 10; i += 1) {
      const job = await harness.handle.queue.getJob(jobIdFor('b5', row(i).rowKey));
      // 1 is the completion itself; a 429 hand-back must not add to it.
      expect(job?.attemptsMade).toBe(1);
    }
  });

  it('pauses on 402 without failing rows and resumes when credits return', async () => {
    harness = await startHarness({ credits: 2, renderMs: 100 });
    await harness.startWorker();
    await harness.enqueue('b6', Array.from({ length: 5 }, (_, i) => row(i)));
    await vi.waitFor(async () => expect(await harness?.handle.queue.isPaused()).toBe(true), { timeout: 10_000 });
    expect((await harness.handle.batches.counts('b6')).failed).toBe(0);
    harness.simulator.setKnobs({ credits: 100 });
    const counts = await waitForBatch(harness, 'b6');
    expect(counts).toMatchObject({ done: 5, failed: 0 });
    expect(await harness.handle.queue.isPaused()).toBe(false);
  });

  it('renews expired links and resumes truncated downloads, leaving only complete files', async () => {
    harness = await startHarness({ expireBeforeDownloadRate: 0.5, truncateDownloadRate: 0.5 });
    await harness.startWorker();
    await harness.enqueue('b7', Array.from({ length: 8 }, (_, i) => row(i)));
    const counts = await waitForBatch(harness, 'b7');
    expect(counts).toMatchObject({ done: 8, failed: 0 });
    await expectVideos(harness, 'b7', 8);
  });

  it('fails a job whose payload is invalid at once, without calling D-ID', async () => {
    harness = await startHarness();
    await harness.startWorker();
    await harness.handle.batches.create('b8', 'test');
    await harness.handle.queue.add('talk', { v: 1, batchId: 'b8', rowKey: 'x', talk: { script: { type: 'text', input: 'no' } } } as never, { jobId: 'b8-x' });
    await vi.waitFor(async () => expect(await (await harness?.handle.queue.getJob('b8-x'))?.getState()).toBe('failed'));
    const job = await harness.handle.queue.getJob('b8-x');
    expect(job?.failedReason).toMatch(/^PAYLOAD_INVALID: /);
    expect(job?.attemptsMade).toBe(1);
    expect(harness.simulator.stats().totalRequests).toBe(0);
  });
});

describe('batch budgets', () => {
  it('never creates more talks than --max-talks, even with several workers', async () => {
    harness = await startHarness({ renderMs: 100 }, { TALKBATCH_CONCURRENCY: 6 });
    await harness.handle.batches.create('budget', 'test', { budget: { maxTalks: 4 } });
    await harness.enqueue('budget', Array.from({ length: 10 }, (_, i) => row(i)));
    await harness.startWorker();
    await harness.startWorker();
    const counts = await waitForBatch(harness, 'budget');
    expect(counts).toMatchObject({ done: 4, failed: 6 });
    expect(harness.simulator.stats().totalCreates).toBe(4);
    const failed = await harness.handle.queue.getFailed();
    expect(failed.map((job) => job.data.state?.failure?.kind)).toEqual(Array(6).fill('BudgetExceeded'));
  });

  it('stops at --max-video-seconds using each row estimate', async () => {
    harness = await startHarness({ renderMs: 100 }, { TALKBATCH_CONCURRENCY: 1 });
    await harness.handle.batches.create('seconds', 'test', { budget: { maxVideoSeconds: 10 } });
    // Each test row is estimated at 3 s: three fit in 10 s, the fourth would not.
    await harness.enqueue('seconds', Array.from({ length: 5 }, (_, i) => row(i)));
    await harness.startWorker();
    const counts = await waitForBatch(harness, 'seconds');
    expect(counts).toMatchObject({ done: 3, failed: 2 });
    expect(harness.simulator.stats().totalCreates).toBe(3);
  });
});

describe('shutdown', () => {
  it('hands rows waiting on D-ID back on close, and another worker finishes them without new talks', async () => {
    harness = await startHarness({ renderMs: 4_000 }, { TALKBATCH_CONCURRENCY: 4, TALKBATCH_POLL_INITIAL_MS: 200, TALKBATCH_POLL_MAX_MS: 200 });
    const first = await harness.startWorker();
    await harness.enqueue('handback', Array.from({ length: 3 }, (_, i) => row(i)));
    await vi.waitFor(() => expect(harness?.simulator.stats().totalCreates).toBe(3), { timeout: 10_000 });
    const started = Date.now();
    await first.close();
    // Closing must not wait for the renders.
    expect(Date.now() - started).toBeLessThan(2_000);
    const delayed = await harness.handle.queue.getDelayed();
    expect(delayed.map((job) => job.data.state?.step)).toEqual(['rendering', 'rendering', 'rendering']);
    expect((await harness.handle.batches.counts('handback')).active).toBe(0);

    await harness.startWorker();
    const counts = await waitForBatch(harness, 'handback');
    expect(counts).toMatchObject({ done: 3, failed: 0 });
    expect(harness.simulator.stats().totalCreates).toBe(3);
  });
});

describe('a rejected API key', () => {
  it('stops the worker, says why, and burns no attempt', async () => {
    harness = await startHarness({}, { DID_API_KEY: 'someone:wrong-secret' });
    const worker = await harness.startWorker();
    await harness.enqueue('auth', [row(1)]);
    await worker.stopped;
    expect(worker.fatal?.message).toMatch(/D-ID refused the API key \(401 AuthorizationError: user unauthenticated\).*DID_API_KEY/);
    expect(worker.fatal?.message).not.toContain('wrong-secret');
    const job = await harness.handle.queue.getJob(jobIdFor('auth', 'row0001'));
    expect(await job?.getState()).toBe('delayed');
    expect(job?.attemptsMade).toBe(0);
    expect((await harness.handle.batches.counts('auth')).failed).toBe(0);
  });
});
