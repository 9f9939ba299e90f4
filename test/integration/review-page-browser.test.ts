import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { finished } from 'node:stream/promises';
import { createServer, type Server } from 'node:http';
import { extname, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it, vi } from 'vitest';
import { writeBatchReport, type ReportFiles, type ResultRecord } from '../../src/report/results.js';
import { readResultsJsonl, writeReviewPages } from '../../src/report/review-page.js';
import { row, startHarness, type Harness } from '../helpers/harness.js';

// What this machine's Chromium needs to start headless as root without reaching for Google's servers.
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const SCREENSHOT = fileURLToPath(new URL('../../test-results/review-page.png', import.meta.url));
const BATCH = 'review';
const WAIT = { timeout: 20_000 };

/** The slice of the page's DOM the assertions touch (the project compiles without the DOM lib). */
interface VideoElement {
  readyState: number;
  currentTime: number;
  muted: boolean;
  paused: boolean;
  preload: string;
  currentSrc: string;
  error: { code: number; message: string } | null;
  play(): Promise<void>;
  pause(): void;
}
interface PageGlobals {
  document: { querySelector(selector: string): unknown };
  __injected?: unknown;
}

/** A row whose cells try to run script in the review page. */
const HOSTILE_NAME = '<script>window.__injected = 1</script><img src=x onerror="window.__injected = 2">';

let harness: Harness | undefined;
let server: Server | undefined;
let browser: Browser | undefined;
let report: ReportFiles;
let baseUrl: string;

/** A static file server for the batch folder: browsers fetch video over http with Range requests. */
async function serveFolder(root: string): Promise<{ server: Server; url: string }> {
  const types: Record<string, string> = { '.html': 'text/html; charset=utf-8', '.mp4': 'video/mp4', '.csv': 'text/csv', '.jsonl': 'application/x-ndjson' };
  const folder = resolve(root);
  const httpServer = createServer((request, response) => {
    void (async () => {
      const pathname = decodeURIComponent(new URL(request.url ?? '/', 'http://localhost').pathname);
      const path = resolve(folder, `.${pathname.endsWith('/') ? `${pathname}index.html` : pathname}`);
      const size = path.startsWith(folder + sep) ? await stat(path).then((s) => (s.isFile() ? s.size : undefined), () => undefined) : undefined;
      if (size === undefined) {
        response.writeHead(404).end();
        return;
      }
      const headers = { 'content-type': types[extname(path)] ?? 'application/octet-stream', 'accept-ranges': 'bytes' };
      const range = /^bytes=(\d*)-(\d*)$/.exec(request.headers.range ?? '');
      if (range) {
        const start = range[1] ? Number(range[1]) : Math.max(0, size - Number(range[2]));
        const end = range[1] && range[2] ? Math.min(Number(range[2]), size - 1) : size - 1;
        if (start > end || start >= size) {
          response.writeHead(416, { 'content-range': `bytes */${size}` }).end();
          return;
        }
        response.writeHead(206, { ...headers, 'content-range': `bytes ${start}-${end}/${size}`, 'content-length': end - start + 1 });
        createReadStream(path, { start, end }).pipe(response);
        return;
      }
      response.writeHead(200, { ...headers, 'content-length': size });
      createReadStream(path).pipe(response);
    })();
  });
  await new Promise<void>((done) => httpServer.listen(0, '127.0.0.1', done));
  const address = httpServer.address();
  if (address === null || typeof address === 'string') throw new Error('static server has no port');
  return { server: httpServer, url: `http://127.0.0.1:${address.port}/` };
}

async function launchChromium(): Promise<Browser> {
  // Found or installed once per run by test/helpers/global-chromium.ts; playwright-core downloads no browsers.
  const lookup = inject('chromium');
  if ('missing' in lookup) throw new Error(lookup.missing);
  // chromium.launch starts from a fresh, empty profile in a temp folder of its own (and refuses --user-data-dir).
  return chromium.launch({ executablePath: lookup.path, args: CHROMIUM_ARGS });
}

