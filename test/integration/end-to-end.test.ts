import { createHash } from 'node:crypto';
import { mkdtemp, readFile, readdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { parse } from 'csv-parse/sync';
import { enqueueManifest } from '../../src/queue/producer.js';
import { writeBatchReport } from '../../src/report/results.js';
import { FIXTURE_SHA256, startHarness, type Harness } from '../helpers/harness.js';

let harness: Harness | undefined;
afterEach(async () => {
  await harness?.close();
  harness = undefined;
});

async function writeManifest(rows: number): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'tb-manifest-'));
  const path = join(dir, 'people.csv');
  const lines = ['id,first_name,company,image_url'];
  for (let i = 0; i < rows; i += 1) {
    // Every fifth row has no company, so the template's fallback is used.
    lines.push(`p${i},Person${i},${i % 5 === 0 ? '' : `Company ${i}`},https://example.com/faces/p${i}.png`);
  }
  await writeFile(path, `${lines.join('\n')}\n`);
  return path;
}

describe('manifest to MP4s', () => {
  it('runs a 50-row batch end to end and writes the report', async () => {
    harness = await startHarness({ renderMs: 150, renderJitter: 0.5 }, { TALKBATCH_CONCURRENCY: 8 });
    const manifest = await writeManifest(50);
    const template = 'Hello {{first_name}} from {{company|our team}}, here is your video.';
    const result = await enqueueManifest(harness.handle, manifest, { template, batchId: 'e2e' });
    expect(result).toMatchObject({ batchId: 'e2e', added: 50, alreadyPresent: 0, invalid: 0 });

    await harness.startWorker();
    await vi.waitFor(async () => expect((await harness?.handle.batches.counts('e2e'))?.done).toBe(50), { timeout: 60_000, interval: 100 });

    const report = await writeBatchReport(harness.handle, 'e2e', harness.config.outDir);
    expect(report.counts).toMatchObject({ done: 50, failed: 0 });
    const rows = parse<Record<string, string>>(await readFile(report.csv), { columns: true });
    expect(rows).toHaveLength(50);
    expect(rows.map((r) => r.row_key)).toEqual(Array.from({ length: 50 }, (_, i) => `p${i}`));
    expect(rows[0]).toMatchObject({ status: 'done', file: 'p0.mp4', sha256: FIXTURE_SHA256, bytes: '17116', input_first_name: 'Person0' });
    expect(rows[0]?.script).toBe('Hello Person0 from our team, here is your video.');
    expect(rows[1]?.script).toBe('Hello Person1 from Company 1, here is your video.');
    const jsonl = (await readFile(report.jsonl, 'utf8')).trim().split('\n');
    expect(jsonl).toHaveLength(50);

    const files = (await readdir(join(harness.config.outDir, 'e2e'))).filter((f) => f.endsWith('.mp4'));
    expect(files).toHaveLength(50);
    const sample = await readFile(join(harness.config.outDir, 'e2e', 'p17.mp4'));
    expect(createHash('sha256').update(sample).digest('hex')).toBe(FIXTURE_SHA256);
    const stats = harness.simulator.stats();
    expect(stats.totalCreates).toBe(50);
    expect(stats.duplicateUserData).toEqual([]);
  });

  it('adds nothing when the same manifest is enqueued again, before or after it ran', async () => {
    harness = await startHarness({ renderMs: 100 });
    const manifest = await writeManifest(6);
    const options = { template: 'Hi {{first_name}}, welcome aboard!', batchId: 'again' };
    expect((await enqueueManifest(harness.handle, manifest, options)).added).toBe(6);
    const second = await enqueueManifest(harness.handle, manifest, options);
    expect(second).toMatchObject({ added: 0, alreadyPresent: 6 });
    expect(await harness.handle.queue.count()).toBe(6);

    await harness.startWorker();
    await vi.waitFor(async () => expect((await harness?.handle.batches.counts('again'))?.done).toBe(6), { timeout: 20_000, interval: 100 });
    // Done rows stay done even after BullMQ's retention would have removed their jobs.
    await harness.handle.queue.clean(0, 1000, 'completed');
    const third = await enqueueManifest(harness.handle, manifest, options);
    expect(third).toMatchObject({ added: 0, alreadyPresent: 6 });
    expect(await harness.handle.queue.getJobCounts('waiting', 'delayed', 'active')).toEqual({ waiting: 0, delayed: 0, active: 0 });
    expect(harness.simulator.stats().totalCreates).toBe(6);
  });

  it('enqueues nothing when one row is invalid', async () => {
    harness = await startHarness();
    const manifest = await writeManifest(4);
    await writeFile(manifest, `${await readFile(manifest, 'utf8')}p9,Nine,,http://insecure.example.com/x.png\n`);
    await expect(enqueueManifest(harness.handle, manifest, { template: 'Hi {{first_name}}!', batchId: 'bad' })).rejects.toMatchObject({
      code: 'MANIFEST_INVALID',
      issues: [expect.objectContaining({ line: 6, column: 'image_url' })],
    });
    expect(await harness.handle.queue.count()).toBe(0);
    expect(await harness.handle.batches.exists('bad')).toBe(false);
  });
});
