import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { Queue } from 'bullmq';
import { describe, expect, it, vi } from 'vitest';
import { ManifestError } from '../../src/index.js';
import { jobPayloadJsonSchema, jobPayloadJsonSchemaText } from '../../src/queue/payload-schema.js';
import { redisUrl } from '../helpers/context.js';
import { libraryClientPerTest } from '../helpers/library-client.js';
import { IMAGE } from '../helpers/harness.js';

const clients = libraryClientPerTest('lib');
const start = clients.start;

/** The payload docs/api.md shows for other BullMQ clients. */
function documentedPayload(batchId: string, rowKey: string) {
  return {
    v: 1,
    batchId,
    rowKey,
    talk: { source_url: IMAGE, script: { type: 'text', input: 'Hello from another BullMQ client!' } },
    output: { name: `${rowKey}.mp4` },
  };
}

describe('library API', () => {
  it('enqueues rows, a manifest file and a stream, waits for the batch and reads its results', async () => {
    const tb = await start();
    await tb.startWorker();
    const template = 'Hello {{first_name}}, this one is for you.';
    const rows = [1, 2].map((i) => ({ id: `l${i}`, first_name: `Person ${i}`, image_url: IMAGE }));
    const first = await tb.enqueueBatch({ rows }, { batchId: 'lib-batch', template });
    expect(first).toMatchObject({ batchId: 'lib-batch', added: 2, alreadyPresent: 0, issues: [] });

    const manifest = join(tb.config.outDir, 'more.csv');
    await writeFile(manifest, `id,first_name,image_url\nl1,Person 1,${IMAGE}\nl3,Person 3,${IMAGE}\n`);
    expect(await tb.enqueueBatch({ manifestPath: manifest }, { batchId: 'lib-batch', template })).toMatchObject({ added: 1, alreadyPresent: 1 });
    const stream = Readable.from([`{"id":"l4","first_name":"Person 4","image_url":"${IMAGE}"}\n`, `{"id":"l2","first_name":"Person 2","image_url":"${IMAGE}"}\n`]);
    expect(await tb.enqueueBatch({ stream }, { batchId: 'lib-batch', template, format: 'jsonl' })).toMatchObject({ added: 1, alreadyPresent: 1 });

    const batch = await tb.waitForBatch('lib-batch', { timeoutMs: 20_000 });
    expect(batch).toMatchObject({ id: 'lib-batch', source: 'library', progress: 1, counts: { total: 4, done: 4, failed: 0 } });
    const results = [];
    for await (const record of tb.batchResults('lib-batch')) results.push(record);
    // Rows are in manifest line order; these came from three manifests, so only the set matters.
    expect(results.map((record) => [record.rowKey, record.status]).sort()).toEqual([['l1', 'done'], ['l2', 'done'], ['l3', 'done'], ['l4', 'done']]);
    for (const record of results) expect(existsSync(join(tb.config.outDir, 'lib-batch', `${record.rowKey}.mp4`))).toBe(true);
    expect(await tb.getBatch('no-such-batch')).toBeUndefined();

    const invalid = tb.enqueueBatch({ rows: [{ id: 'x1', first_name: 'X' }] }, { batchId: 'lib-bad', template });
    await expect(invalid).rejects.toBeInstanceOf(ManifestError);
    await expect(invalid).rejects.toMatchObject({ issues: [{ file: 'rows', line: 1, column: 'image_url' }] });
    expect(await tb.getBatch('lib-bad')).toBeUndefined();
  });

  it('takes the manifest encoding as an option (Excel\'s windows-1252 "CSV")', async () => {
    const tb = await start();
    const manifestPath = fileURLToPath(new URL('../../fixtures/manifests/good/excel-windows-1252.csv', import.meta.url));
    await expect(tb.enqueueBatch({ manifestPath }, { batchId: 'lib-cp-plain' })).rejects.toMatchObject({
      issues: [{ line: 2, message: expect.stringContaining('--encoding windows-1252') as unknown }],
    });
    expect(await tb.enqueueBatch({ manifestPath }, { batchId: 'lib-cp', encoding: 'windows-1252' })).toMatchObject({ added: 2, invalid: 0 });
  });

  it('cancels what has not started and times out waiting on a batch that cannot finish', async () => {
    const tb = await start();
    const rows = [1, 2].map((i) => ({ id: `c${i}`, image_url: IMAGE, script: `Hello number ${i}, goodbye.` }));
    await tb.enqueueBatch({ rows }, { batchId: 'lib-cancel' });
    await expect(tb.waitForBatch('lib-cancel', { timeoutMs: 50, intervalMs: 10 })).rejects.toMatchObject({ code: 'WAIT_TIMEOUT' });
    const cancelled = await tb.cancelBatch('lib-cancel');
    expect(cancelled).toMatchObject({ removed: ['lib-cancel-c1', 'lib-cancel-c2'], kept: [], finished: true });
    expect(await tb.waitForBatch('lib-cancel', { timeoutMs: 1_000 })).toMatchObject({ cancelledAt: expect.any(String), counts: { failed: 2 } });
    expect(clients.simulator()?.stats().totalCreates).toBe(0);
  });

  it('processes a job added by a plain BullMQ client with the documented payload, and counts it in its batch', async () => {
    const tb = await start();
    await tb.startWorker();
    const payload = documentedPayload('raw-batch', 'r1');
    expect(new Ajv2020({ strict: false }).validate(jobPayloadJsonSchema(), payload)).toBe(true);

    const queue = new Queue(tb.config.queueName, { connection: { url: redisUrl() }, prefix: tb.config.prefix });
    try {
      await queue.add('talk', payload, { jobId: 'raw-batch-r1' });
    } finally {
      await queue.close();
    }
    // The batch appears in the ledger when a worker first sees the job.
    await vi.waitFor(async () => expect(await tb.getBatch('raw-batch')).toBeDefined(), { timeout: 10_000, interval: 50 });
    const batch = await tb.waitForBatch('raw-batch', { timeoutMs: 20_000 });
    expect(batch).toMatchObject({ source: 'bullmq', counts: { total: 1, done: 1 } });
    expect(existsSync(join(tb.config.outDir, 'raw-batch', 'r1.mp4'))).toBe(true);
  });

  it('publishes the job payload as JSON Schema, committed as docs/job-payload.schema.json', async () => {
    const committed = await readFile(new URL('../../docs/job-payload.schema.json', import.meta.url), 'utf8');
    expect(committed).toBe(jobPayloadJsonSchemaText());
    const validate = new Ajv2020({ strict: false }).compile(JSON.parse(committed) as object);
    expect(validate(documentedPayload('b', 'r'))).toBe(true);
    expect(validate({ ...documentedPayload('b', 'r'), batchId: 'has:colon' })).toBe(false);
    expect(validate({ v: 1, batchId: 'b', rowKey: 'r', talk: { script: { type: 'text', input: 'no image' } } })).toBe(false);
  });
});
