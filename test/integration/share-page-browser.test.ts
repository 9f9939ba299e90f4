import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, inject, it, vi } from 'vitest';
import { ShareStore } from '../../src/queue/previews.js';
import { writeBatchReport } from '../../src/report/results.js';
import { buildServer, type TalkbatchServer } from '../../src/server/build-server.js';
import { runCli } from '../helpers/cli.js';
import { row, startHarness, untilBatchFinished, type Harness } from '../helpers/harness.js';

const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const BATCH = 'share';
const WAIT = { timeout: 20_000 };
const API_KEY = 'share-test-api-key-0123456789';

/** The slice of the page's DOM the assertions touch (the project compiles without the DOM lib). */
interface VideoElement {
  readyState: number;
  currentTime: number;
  muted: boolean;
  poster: string;
  currentSrc: string;
  error: { code: number; message: string } | null;
  play(): Promise<void>;
}
interface PageGlobals {
  document: { querySelector(selector: string): unknown };
}

let harness: Harness | undefined;
let server: TalkbatchServer | undefined;
let browser: Browser | undefined;
let baseUrl = '';
let shares: ShareStore;

async function tokenOf(rowKey: string): Promise<string> {
  const [token] = await shares.tokens(BATCH, [rowKey]);
  if (!token) throw new Error(`no share token for ${rowKey}`);
  return token;
}