/** Visible cards' row keys, from their `row-<key>` ids. */
async function visibleRows(page: Page): Promise<string[]> {
  const ids = await page.locator('article.c:visible').evaluateAll((cards: { id: string }[]) => cards.map((card) => card.id));
  return ids.map((id) => id.replace(/^row-/, ''));
}

describe('review page in Chromium', () => {
  beforeAll(async () => {
    browser = await launchChromium();

    // A real batch: the simulator renders, a worker downloads. Row 1 fails because the simulator ends
    // every talk in `error` while it is the only row; the other three are enqueued after that.
    harness = await startHarness({ renderMs: 100, errorRate: 1 });
    const failing = row(1, { input: { id: 'row0001', first_name: HOSTILE_NAME } });
    await harness.enqueue(BATCH, [failing]);
    await harness.startWorker();
    await vi.waitFor(async () => expect((await harness?.handle.batches.counts(BATCH))?.failed).toBe(1), { timeout: 20_000, interval: 50 });
    harness.simulator.setKnobs({ errorRate: 0 });
    await harness.enqueue(BATCH, [row(0), row(2), row(3)]);
    await vi.waitFor(async () => expect((await harness?.handle.batches.counts(BATCH))?.done).toBe(3), { timeout: 20_000, interval: 50 });

    report = await writeBatchReport(harness.handle, BATCH, harness.config.outDir);
    const served = await serveFolder(report.dir);
    server = served.server;
    baseUrl = served.url;
  });

  afterAll(async () => {
    await browser?.close();
    await new Promise<void>((done) => (server ? server.close(() => done()) : done()));
    await harness?.close();
    if (harness) await rm(harness.config.outDir, { recursive: true, force: true });
  });

  it('writes index.html next to the results and videos', async () => {
    expect(report.html).toBe(join(report.dir, 'index.html'));
    expect(report.counts).toMatchObject({ done: 3, failed: 1 });
    expect((await stat(report.html)).size).toBeGreaterThan(0);
  });

  it('plays every done row, filters by status, and runs no script from the manifest', async () => {
    const page = await (browser as Browser).newPage({ viewport: { width: 1280, height: 900 } });
    const pageErrors: string[] = [];
    page.on('pageerror', (error) => pageErrors.push(error.message));
    await page.goto(baseUrl);

    // Manifest order, the filter bar revealed by the page's own (CSP-hashed) script.
    await expect.poll(() => visibleRows(page)).toEqual(['row0000', 'row0001', 'row0002', 'row0003']);
    expect(await page.locator('#filters').isVisible()).toBe(true);
    expect(await page.locator('#row-row0001 .b').textContent()).toBe('failed');
    expect(await page.locator('#row-row0001 .e').textContent()).toMatch(/^FaceError: /);
    // The hostile cell is shown as text and never ran.
    expect(await page.locator('#row-row0001 dd').nth(1).textContent()).toBe(HOSTILE_NAME);
    expect(await page.evaluate(() => (globalThis as unknown as PageGlobals).__injected)).toBeUndefined();

    for (const rowKey of ['row0000', 'row0002', 'row0003']) {
      const selector = `#row-${rowKey} video`;
      await page.locator(`#row-${rowKey}`).scrollIntoViewIfNeeded();
      // The card's player is made when it nears the viewport, then loads its first frame.
      await page.waitForFunction(
        (videoSelector: string) => {
          const video = (globalThis as unknown as PageGlobals).document.querySelector(videoSelector) as VideoElement | null;
          if (video?.error) throw new Error(`video error ${video.error.code}: ${video.error.message}`);
          return video !== null && video.readyState >= 2;
        },
        selector,
        WAIT,
      );
      expect(await page.locator(selector).evaluate((video: VideoElement) => video.currentSrc)).toBe(`${baseUrl}${rowKey}.mp4`);
      await page.locator(selector).evaluate((video: VideoElement) => {
        video.muted = true;
        return video.play();
      });
      await page.waitForFunction(
        (videoSelector: string) => {
          const video = (globalThis as unknown as PageGlobals).document.querySelector(videoSelector) as VideoElement | null;
          return video !== null && video.currentTime > 0;
        },
        selector,
        WAIT,
      );
      await page.locator(selector).evaluate((video: VideoElement) => video.pause());
    }
    expect(await page.locator('#row-row0001 video').count()).toBe(0);

    await page.getByRole('button', { name: /^Failed/ }).click();
    await expect.poll(() => visibleRows(page)).toEqual(['row0001']);
    expect(await page.getByRole('button', { name: /^Failed/ }).getAttribute('aria-pressed')).toBe('true');
    expect(new URL(page.url()).hash).toBe('#failed');

    await page.getByRole('button', { name: /^Done/ }).click();
    await expect.poll(() => visibleRows(page)).toEqual(['row0000', 'row0002', 'row0003']);

    await page.getByRole('button', { name: /^All/ }).click();
    await expect.poll(() => visibleRows(page)).toHaveLength(4);

    // A shared link to #failed opens filtered.
    await page.goto(`${baseUrl}#failed`);
    await expect.poll(() => visibleRows(page)).toEqual(['row0001']);
    await page.goto(baseUrl);
    await page.locator('#row-row0000').scrollIntoViewIfNeeded();
    await page.waitForFunction(
      () => ((globalThis as unknown as PageGlobals).document.querySelector('#row-row0000 video') as VideoElement | null)?.readyState === 4,
      undefined,
      WAIT,
    );
    await page.evaluate(() => (globalThis as unknown as { scrollTo(x: number, y: number): void }).scrollTo(0, 0));

    await mkdir(join(SCREENSHOT, '..'), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    expect(pageErrors).toEqual([]);
    await page.close();
  });

  it('shows every card and a player per done row without JavaScript', async () => {
    const context = await (browser as Browser).newContext({ javaScriptEnabled: false });
    const page = await context.newPage();
    await page.goto(baseUrl);
    expect(await visibleRows(page)).toEqual(['row0000', 'row0001', 'row0002', 'row0003']);
    expect(await page.locator('#filters').isVisible()).toBe(false);
    expect(await page.locator('article.c video').count()).toBe(3);
    expect(await page.locator('#row-row0002 video').getAttribute('src')).toBe('row0002.mp4');
    await context.close();
  });
});

/** A row of a generated batch: every 10th failed, the rest done (their files need not exist to page through). */
function generatedRecord(index: number): ResultRecord {
  const rowKey = `g${String(index).padStart(6, '0')}`;
  const failedRow = index % 10 === 7;
  return {
    line: index + 2,
    rowKey,
    jobId: `${LARGE_BATCH}-${rowKey}`,
    status: failedRow ? 'failed' : 'done',
    talkId: failedRow ? null : `tlk_${rowKey}AbCdEfGhIjKl`,
    file: failedRow ? null : `${rowKey}.mp4`,
    bytes: failedRow ? null : 1_234_567,
    sha256: failedRow ? null : 'ab'.repeat(32),
    videoSeconds: failedRow ? null : 9.5,
    renderSeconds: failedRow ? null : 30.1,
    attempts: 1,
    errorKind: failedRow ? 'FaceError' : null,
    errorDescription: failedRow ? 'Failed to detect a face in the source image' : null,
    script: `Hi Person ${index}! Thanks for being with Company ${index % 97}. Here is what is new this month. Talk soon!`,
    enqueuedAt: '2026-11-25T07:00:00.000Z',
    finishedAt: '2026-11-25T08:00:00.000Z',
    input: { id: rowKey, first_name: `Person ${index}`, company: `Company ${index % 97}`, image_url: `https://example.com/faces/${index % 50}.jpg` },
  };
}

const LARGE_BATCH = 'large';
const LARGE_ROWS = 100_000;

describe('review page of a 100,000-row batch in Chromium', () => {
  let dir: string;
  let largeServer: Server | undefined;
  let largeBrowser: Browser | undefined;
  let largeUrl: string;

  beforeAll(async () => {
    largeBrowser = await launchChromium();
    dir = await mkdtemp(join(tmpdir(), 'tb-large-review-'));
    // The batch's results.jsonl as `talkbatch report` writes it, generated rather than rendered.
    const jsonl = join(dir, 'results.jsonl');
    const out = createWriteStream(jsonl);
    for (let index = 0; index < LARGE_ROWS; index += 1) {
      if (!out.write(`${JSON.stringify(generatedRecord(index))}\n`)) await new Promise<void>((resolve) => out.once('drain', () => resolve()));
    }
    out.end();
    await finished(out);
    await writeReviewPages(dir, LARGE_BATCH, () => readResultsJsonl(jsonl));
    const served = await serveFolder(dir);
    largeServer = served.server;
    largeUrl = served.url;
  }, 120_000);

  afterAll(async () => {
    await largeBrowser?.close();
    await new Promise<void>((done) => (largeServer ? largeServer.close(() => done()) : done()));
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('opens a first page under 2 MB, scrolls it, and filters failed and done rows across the whole batch', async () => {
    expect((await stat(join(dir, 'index.html'))).size).toBeLessThan(2_000_000);
    const page = await (largeBrowser as Browser).newPage({ viewport: { width: 1280, height: 900 } });
    const pageErrors: string[] = [];
    page.on('pageerror', (error) => pageErrors.push(error.message));
    await page.goto(largeUrl);

    // The first page: the batch's first 1,000 rows, counts of the whole batch, a way on to the rest.
    await expect.poll(async () => (await visibleRows(page)).length).toBe(1_000);
    expect((await visibleRows(page))[0]).toBe('g000000');
    expect(await page.locator('.summary').textContent()).toMatch(/^100000 rows: 90000 done, 10000 failed/);
    expect(await page.locator('nav.pager').first().textContent()).toContain('page 1 of 100');
    // Scrolls to its end, where the last card's player is made as it comes near.
    await page.evaluate(() => (globalThis as unknown as { scrollTo(x: number, y: number): void }).scrollTo(0, 1e9));
    await page.locator('#row-g000999 video').waitFor({ state: 'attached', ...WAIT });
    expect(await page.locator('#row-g000999 video').getAttribute('src')).toBe('g000999.mp4');

    // Failed: only failed rows, from the whole batch (10,000 over 10 pages), to the very last one.
    await page.locator('#filters a', { hasText: /^Failed/ }).click();
    await page.waitForURL(/\/pages\/failed-1\.html$/);
    const failedRows = await visibleRows(page);
    expect(failedRows).toHaveLength(1_000);
    expect(failedRows.every((key) => Number(key.slice(1)) % 10 === 7)).toBe(true);
    expect(await page.locator('article.c.failed').count()).toBe(1_000);
    expect(await page.locator('nav.pager').first().textContent()).toContain('page 1 of 10');
    await page.locator('nav.pager').first().getByRole('link', { name: 'last »' }).click();
    await page.waitForURL(/\/pages\/failed-10\.html$/);
    expect((await visibleRows(page)).at(-1)).toBe('g099997');

    // Done: 90,000 rows in 90 pages, players pointing back up at the batch folder.
    await page.locator('#filters a', { hasText: /^Done/ }).click();
    await page.waitForURL(/\/pages\/done-1\.html$/);
    const doneRows = await visibleRows(page);
    expect(doneRows).toHaveLength(1_000);
    expect(doneRows.every((key) => Number(key.slice(1)) % 10 !== 7)).toBe(true);
    expect(await page.locator('#row-g000000 .v').getAttribute('data-src')).toBe('../g000000.mp4');
    await page.locator('nav.pager').first().getByRole('link', { name: 'next ›' }).click();
    await page.waitForURL(/\/pages\/done-2\.html$/);
    expect((await visibleRows(page))[0]).toBe('g001111');

    // All, from a page in the middle back to the start.
    await page.locator('#filters a', { hasText: /^All/ }).click();
    await page.waitForURL((url) => url.pathname === '/index.html');
    expect((await visibleRows(page))[0]).toBe('g000000');
    await page.goto(`${largeUrl}pages/all-100.html`);
    expect((await visibleRows(page)).at(-1)).toBe('g099999');
    expect(pageErrors).toEqual([]);
    await page.close();
  });
});
