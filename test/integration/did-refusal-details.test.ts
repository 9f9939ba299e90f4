import { readFile } from 'node:fs/promises';
import { parse } from 'csv-parse/sync';
import { afterEach, describe, expect, it } from 'vitest';
import { writeBatchReport } from '../../src/report/results.js';
import { row, startHarness, untilBatchFinished, type Harness } from '../helpers/harness.js';

let harness: Harness | undefined;
afterEach(async () => {
  await harness?.close();
  harness = undefined;
});

describe('D-ID\'s reason for refusing a row', () => {
  it('is in results.csv, results.jsonl and on the review page, and no talk was paid for', async () => {
    harness = await startHarness({ renderMs: 100 });
    const h = harness;
    await h.startWorker();
    // D-ID allows 40,000 characters, but only 10,000 without SSML tags: its ValidationError says so only in `details`.
    const long = row(0, { talk: { source_url: row(0).talk.source_url, script: { type: 'text', input: 'Hello there. '.repeat(800) } } });
    await h.enqueue('refused', [long, row(1)]);
    expect(await untilBatchFinished(h.handle.batches, 'refused', 20_000)).toMatchObject({ done: 1, failed: 1 });
    expect(h.simulator.stats().totalCreates).toBe(1);

    const files = await writeBatchReport(h.handle, 'refused', h.config.outDir);
    const csv = parse<Record<string, string>>(await readFile(files.csv), { columns: true });
    const failed = csv.find((r) => r.row_key === 'row0000');
    expect(failed).toMatchObject({ status: 'failed', error_kind: 'ValidationError', error_description: 'Invalid request body' });
    expect(JSON.parse(failed?.error_details ?? '')).toEqual({ 'body.script.input': { message: 'must be at most 10000 characters excluding SSML tags' } });
    expect(csv.find((r) => r.row_key === 'row0001')?.error_details).toBe('');

    const jsonl = (await readFile(files.jsonl, 'utf8')).trim().split('\n').map((line) => JSON.parse(line) as { rowKey: string; errorDetails: string | null });
    expect(jsonl.find((r) => r.rowKey === 'row0000')?.errorDetails).toContain('body.script.input');
    expect(await readFile(files.html, 'utf8')).toContain('must be at most 10000 characters excluding SSML tags');
  });
});

describe('failureDetails', () => {
  it('bounds what D-ID sends', async () => {
    const { failureDetails, FAILURE_DETAILS_MAX } = await import('../../src/worker/processor.js');
    expect(failureDetails(undefined)).toBeUndefined();
    expect(failureDetails({})).toBeUndefined();
    const huge = failureDetails({ field: 'x'.repeat(100_000) });
    expect(huge?.length).toBe(FAILURE_DETAILS_MAX);
  });
});
