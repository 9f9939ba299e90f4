import { execFile } from 'node:child_process';
import { copyFile, mkdtemp, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parse } from 'csv-parse/sync';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { FFMPEG, GIF_MAX_BYTES, GIF_WIDTH, makePreviews } from '../../src/download/previews.js';
import { ensureProgram } from '../../src/shared/system-package.js';
import { enqueueRows } from '../../src/queue/producer.js';
import { PreviewStore, ShareStore } from '../../src/queue/previews.js';
import { openQueue } from '../../src/queue/talk-queue.js';
import { writeBatchReport } from '../../src/report/results.js';
import { silentLogger } from '../../src/shared/logger.js';
import { captionOf, PersonalisedVideos } from '../../src/simulator/personalised-video.js';
import { startSimulator } from '../../src/simulator/server.js';
import { startTalkWorker } from '../../src/worker/create-worker.js';
import { testConfig } from '../helpers/context.js';
import { row, startHarness, untilBatchFinished, type Harness } from '../helpers/harness.js';

const run = promisify(execFile);

// As root on Debian a missing ffmpeg is installed, like redis-server; elsewhere this says how to get it.
beforeAll(() => {
  ensureProgram(FFMPEG, (message) => process.stderr.write(`${message}\n`));
});
const FIXTURE = new URL('../../fixtures/media/talk.mp4', import.meta.url);

interface Probe {
  width: number;
  height: number;
  codec: string;
  frames: number;
}

/** Decodes the file with ffprobe, counting every frame. */
async function probe(path: string): Promise<Probe> {
  const { stdout } = await run('ffprobe', ['-v', 'error', '-count_frames', '-select_streams', 'v:0', '-show_entries', 'stream=width,height,codec_name,nb_read_frames', '-of', 'json', path]);
  const stream = (JSON.parse(stdout) as { streams: { width: number; height: number; codec_name: string; nb_read_frames: string }[] }).streams[0];
  if (!stream) throw new Error(`ffprobe found no video stream in ${path}`);
  return { width: stream.width, height: stream.height, codec: stream.codec_name, frames: Number(stream.nb_read_frames) };
}

let harness: Harness | undefined;
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  await harness?.close();
  harness = undefined;
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

describe('makePreviews', () => {
  it('writes a decodable poster and a looping GIF under 1 MB, 320 px wide, and leaves no temp file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tb-previews-'));
    const video = join(dir, 'ana.mp4');
    await copyFile(FIXTURE, video);
    const made = await makePreviews(video, { ffmpeg: 'ffmpeg', posterAtSeconds: 1.5 });
    expect(made.poster).toBe(join(dir, 'ana.jpg'));
    expect(made.gif).toBe(join(dir, 'ana.gif'));

    const poster = await probe(made.poster);
    expect(poster).toMatchObject({ codec: 'mjpeg', width: 128, height: 128, frames: 1 });
    const gif = await probe(made.gif);
    expect(gif.codec).toBe('gif');
    expect(gif.width).toBe(GIF_WIDTH);
    expect(gif.height).toBe(GIF_WIDTH);
    // The fixture is 2 s long; the GIF runs at 10 frames a second.
    expect(gif.frames).toBeGreaterThanOrEqual(15);
    expect(gif.frames).toBeLessThanOrEqual(31);
    expect((await stat(made.gif)).size).toBe(made.gifBytes);
    expect(made.gifBytes).toBeLessThan(GIF_MAX_BYTES);
    expect((await readdir(dir)).sort()).toEqual(['ana.gif', 'ana.jpg', 'ana.mp4']);
  });

  it('takes the first frame when the poster time is past the end of the video', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tb-previews-'));
    const video = join(dir, 'late.mp4');
    await copyFile(FIXTURE, video);
    const made = await makePreviews(video, { ffmpeg: 'ffmpeg', posterAtSeconds: 30 });
    expect(await probe(made.poster)).toMatchObject({ codec: 'mjpeg', frames: 1 });
  });

  it('fails with the reason and leaves no file, whole or half, when the video cannot be decoded', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tb-previews-'));
    const video = join(dir, 'broken.mp4');
    await writeFile(video, brokenMp4());
    await expect(makePreviews(video, { ffmpeg: 'ffmpeg', posterAtSeconds: 1 })).rejects.toThrow(/ffmpeg failed/);
    expect(await readdir(dir)).toEqual(['broken.mp4']);
  });

  it('says how to get ffmpeg when it cannot be run', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tb-previews-'));
    const video = join(dir, 'a.mp4');
    await copyFile(FIXTURE, video);
    await expect(makePreviews(video, { ffmpeg: join(dir, 'no-such-ffmpeg'), posterAtSeconds: 1 })).rejects.toThrow(/previews need ffmpeg.*apt-get install -y ffmpeg.*--no-previews/);
  });
});

