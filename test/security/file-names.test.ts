import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { DownloadError, downloadVerified } from '../../src/download/downloader.js';
import { validateManifest } from '../../src/manifest/index.js';
import { JobPayloadV1, jobIdFor } from '../../src/queue/payload.js';
import { checkBatchId } from '../../src/queue/producer.js';
import { isWindowsReservedName } from '../../src/shared/file-names.js';
import { FIXTURE_VIDEO, IMAGE, row, startHarness, type Harness } from '../helpers/harness.js';

/*
 * Names are checked in bytes, with the suffixes talkbatch adds, before anything is spent; DOS device names are
 * refused in any case or extension form; and a name the file system still refuses fails its row once, unretried.
 */

function sheet(names: string[]): string {
  const dir = mkdtempSync(join(tmpdir(), 'tb-names-'));
  const path = join(dir, 'people.csv');
  const lines = names.map((name, index) => `r${index},${IMAGE},Hello there,${name}`);
  writeFileSync(path, ['id,image_url,script,name', ...lines].join('\n') + '\n');
  return path;
}

describe('output names in bytes', () => {
  it('refuses 100 × 名 and 70 emoji, which fit in characters but not in bytes', async () => {
    const report = await validateManifest(sheet(['名'.repeat(100), '😀'.repeat(70), '名'.repeat(82)]));
    expect(report.issues.map((issue) => [issue.line, issue.message])).toEqual([
      [2, expect.stringMatching(/^name is 304 bytes as a file name; at most 250 fit/)],
      [3, expect.stringMatching(/^name is 284 bytes as a file name; at most 250 fit/)],
    ]);
    // 82 × 3 bytes + ".mp4" = 250 bytes, + ".part" = 255: exactly what a file system takes.
    expect(report.valid).toBe(1);
  });

  it('the job payload refuses the same names from other BullMQ clients', () => {
    const base = { v: 1, batchId: 'b1', rowKey: 'r1', talk: { source_url: IMAGE, script: { type: 'text', input: 'Hello' } } };
    expect(JobPayloadV1.safeParse({ ...base, output: { name: `${'名'.repeat(83)}.mp4` } }).success).toBe(false);
    expect(JobPayloadV1.safeParse({ ...base, output: { name: `${'名'.repeat(82)}.mp4` } }).success).toBe(true);
    expect(JobPayloadV1.safeParse({ ...base, output: { name: 'COM1.txt.mp4' } }).success).toBe(false);
  });
});

describe('Windows device names', () => {
  it.each(['CON', 'con', 'nul', 'Nul.txt', 'COM1.txt.mp4', 'lpt9', 'aux.', 'PRN .mp4', 'com¹.mp4', 'CONIN$'])('%s is reserved', (name) => {
    expect(isWindowsReservedName(name)).toBe(true);
  });

  it.each(['console.mp4', 'nullable', 'com10.mp4', 'conference', 'a.con'])('%s is not', (name) => {
    expect(isWindowsReservedName(name)).toBe(false);
  });

  it.each(['CON', 'nul', 'Com1', 'lpt1.batch'])('batch id %s is refused', (id) => {
    expect(() => checkBatchId(id)).toThrow(/Windows device name/);
  });
});

describe('a file name the file system refuses', () => {
  let server: Server;
  let url: string;
  beforeAll(async () => {
    server = createServer((_request, response) => {
      response.writeHead(200, { 'content-type': 'video/mp4', 'content-length': String(FIXTURE_VIDEO.length) });
      response.end(FIXTURE_VIDEO);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/video.mp4`;
  });
  afterAll(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it('is a download error for the file name', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tb-long-'));
    const error = await downloadVerified(url, join(dir, `${'x'.repeat(260)}.mp4`)).then(
      () => undefined,
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(DownloadError);
    expect(error).toMatchObject({ reason: 'file-name' });
    expect((error as Error).message).toMatch(/ENAMETOOLONG/);
  });

  let harness: Harness | undefined;
  afterEach(async () => {
    await harness?.close();
    harness = undefined;
  });

  it('fails its row at the first try instead of retrying', async () => {
    // A path longer than the system's PATH_MAX: every write under it fails with ENAMETOOLONG.
    const outDir = join(mkdtempSync(join(tmpdir(), 'tb-deep-')), ...Array.from({ length: 20 }, () => 'd'.repeat(250)));
    harness = await startHarness({}, { TALKBATCH_OUT_DIR: outDir, TALKBATCH_ATTEMPTS: 5 });
    await harness.enqueue('deep', [row(1)]);
    await harness.startWorker();
    const jobId = jobIdFor('deep', 'row0001');
    await vi.waitFor(async () => expect(await harness?.handle.queue.getJobState(jobId)).toBe('failed'), { timeout: 30_000, interval: 100 });
    const job = await harness.handle.queue.getJob(jobId);
    expect(job?.attemptsMade).toBe(1);
    expect(job?.failedReason).toMatch(/OutputNameUnusable: .*ENAMETOOLONG/);
    expect(harness.simulator.stats().totalCreates).toBe(1);
  });
});
