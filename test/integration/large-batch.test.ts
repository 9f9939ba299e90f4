import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parse } from 'csv-parse/sync';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { payloadFor } from '../../src/queue/producer.js';
import { JOB_NAME, jobIdFor } from '../../src/queue/payload.js';
import { LiveReport, writeBatchReport, type ResultRecord } from '../../src/report/results.js';
import { FIXTURE_SHA256, row, startHarness, type Harness } from '../helpers/harness.js';

let harness: Harness | undefined;
afterEach(async () => {
  await harness?.close();
  harness = undefined;
});

async function jsonlOf(path: string): Promise<ResultRecord[]> {
  return (await readFile(path, 'utf8'))
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as ResultRecord);
}

describe('large batches: done rows in the ledger', () => {
  it('rebuilds done rows from the ledger once their jobs are gone, and never makes a re-added done row again', async () => {
    harness = await startHarness({ renderMs: 50 });
    const h = harness;
    await h.enqueue('ledger', [row(0), row(1), row(2)]);
    await h.startWorker();
    await vi.waitFor(async () => expect((await h.handle.batches.counts('ledger')).done).toBe(3), { timeout: 20_000, interval: 50 });
    // A row is done before its preview job has run (previews trail the renders): compare once every note is in.
    let withJobs: ResultRecord[] = [];
    await vi.waitFor(
      async () => {
        withJobs = await jsonlOf((await writeBatchReport(h.handle, 'ledger', h.config.outDir)).jsonl);
        expect(withJobs.filter((record) => record.previewNote === 'previews not made yet')).toEqual([]);
      },
      { timeout: 10_000, interval: 50 },
    );

    // BullMQ keeps only the newest completed jobs; here every one goes.
    await h.handle.queue.clean(0, 1000, 'completed');
    expect(await h.handle.queue.getJob(jobIdFor('ledger', 'row0001'))).toBeUndefined();
    const report = await writeBatchReport(h.handle, 'ledger', h.config.outDir);
    const fromLedger = await jsonlOf(report.jsonl);
    expect(report.counts).toMatchObject({ done: 3, missing: 0 });
    const stable = ({ finishedAt: _finishedAt, ...rest }: ResultRecord): Omit<ResultRecord, 'finishedAt'> => rest;
    expect(fromLedger.map(stable)).toEqual(withJobs.map(stable));
    expect(fromLedger[1]).toMatchObject({
      rowKey: 'row0001',
      status: 'done',
      file: 'row0001.mp4',
      sha256: FIXTURE_SHA256,
      bytes: 17116,
      attempts: 1,
      script: 'Hello person number 1, this is your video.',
      input: { id: 'row0001', first_name: 'Person 1' },
    });
    expect(fromLedger[1]?.talkId).toMatch(/\S/);
    const csv = parse<Record<string, string>>(await readFile(report.csv), { columns: true });
    expect(csv.map((r) => [r.row_key, r.status, r.sha256])).toEqual(['row0000', 'row0001', 'row0002'].map((key) => [key, 'done', FIXTURE_SHA256]));

    // A job for a row the ledger has done (added behind the producer's back, as a race with a finishing
    // row could) completes from the ledger: no second talk is paid for.
    const job = await h.handle.queue.add(JOB_NAME, payloadFor('ledger', row(1)), { jobId: jobIdFor('ledger', 'row0001') });
    await vi.waitFor(async () => expect(await job.getState()).toBe('completed'), { timeout: 20_000, interval: 50 });
    expect(h.simulator.stats().totalCreates).toBe(3);
    expect((await h.handle.batches.counts('ledger')).done).toBe(3);
  });
});

describe('large batches: LiveReport', () => {
  it('appends finished rows to results.jsonl, rebuilds the CSV rarely, and ends with the whole report', async () => {
    harness = await startHarness({ renderMs: 50 });
    const h = harness;
    await h.enqueue('live', [row(0), row(1), row(2)]);
    const live = new LiveReport(h.handle, 'live', h.config.outDir, { minRebuildGapMs: 10 * 60_000 });
    const dir = join(h.config.outDir, 'live');

    // The first refresh writes the whole report: every row, none finished yet.
    await live.refresh();
    expect((await jsonlOf(join(dir, 'results.jsonl'))).map((r) => r.status)).toEqual(['queued', 'queued', 'queued']);
    const firstCsv = await readFile(join(dir, 'results.csv'), 'utf8');

    await h.startWorker({ onRowFinished: (batchId, rowKey) => batchId === 'live' && live.rowFinished(rowKey) });
    await vi.waitFor(async () => expect((await h.handle.batches.counts('live')).done).toBe(3), { timeout: 20_000, interval: 50 });
    // 'completed' listeners run after the ledger write; wait for the worker to have told the report.
    await vi.waitFor(async () => {
      await live.refresh();
      const appended = (await jsonlOf(join(dir, 'results.jsonl'))).slice(3);
      expect(appended.map((r) => r.rowKey).sort()).toEqual(['row0000', 'row0001', 'row0002']);
    }, { timeout: 10_000, interval: 50 });
    const lines = await jsonlOf(join(dir, 'results.jsonl'));
    expect(lines).toHaveLength(6);
    expect(lines.slice(3).every((r) => r.status === 'done' && r.sha256 === FIXTURE_SHA256 && r.line > 0)).toBe(true);
    // Only what changed was written: the CSV waits for a rebuild.
    expect(await readFile(join(dir, 'results.csv'), 'utf8')).toBe(firstCsv);

    const report = await live.final();
    expect((await jsonlOf(report.jsonl)).map((r) => [r.rowKey, r.status])).toEqual([
      ['row0000', 'done'],
      ['row0001', 'done'],
      ['row0002', 'done'],
    ]);
    const csv = parse<Record<string, string>>(await readFile(report.csv), { columns: true });
    expect(csv.map((r) => r.status)).toEqual(['done', 'done', 'done']);
  });
});