/** Starts like an MP4 (so the downloader's header check passes) but holds no decodable video. */
function brokenMp4(): Buffer {
  const ftyp = Buffer.from('0000001866747970697336d6000000000069736f6d61766331', 'hex');
  return Buffer.concat([ftyp, Buffer.alloc(4096, 0x5a)]);
}

describe('previews of a batch', () => {
  it('makes a poster and GIF per done row off the talk queue, and the results carry them with share links', async () => {
    harness = await startHarness({}, { TALKBATCH_PREVIEWS: 'true', TALKBATCH_POSTER_AT: 1, TALKBATCH_SHARE_URL: 'https://videos.example.com/' });
    await harness.enqueue('pv', [row(1, { input: { id: 'row0001', share_title: 'For Ana <3' } }), row(2)]);
    const worker = await harness.startWorker();
    await untilBatchFinished(harness.handle.batches, 'pv', 30_000);
    await vi.waitFor(async () => expect(await worker.previews.pendingCount('pv')).toBe(0), { timeout: 30_000, interval: 100 });

    const dir = join(harness.config.outDir, 'pv');
    expect((await readdir(dir)).filter((name) => !name.startsWith('results')).sort()).toEqual(['row0001.gif', 'row0001.jpg', 'row0001.mp4', 'row0002.gif', 'row0002.jpg', 'row0002.mp4']);
    expect((await probe(join(dir, 'row0002.gif'))).width).toBe(GIF_WIDTH);

    const report = await writeBatchReport(harness.handle, 'pv', harness.config.outDir, { shareBaseUrl: harness.config.shareBaseUrl });
    const rows = parse<Record<string, string>>(await readFile(report.csv), { columns: true });
    expect(rows.map((r) => [r.status, r.poster, r.gif, r.preview_note])).toEqual([
      ['done', 'row0001.jpg', 'row0001.gif', ''],
      ['done', 'row0002.jpg', 'row0002.gif', ''],
    ]);
    const shareUrl = rows[0]?.share_url ?? '';
    expect(shareUrl).toMatch(/^https:\/\/videos\.example\.com\/s\/[A-Za-z0-9_-]{43}$/);
    expect(rows[1]?.share_url).not.toBe(shareUrl);
    expect(rows[0]?.email_html).toBe(
      `<a href="${shareUrl}"><img src="${shareUrl}/preview.gif" width="320" alt="Play: For Ana &#60;3" style="display:block;border:0;max-width:100%"></a>`,
    );
    const shares = new ShareStore(harness.handle.redis, harness.config.prefix, harness.config.queueName);
    const token = shareUrl.split('/').pop() ?? '';
    expect(await shares.get(token)).toMatchObject({ batchId: 'pv', rowKey: 'row0001', video: 'row0001.mp4', poster: 'row0001.jpg', gif: 'row0001.gif', title: 'For Ana <3' });
    const jsonl = (await readFile(report.jsonl, 'utf8')).trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(jsonl[1]).toMatchObject({ poster: 'row0002.jpg', gif: 'row0002.gif', previewNote: null, shareUrl: rows[1]?.share_url });
  });

  it('keeps a row done with its MP4 when its preview fails, and says why', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tb-broken-'));
    const brokenPath = join(dir, 'broken.mp4');
    await writeFile(brokenPath, brokenMp4());
    const simulator = await startSimulator({ knobs: { renderMs: 100 }, videoPath: brokenPath });
    cleanups.push(() => simulator.close());
    const config = await testConfig({ DID_API_URL: simulator.url, DID_API_KEY: simulator.apiKey, TALKBATCH_PREVIEWS: 'true' });
    const handle = await openQueue(config, config.redisUrl as string);
    cleanups.push(() => handle.close());
    const worker = await startTalkWorker({ config, redisUrl: config.redisUrl as string, logger: silentLogger });
    cleanups.unshift(() => worker.close({ force: true }));
    await handle.batches.create('bad', 'test');
    await enqueueRows(handle, 'bad', [row(1)]);
    await untilBatchFinished(handle.batches, 'bad', 30_000);
    const store = new PreviewStore(handle.redis, config.prefix, config.queueName);
    await vi.waitFor(async () => expect(await store.pendingCount('bad')).toBe(0), { timeout: 30_000, interval: 100 });

    const report = await writeBatchReport(handle, 'bad', config.outDir);
    const [result] = parse<Record<string, string>>(await readFile(report.csv), { columns: true });
    expect(result).toMatchObject({ status: 'done', file: 'row0001.mp4', poster: '', gif: '', share_url: '' });
    expect(result?.preview_note).toMatch(/^ffmpeg failed \(exit \d+\)/);
    expect(await readdir(join(config.outDir, 'bad'))).toEqual(expect.arrayContaining(['row0001.mp4']));
    expect((await readdir(join(config.outDir, 'bad'))).filter((name) => /\.(jpg|gif|part)$/.test(name))).toEqual([]);
  });

  it('keeps rows done and names the fix when ffmpeg is missing', async () => {
    harness = await startHarness({}, { TALKBATCH_PREVIEWS: 'true', TALKBATCH_FFMPEG: '/nonexistent/ffmpeg' });
    await harness.enqueue('noff', [row(1)]);
    const worker = await harness.startWorker();
    const counts = await untilBatchFinished(harness.handle.batches, 'noff', 30_000);
    expect(counts).toMatchObject({ done: 1, failed: 0 });
    await vi.waitFor(async () => expect(await worker.previews.pendingCount('noff')).toBe(0), { timeout: 30_000, interval: 100 });
    const [outcome] = await worker.previews.outcomes('noff', ['row0001']);
    expect(outcome).toMatchObject({ status: 'failed', reason: expect.stringMatching(/previews need ffmpeg.*"\/nonexistent\/ffmpeg".*apt-get install -y ffmpeg/) });
  });

  it('makes no previews with --no-previews, and says so', async () => {
    harness = await startHarness({}, { TALKBATCH_PREVIEWS: 'false' });
    await harness.enqueue('off', [row(1)]);
    const worker = await harness.startWorker();
    await untilBatchFinished(harness.handle.batches, 'off', 30_000);
    await vi.waitFor(async () => expect(await worker.previews.pendingCount('off')).toBe(0), { timeout: 30_000, interval: 100 });
    expect(await worker.previews.outcomes('off', ['row0001'])).toEqual([{ status: 'skipped', reason: expect.stringContaining('--no-previews') }]);
    expect((await readdir(join(harness.config.outDir, 'off'))).filter((name) => /\.(jpg|gif)$/.test(name))).toEqual([]);
  });
});

