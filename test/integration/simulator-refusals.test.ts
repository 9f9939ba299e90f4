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

async function resultsCsv(h: Harness, batchId: string): Promise<Record<string, string>[]> {
  const files = await writeBatchReport(h.handle, batchId, h.config.outDir);
  return parse<Record<string, string>>(await readFile(files.csv), { columns: true });
}

describe('D-ID refusals from the simulator\'s plan, moderation and source-check knobs', () => {
  it('a lite plan\'s 403 PermissionError fails only the rows using stitch or subtitles; the worker goes on', async () => {
    harness = await startHarness({ renderMs: 100, plan: 'lite' });
    const h = harness;
    await h.startWorker();
    const base = row(0).talk;
    const stitched = row(0, { talk: { ...base, config: { stitch: true } } });
    const subtitled = row(1, { talk: { ...base, script: { type: 'text', input: 'Hello with subtitles.', subtitles: true } } });
    await h.enqueue('plan', [stitched, subtitled, row(2), row(3)]);
    expect(await untilBatchFinished(h.handle.batches, 'plan', 20_000)).toMatchObject({ done: 2, failed: 2 });
    expect(h.simulator.stats().totalCreates).toBe(2);
    const csv = await resultsCsv(h, 'plan');
    expect(csv.find((r) => r.row_key === 'row0000')).toMatchObject({ status: 'failed', error_kind: 'PermissionError', error_description: 'user has no permission for stitch' });
    expect(csv.find((r) => r.row_key === 'row0001')).toMatchObject({ status: 'failed', error_kind: 'PermissionError', error_description: 'user has no permission for subtitles' });
    expect(csv.filter((r) => r.status === 'done').map((r) => r.row_key).sort()).toEqual(['row0002', 'row0003']);
  });

  it('a 451 moderation refusal fails the row at once, without a retry', async () => {
    harness = await startHarness({ renderMs: 100, moderationRate: 1 });
    const h = harness;
    await h.startWorker();
    await h.enqueue('moderated', [row(0)]);
    expect(await untilBatchFinished(h.handle.batches, 'moderated', 20_000)).toMatchObject({ done: 0, failed: 1 });
    expect(h.simulator.stats().totalCreates).toBe(0);
    // One refusal, one request: a retry would have asked again.
    expect(h.simulator.stats().responsesByStatus['451']).toBe(1);
    const csv = await resultsCsv(h, 'moderated');
    expect(csv[0]).toMatchObject({ status: 'failed', error_kind: 'TextModerationError' });
    expect(csv[0]?.error_description).toContain('Automatic content moderation');
  });

  it('a source_url that is not an image ends the talk in error, and the row carries D-ID\'s kind, description and details', async () => {
    // talkbatch sends only URLs named like images; this one serves a web page, which D-ID finds out when it fetches it.
    const videoSource = 'https://example.com/clips/intro.jpg';
    harness = await startHarness({ renderMs: 100, nonImageSources: [videoSource] });
    const h = harness;
    await h.startWorker();
    await h.enqueue('source', [row(0, { talk: { ...row(0).talk, source_url: videoSource } }), row(1)]);
    expect(await untilBatchFinished(h.handle.batches, 'source', 20_000)).toMatchObject({ done: 1, failed: 1 });
    const failed = (await resultsCsv(h, 'source')).find((r) => r.row_key === 'row0000');
    expect(failed).toMatchObject({ status: 'failed', error_kind: 'SourceError', error_description: 'source_url does not point to an image' });
    expect(JSON.parse(failed?.error_details ?? '')).toEqual({ source_url: videoSource });
  });
});
