import { queueKeys } from '../../src/queue/keys.js';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DidClient } from '../../src/did/index.js';
import { readManifest, validateManifest, type ManifestRow } from '../../src/manifest/index.js';
import { UploadCache } from '../../src/worker/uploads.js';
import { startHarness, untilBatchFinished, type Harness } from '../helpers/harness.js';

const SHEET = resolve('jobs/local-files.csv');
let harness: Harness | undefined;
afterEach(async () => {
  await harness?.close();
  harness = undefined;
});

async function rowsOf(path: string): Promise<ManifestRow[]> {
  const rows: ManifestRow[] = [];
  for await (const record of readManifest(path)) if (record.ok === true) rows.push(record.row);
  return rows;
}

async function sentBodies(h: Harness, batchId: string): Promise<Map<string, { source_url?: string; script: { audio_url?: string } }>> {
  const bodies = new Map<string, { source_url?: string; script: { audio_url?: string } }>();
  for await (const ref of h.handle.batches.rows(batchId)) {
    const job = await h.handle.queue.getJob(`${batchId}-${ref.rowKey}`);
    const talkId = (job?.returnvalue as { talkId?: string } | undefined)?.talkId ?? '';
    bodies.set(ref.rowKey, h.simulator.createRequest(talkId) as { source_url?: string; script: { audio_url?: string } });
  }
  return bodies;
}

describe('local images and audio', () => {
  it('uploads each distinct file once, reuses the URL, and uploads again once it expired', async () => {
    harness = await startHarness({ renderMs: 100 });
    const h = harness;
    await h.startWorker();
    const rows = await rowsOf(SHEET);
    expect(rows.map((row) => row.talk.source_file)).toEqual([resolve('jobs/media/ana.jpg'), resolve('jobs/media/ben.png'), resolve('jobs/media/ana.jpg'), resolve('jobs/media/ben.png')]);
    await h.enqueue('local', rows);
    expect(await untilBatchFinished(h.handle.batches, 'local', 20_000)).toMatchObject({ done: 4, failed: 0 });
    // ana.jpg, ben.png and hello.wav: three distinct files for four rows (five file references).
    expect(h.simulator.stats().uploads).toBe(3);
    const bodies = await sentBodies(h, 'local');
    expect(bodies.get('ana')?.source_url).toMatch(/^s3:\/\/d-id-images-prod\/.+\.jpg$/);
    expect(bodies.get('ana-again')?.source_url).toBe(bodies.get('ana')?.source_url);
    expect(bodies.get('ben-voice')?.script.audio_url).toMatch(/^s3:\/\/d-id-audios-prod\/.+\.wav$/);
    expect(h.simulator.stats().totalCreates).toBe(4);

    // Remembered under the queue's hash-tagged prefix, for less than D-ID's 24 h minimum storage time.
    const redis = h.handle.redis;
    const keys = await redis.keys(`${h.config.prefix}:${h.config.queueName}:uploads:*`);
    expect(keys).toHaveLength(3);
    for (const key of keys) {
      const ttl = await redis.pttl(key);
      expect(ttl).toBeGreaterThan(0);
      expect(ttl).toBeLessThan(24 * 60 * 60_000);
    }

    // Reused by a later batch while remembered; uploaded again once the URL has expired. (Without the render cache,
    // which would copy the row's video and upload nothing.)
    await h.enqueue('local-2', [rows[0] as ManifestRow], { cache: false });
    await untilBatchFinished(h.handle.batches, 'local-2', 20_000);
    expect(h.simulator.stats().uploads).toBe(3);
    await redis.del(...keys);
    await h.enqueue('local-3', [rows[0] as ManifestRow], { cache: false });
    await untilBatchFinished(h.handle.batches, 'local-3', 20_000);
    expect(h.simulator.stats().uploads).toBe(4);
    expect((await sentBodies(h, 'local-3')).get('ana')?.source_url).not.toBe(bodies.get('ana')?.source_url);
  });

  it('after a crash between upload and create, the next try reuses the upload and makes one talk', async () => {
    harness = await startHarness({ renderMs: 100 });
    const h = harness;
    const [ana] = await rowsOf(SHEET);
    // The upload a worker made before it died: the URL is remembered, no talk was created.
    const did = new DidClient({ apiKey: h.simulator.apiKey, baseUrl: h.simulator.url });
    const cache = new UploadCache({ redis: h.handle.redis, keys: queueKeys(h.config.prefix, h.config.queueName), ttlMs: h.config.uploadTtlMs, did });
    const url = await cache.urlFor('image', ana?.talk.source_file ?? '');
    await did.close();
    expect(h.simulator.stats()).toMatchObject({ uploads: 1, totalCreates: 0 });

    await h.startWorker();
    await h.enqueue('crash', [ana as ManifestRow]);
    expect(await untilBatchFinished(h.handle.batches, 'crash', 20_000)).toMatchObject({ done: 1 });
    expect(h.simulator.stats()).toMatchObject({ uploads: 1, totalCreates: 1 });
    expect((await sentBodies(h, 'crash')).get('ana')?.source_url).toBe(url);
  });
});

describe('validate checks local files, spending nothing', () => {
  it('by their bytes and size, relative to the manifest', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tb-local-'));
    await writeFile(join(dir, 'fake.jpg'), 'this is text, not a JPEG');
    await writeFile(join(dir, 'big.png'), Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), Buffer.alloc(10 * 1024 * 1024)]));
    await writeFile(join(dir, 'sheet.csv'), 'id,image_url,script\na,fake.jpg,Hello there\nb,big.png,Hello there\nc,missing.jpg,Hello there\n');
    const report = await validateManifest(join(dir, 'sheet.csv'));
    expect(report.issues.map((issue) => [issue.line, issue.column, issue.message])).toEqual([
      [2, 'image_url', 'local file "fake.jpg" is not a JPEG or PNG image (by its content)'],
      [3, 'image_url', 'local image "big.png" has 10,485,768 bytes; D-ID takes at most 10,485,760'],
      [4, 'image_url', 'local file "missing.jpg" not found (relative paths start at the manifest\'s folder)'],
    ]);
  });

  it('refuses local paths where the operator allows none (REST API, URL manifests) and outside allowed folders', async () => {
    const refused = await validateManifest(SHEET, { localMedia: { baseDir: resolve('jobs'), roots: [], refusal: 'a manifest sent through the REST API may not do' } });
    expect(refused.valid).toBe(0);
    expect(refused.issues[0]?.message).toBe('names a local file, which a manifest sent through the REST API may not do; use an https:// URL');
    const outside = await validateManifest(SHEET, { localMedia: { baseDir: resolve('jobs'), roots: [resolve('fixtures')] } });
    expect(outside.issues[0]?.message).toBe('local file "media/ana.jpg" is outside the folders the operator allows');
    const allowed = await validateManifest(SHEET, { localMedia: { baseDir: resolve('jobs'), roots: [resolve('jobs/media')] } });
    expect(allowed.issues).toEqual([]);
  });
});