describe("the simulator's per-talk videos", () => {
  const talk = (text: string): Parameters<PersonalisedVideos['prepare']>[1] => ({ source_url: 'https://example.com/a.jpg', script: { type: 'text', input: text } });

  it('draws each talk\'s script on its own video, and keeps what a talk was first served', async () => {
    const fixture = await readFile(FIXTURE);
    const videos = new PersonalisedVideos();
    cleanups.push(() => videos.close());
    videos.prepare('tlk_ana', talk('Hi Ana! Thanks for being with Northwind.'), fixture);
    videos.prepare('tlk_bo', talk('Hi Bo! Thanks for being with Contoso.'), fixture);
    videos.prepare('tlk_early', talk('Hi Chen!'), fixture);
    // Served before its video was made: the fixture, for good (a Range resume must get the same bytes).
    expect(videos.videoFor('tlk_early')).toBeUndefined();
    await videos.ready('tlk_ana', 60_000);
    await videos.ready('tlk_bo', 60_000);
    await videos.ready('tlk_early', 60_000);
    const ana = videos.videoFor('tlk_ana');
    const bo = videos.videoFor('tlk_bo');
    expect(videos.videoFor('tlk_early')).toBeUndefined();
    if (!ana || !bo) throw new Error('no personalised video was made');
    expect(ana.equals(bo)).toBe(false);
    expect(videos.videoFor('tlk_ana')).toBe(ana);

    const dir = await mkdtemp(join(tmpdir(), 'tb-sim-video-'));
    await writeFile(join(dir, 'ana.mp4'), ana);
    expect(await probe(join(dir, 'ana.mp4'))).toMatchObject({ codec: 'h264', width: 320, height: 320 });
    // Different text, different pixels: the posters made from them differ too.
    await writeFile(join(dir, 'bo.mp4'), bo);
    const [anaPoster, boPoster] = await Promise.all(['ana', 'bo'].map(async (name) => readFile((await makePreviews(join(dir, `${name}.mp4`), { ffmpeg: 'ffmpeg', posterAtSeconds: 1 })).poster)));
    expect(anaPoster?.equals(boPoster as Buffer)).toBe(false);
  });

  it('captions the first words of the script on at most three lines', () => {
    expect(captionOf(talk('Hi Ana! Thanks for being with Northwind. I made this short video to show you the spring catalogue. Talk soon!'))).toBe(
      'Hi Ana! Thanks for being\nwith Northwind. I made\nthis short video to show',
    );
    expect(captionOf(talk('<speak>100% <break time="1s"/> sure</speak>'))).toBe('100%% sure');
  });
});
