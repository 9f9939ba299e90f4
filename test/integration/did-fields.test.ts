import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import { describe, expect, it } from 'vitest';
import type { Talkbatch } from '../../src/index.js';
import { redisUrl } from '../helpers/context.js';
import { libraryClientPerTest } from '../helpers/library-client.js';
import { didCreateTalkValidator } from '../helpers/openapi.js';
import { talkIdInVideo } from '../../src/simulator/server.js';

/*
 * Every D-ID field reaches the simulator (which checks D-ID's published schema), from a JSON row, a CSV sheet and a
 * raw BullMQ payload, in the type D-ID declares even when written as D-ID's own examples write it ("false", "0.0").
 */

const validate = didCreateTalkValidator();
const clients = libraryClientPerTest('fields');
const start = clients.start;

async function sentBodies(tb: Talkbatch, batchId: string): Promise<Map<string, Record<string, unknown>>> {
  await tb.waitForBatch(batchId, { timeoutMs: 20_000 });
  const bodies = new Map<string, Record<string, unknown>>();
  for await (const record of tb.batchResults(batchId)) {
    expect(record.status, `${record.rowKey}: ${record.errorDescription ?? ''}`).toBe('done');
    bodies.set(record.rowKey, clients.simulator()?.createRequest(record.talkId ?? '') as Record<string, unknown>);
  }
  return bodies;
}

describe('every D-ID field passes through', () => {
  it('from JSON rows, a CSV sheet and a raw BullMQ payload, typed as D-ID declares', async () => {
    const tb = await start();
    await tb.startWorker();
    // The webhook field goes to D-ID as is (no receiver here); keep it off the simulator's outbound calls.
    const jsonRows = (JSON.parse(readFileSync(new URL('../../fixtures/manifests/did/all-fields.json', import.meta.url), 'utf8')) as Record<string, unknown>[]).map(
      ({ webhook: _webhook, ...row }) => row,
    );
    await tb.enqueueBatch({ rows: jsonRows }, { batchId: 'fields-json' });
    const json = await sentBodies(tb, 'fields-json');
    const everyField = json.get('every-field');
    expect(validate(everyField).errors).toBe('');
    expect(everyField).toMatchObject({
      name: 'every-field',
      driver_url: 'bank://natural/',
      persist: true,
      result_url: 's3://my-bucket/talks/',
      face: { size: 512, top_left: [98, 119], overlap: 'NO' },
      script: { subtitles: false, provider: { voice_config: { stability: 0.5, use_speaker_boost: true } } },
      config: { fluent: false, pad_audio: 0, align_driver: true, align_expand_factor: 0.3, sharpen: false, output_resolution: 512, logo: { position: [0, 500] } },
    });
    // The user's own user_data first, as given; talkbatch's tag after it.
    expect(everyField?.user_data).toBe('crm-4711 [talkbatch fields-json-every-field]');
    expect(clients.simulator()?.talk((await firstTalkId(tb, 'fields-json', 'every-field')) ?? '')).toMatchObject({ user_data: 'crm-4711 [talkbatch fields-json-every-field]' });
    expect(json.get('audio-row')).toMatchObject({ script: { type: 'audio', subtitles: true } });

    const sheet = readFileSync(new URL('../../fixtures/manifests/did/all-fields.csv', import.meta.url), 'utf8').replace(/,https:\/\/hooks\.example\.com\/talks,/, ',,');
    const sheetPath = join(tb.config.outDir, 'all-fields.csv');
    await writeFile(sheetPath, sheet);
    await tb.enqueueBatch({ manifestPath: sheetPath }, { batchId: 'fields-csv' });
    const csv = (await sentBodies(tb, 'fields-csv')).get('sheet-1');
    expect(validate(csv).errors).toBe('');
    expect(csv).toMatchObject({ name: 'sheet-one', persist: true, config: { stitch: false, pad_audio: 0, auto_match: true }, script: { subtitles: false } });

    const queue = new Queue(tb.config.queueName, { connection: { url: redisUrl() }, prefix: tb.config.prefix });
    try {
      await queue.add(
        'talk',
        {
          v: 1,
          batchId: 'fields-raw',
          rowKey: 'seed',
          talk: {
            source_url: 'https://d-id-public-bucket.s3.us-west-2.amazonaws.com/alice.jpg',
            script: { type: 'text', subtitles: 'false', provider: { type: 'microsoft', voice_id: 'Sara' }, input: 'Making videos is easy with D-ID', ssml: false },
            config: { fluent: 'false', pad_audio: '0.0' },
          },
          output: { name: 'seed.mp4' },
        },
        { jobId: 'fields-raw-seed' },
      );
    } finally {
      await queue.close();
    }
    await expect.poll(async () => tb.getBatch('fields-raw'), { timeout: 10_000, interval: 50 }).toBeDefined();
    const raw = (await sentBodies(tb, 'fields-raw')).get('seed');
    expect(validate(raw).errors).toBe('');
    expect(raw).toMatchObject({ script: { subtitles: false }, config: { fluent: false, pad_audio: 0 } });
  });
});

async function firstTalkId(tb: Talkbatch, batchId: string, rowKey: string): Promise<string | null | undefined> {
  for await (const record of tb.batchResults(batchId)) if (record.rowKey === rowKey) return record.talkId;
  return undefined;
}

describe('each row\'s file holds its own talk', () => {
  it('the MP4 of every row carries the id of the talk that row created', async () => {
    const tb = await start();
    clients.simulator()?.setKnobs({ stampTalkId: true });
    await tb.startWorker();
    const rows = Array.from({ length: 6 }, (_, i) => ({ id: `own-${i}`, image_url: 'https://d-id-public-bucket.s3.us-west-2.amazonaws.com/alice.jpg', script: `Hello number ${i}, this video is yours.` }));
    await tb.enqueueBatch({ rows }, { batchId: 'own-files' });
    await tb.waitForBatch('own-files', { timeoutMs: 20_000 });
    const talkIds = new Set<string>();
    for await (const record of tb.batchResults('own-files')) {
      expect(record.status).toBe('done');
      const video = readFileSync(join(tb.config.outDir, 'own-files', record.file ?? ''));
      expect(talkIdInVideo(video)).toBe(record.talkId);
      talkIds.add(record.talkId ?? '');
    }
    expect(talkIds.size).toBe(6);
  });
});
