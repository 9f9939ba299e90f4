import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { ManifestError } from '../../src/manifest/index.js';
import { JOB_NAME, jobIdFor, PAYLOAD_VERSION } from '../../src/queue/payload.js';
import { enqueueManifest } from '../../src/queue/producer.js';
import { FIXTURE_SHA256, FIXTURE_VIDEO, IMAGE, row, startHarness, untilBatchFinished, type Harness } from '../helpers/harness.js';

/*
 * An output file belongs to exactly one row of a batch, across every submission into that batch id: a clash is
 * refused before anything is spent, and a file at the path is only taken as done when this row's talk wrote it.
 */

let harness: Harness | undefined;
afterEach(async () => {
  await harness?.close();
  harness = undefined;
});

function manifest(lines: string[]): string {
  const dir = mkdtempSync(join(tmpdir(), 'tb-own-'));
  const path = join(dir, 'people.csv');
  writeFileSync(path, ['id,image_url,script,name', ...lines].join('\n') + '\n');
  return path;
}

async function refusal(promise: Promise<unknown>): Promise<ManifestError> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect((error as ManifestError | undefined)?.code).toBe('MANIFEST_INVALID');
  return error as ManifestError;
}

describe('output names across submissions into one batch', () => {
  it('refuses a second submission whose row takes a name another row holds, enqueueing none of it', async () => {
    harness = await startHarness();
    const { handle } = harness;
    const first = manifest([`alice,${IMAGE},Hello Alice,greeting`]);
    const second = manifest([`carol,${IMAGE},Hello Carol,carol`, `bob,${IMAGE},Hello Bob,Greeting.mp4`]);
    await enqueueManifest(handle, first, { batchId: 'shared' });

    const error = await refusal(enqueueManifest(handle, second, { batchId: 'shared' }));
    expect(error.issues).toHaveLength(1);
    expect(error.issues[0]).toMatchObject({ line: 3, column: 'name' });
    expect(error.issues[0]?.message).toMatch(/"Greeting\.mp4" already belongs to row "alice" of batch shared/);
    expect(await handle.queue.count()).toBe(1);
    expect((await handle.batches.counts('shared')).total).toBe(1);

    // What the refused submission reserved was given back: carol can come in on her own.
    const third = manifest([`carol,${IMAGE},Hello Carol,carol`]);
    expect((await enqueueManifest(handle, third, { batchId: 'shared' })).added).toBe(1);
    // The same row submitted again keeps its name.
    expect((await enqueueManifest(handle, first, { batchId: 'shared' })).alreadyPresent).toBe(1);
  });

  it('a job from another BullMQ client that takes a held name fails before a talk is created', async () => {
    harness = await startHarness();
    const { handle, simulator } = harness;
    await harness.enqueue('foreign', [row(1, { outputName: 'same.mp4' })]);
    await harness.startWorker();
    await untilBatchFinished(handle.batches, 'foreign', 30_000);
    const creates = simulator.stats().totalCreates;

    await handle.queue.add(
      JOB_NAME,
      {
        v: PAYLOAD_VERSION,
        batchId: 'foreign',
        rowKey: 'intruder',
        talk: { source_url: IMAGE, script: { type: 'text', input: 'Hello intruder, this is your video.' } },
        output: { name: 'SAME.mp4' },
        input: {},
        generation: 0,
      },
      { jobId: jobIdFor('foreign', 'intruder'), attempts: 3 },
    );
    await vi.waitFor(async () => expect(await handle.queue.getJobState(jobIdFor('foreign', 'intruder'))).toBe('failed'), { timeout: 30_000, interval: 100 });
    expect(await handle.batches.counts('foreign')).toMatchObject({ total: 2, done: 1, failed: 1 });
    const failed = await handle.queue.getJob(jobIdFor('foreign', 'intruder'));
    expect(failed?.failedReason).toMatch(/OutputNameTaken/);
    expect(simulator.stats().totalCreates).toBe(creates);
  });
});

describe('downloader ownership', () => {
  it('a stray video already at the path is replaced by the row’s own download, not taken as done', async () => {
    harness = await startHarness();
    const { handle, config } = harness;
    const stray = Buffer.concat([FIXTURE_VIDEO, Buffer.from('someone else')]);
    mkdirSync(join(config.outDir, 'stray'), { recursive: true });
    writeFileSync(join(config.outDir, 'stray', 'row0001.mp4'), stray);
    await harness.enqueue('stray', [row(1)]);
    await harness.startWorker();
    await untilBatchFinished(handle.batches, 'stray', 30_000);

    const job = await handle.queue.getJob(jobIdFor('stray', 'row0001'));
    expect(job?.returnvalue).toMatchObject({ status: 'done', sha256: FIXTURE_SHA256 });
    expect(createHash('sha256').update(readFileSync(join(config.outDir, 'stray', 'row0001.mp4'))).digest('hex')).toBe(FIXTURE_SHA256);
    expect(await handle.batches.fileRecord('stray', 'row0001.mp4')).toMatchObject({ rowKey: 'row0001', sha256: FIXTURE_SHA256 });
  });
});