describe('share page in Chromium', () => {
  beforeAll(async () => {
    // Found or installed once per run by test/helpers/global-chromium.ts; playwright-core downloads no browsers.
    const lookup = inject('chromium');
    if ('missing' in lookup) throw new Error(lookup.missing);
    browser = await chromium.launch({ executablePath: lookup.path, args: CHROMIUM_ARGS });
    harness = await startHarness({ renderMs: 100 }, { TALKBATCH_PREVIEWS: 'true', TALKBATCH_API_KEYS: API_KEY });
    await harness.enqueue(BATCH, [
      row(1, { input: { id: 'row0001', share_title: 'Hello Ana <b>!</b>', share_message: 'A video made for you & your team.' } }),
      row(2),
    ]);
    const worker = await harness.startWorker();
    await untilBatchFinished(harness.handle.batches, BATCH, 30_000);
    await vi.waitFor(async () => expect(await worker.previews.pendingCount(BATCH)).toBe(0), { timeout: 30_000, interval: 100 });
    shares = new ShareStore(harness.handle.redis, harness.config.prefix, harness.config.queueName);

    server = await buildServer({ config: harness.config, handle: harness.handle });
    await server.app.listen({ port: 0, host: '127.0.0.1' });
    const address = server.app.server.address();
    if (address === null || typeof address === 'string') throw new Error('server has no port');
    baseUrl = `http://127.0.0.1:${address.port}`;
  });

  afterAll(async () => {
    await browser?.close();
    await server?.app.close();
    await harness?.close();
  });

  it('plays the video with its poster, shows the title and message, and carries unfurl tags, without an API key', async () => {
    const token = await tokenOf('row0001');
    const pageUrl = `${baseUrl}/s/${token}`;
    const page = await (browser as Browser).newPage();
    const response = await page.goto(pageUrl);
    expect(response?.status()).toBe(200);

    expect(await page.title()).toBe('Hello Ana <b>!</b>');
    expect(await page.locator('h1').textContent()).toBe('Hello Ana <b>!</b>');
    expect(await page.locator('main p').textContent()).toBe('A video made for you & your team.');
    const og = async (property: string): Promise<string | null> => page.locator(`meta[property="${property}"]`).getAttribute('content');
    expect(await og('og:title')).toBe('Hello Ana <b>!</b>');
    expect(await og('og:description')).toBe('A video made for you & your team.');
    expect(await og('og:image')).toBe(`${pageUrl}/poster.jpg`);
    expect(await og('og:video')).toBe(`${pageUrl}/video.mp4`);
    expect(await og('og:video:type')).toBe('video/mp4');
    expect(await page.locator('meta[name="twitter:card"]').getAttribute('content')).toBe('summary_large_image');

    // The poster and the unfurl image are the real JPEG next to the MP4.
    const poster = await request(`${pageUrl}/poster.jpg`);
    expect(poster.statusCode).toBe(200);
    expect(poster.headers['content-type']).toBe('image/jpeg');
    expect(Buffer.from(await poster.body.arrayBuffer()).equals(await readFile(join(harness?.config.outDir ?? '', BATCH, 'row0001.jpg')))).toBe(true);

    await page.waitForFunction(() => {
      const video = (globalThis as unknown as PageGlobals).document.querySelector('video') as VideoElement | null;
      if (video?.error) throw new Error(`video error ${video.error.code}: ${video.error.message}`);
      return video !== null && video.readyState >= 2;
    }, undefined, WAIT);
    expect(await page.locator('video').evaluate((video: VideoElement) => [video.currentSrc, video.poster])).toEqual([`${pageUrl}/video.mp4`, `${pageUrl}/poster.jpg`]);
    await page.locator('video').evaluate((video: VideoElement) => {
      video.muted = true;
      return video.play();
    });
    await page.waitForFunction(() => ((globalThis as unknown as PageGlobals).document.querySelector('video') as VideoElement).currentTime > 0, undefined, WAIT);
    await page.close();
  });

  it('serves the MP4 with HTTP Range and the GIF for email', async () => {
    const token = await tokenOf('row0002');
    const video = await readFile(join(harness?.config.outDir ?? '', BATCH, 'row0002.mp4'));
    const ranged = await request(`${baseUrl}/s/${token}/video.mp4`, { headers: { range: 'bytes=100-199' } });
    expect(ranged.statusCode).toBe(206);
    expect(ranged.headers['content-range']).toBe(`bytes 100-199/${video.length}`);
    expect(Buffer.from(await ranged.body.arrayBuffer()).equals(video.subarray(100, 200))).toBe(true);
    const gif = await request(`${baseUrl}/s/${token}/preview.gif`);
    expect(gif.statusCode).toBe(200);
    expect(gif.headers['content-type']).toBe('image/gif');
    expect(Buffer.from(await gif.body.arrayBuffer()).subarray(0, 6).toString('latin1')).toBe('GIF89a');
    // Only the three named files: nothing else in the batch folder is reachable through a share link.
    expect((await request(`${baseUrl}/s/${token}/results.csv`)).statusCode).toBe(404);
  });

  it('answers 404 for an unknown token, and keeps the review page and API behind the key', async () => {
    const page = await (browser as Browser).newPage();
    expect((await page.goto(`${baseUrl}/s/${'A'.repeat(43)}`))?.status()).toBe(404);
    expect((await page.goto(`${baseUrl}/s/not-a-token`))?.status()).toBe(404);
    expect((await page.goto(`${baseUrl}/review/${BATCH}/`))?.status()).toBe(401);
    await page.close();
    expect((await request(`${baseUrl}/v1/batches/${BATCH}`)).statusCode).toBe(401);
  });

  it('answers 410 Gone once a link is revoked, page and files alike, and leaves other rows shared', async () => {
    const revokedToken = await tokenOf('row0001');
    const otherToken = await tokenOf('row0002');
    // The operator's way: talkbatch share revoke BATCH ROW, on the workers' Redis.
    const { config } = harness as Harness;
    const cli = await runCli(['share', 'revoke', BATCH, 'row0001'], { REDIS_URL: config.redisUrl, TALKBATCH_QUEUE: config.queueName, TALKBATCH_PREFIX: config.prefix });
    expect(cli.code, cli.stderr).toBe(0);
    expect(cli.stdout).toContain('1 share link revoked (row row0001) in batch share');
    expect(await shares.revoke(BATCH, 'row0001')).toBe(0);
    const page = await (browser as Browser).newPage();
    expect((await page.goto(`${baseUrl}/s/${revokedToken}`))?.status()).toBe(410);
    expect(await page.locator('h1').textContent()).toBe('No longer shared');
    expect((await request(`${baseUrl}/s/${revokedToken}/video.mp4`)).statusCode).toBe(410);
    expect((await page.goto(`${baseUrl}/s/${otherToken}`))?.status()).toBe(200);
    expect(await shares.revoke(BATCH)).toBe(1);
    expect((await page.goto(`${baseUrl}/s/${otherToken}`))?.status()).toBe(410);
    await page.close();

    // The report keeps the (now dead) links; the page says they are gone.
    const report = await writeBatchReport((harness as Harness).handle, BATCH, (harness as Harness).config.outDir, { shareBaseUrl: baseUrl });
    expect((await readFile(report.csv, 'utf8')).includes(`${baseUrl}/s/${revokedToken}`)).toBe(true);
  });
});
