import { afterEach, describe, expect, it } from 'vitest';
import { enqueueRows } from '../../src/queue/producer.js';
import { jobIdFor } from '../../src/queue/payload.js';
import { row, startHarness, type Harness } from '../helpers/harness.js';

let harness: Harness | undefined;
afterEach(async () => {
  await harness?.close();
  harness = undefined;
});

describe('enqueueRows with several chunks in flight', () => {
  it('adds every row once, with its ledger line, whatever the chunk size', async () => {
    harness = await startHarness();
    const { handle } = harness;
    const rows = Array.from({ length: 1234 }, (_, index) => row(index));
    await handle.batches.create('many', 'test');
    expect(await enqueueRows(handle, 'many', rows, 50)).toEqual({ added: 1234, alreadyPresent: 0 });
    expect(await handle.queue.count()).toBe(1234);
    expect((await handle.batches.counts('many')).total).toBe(1234);
    const job = await handle.queue.getJob(jobIdFor('many', 'row1233'));
    expect(job?.data).toMatchObject({ v: 1, batchId: 'many', rowKey: 'row1233', line: 1235, output: { name: 'row1233.mp4' }, generation: 0 });

    expect(await enqueueRows(handle, 'many', rows, 77)).toEqual({ added: 0, alreadyPresent: 1234 });
    expect(await handle.queue.count()).toBe(1234);
  });

  it('skips rows the batch has done, in any chunk, once their jobs are gone', async () => {
    harness = await startHarness();
    const { handle } = harness;
    const rows = Array.from({ length: 300 }, (_, index) => row(index));
    await handle.batches.create('partly', 'test');
    await enqueueRows(handle, 'partly', rows, 40);
    // Rows 7 and 280 finished and BullMQ has since dropped their jobs.
    for (const key of ['row0007', 'row0280']) {
      await handle.batches.markDone('partly', key);
      await handle.queue.remove(jobIdFor('partly', key));
    }
    expect(await handle.queue.count()).toBe(298);
    expect(await enqueueRows(handle, 'partly', rows, 40)).toEqual({ added: 0, alreadyPresent: 300 });
    expect(await handle.queue.count()).toBe(298);
    expect(await handle.queue.getJob(jobIdFor('partly', 'row0280'))).toBeUndefined();
  });

  it('rejects when a chunk fails, after the chunks in flight have settled, and keeps what was written', async () => {
    harness = await startHarness();
    const { handle } = harness;
    // BullMQ refuses a job id with ":" in it: the sixth chunk of ten fails.
    const rows = Array.from({ length: 500 }, (_, index) => row(index, index === 260 ? { rowKey: 'bad:key' } : {}));
    await handle.batches.create('broken', 'test');
    let pulled = 0;
    async function* source(): AsyncGenerator<(typeof rows)[number]> {
      for (const item of rows) {
        pulled += 1;
        yield item;
      }
    }
    await expect(enqueueRows(handle, 'broken', source(), 50)).rejects.toThrow(/cannot contain :/i);
    // It stopped reading soon after the failure instead of running through the sheet.
    expect(pulled).toBeLessThan(500);
    const count = await handle.queue.count();
    expect(count % 50).toBe(0);
    expect(count).toBeGreaterThanOrEqual(250);
    expect((await handle.batches.counts('broken')).total).toBe(count);
  });
});
