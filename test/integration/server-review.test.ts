import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startServer, type RunningServer } from '../../src/server/index.js';
import { silentLogger } from '../../src/shared/logger.js';
import { row, startHarness, type Harness } from '../helpers/harness.js';

const KEY = 'review-key-for-tests-0123456789ab';
let harness: Harness;
let server: RunningServer;

beforeAll(async () => {
  harness = await startHarness({ renderMs: 100 }, { TALKBATCH_API_KEYS: KEY });
  server = await startServer({ config: harness.config, redisUrl: harness.config.redisUrl as string, logger: silentLogger, host: '127.0.0.1', port: 0, withWorker: true });
  await harness.enqueue('reviewed', [row(0), row(1)]);
  await vi.waitFor(async () => expect((await harness.handle.batches.counts('reviewed')).done).toBe(2), { timeout: 15_000, interval: 100 });
});

afterAll(async () => {
  await server?.close();
  await harness?.close();
});

const get = (path: string, headers: Record<string, string> = { authorization: `Bearer ${KEY}` }) => fetch(`${server.url}${path}`, { headers, redirect: 'manual' });

describe('review pages in talkbatch serve', () => {
  it('lists batches and serves a batch page with its videos', async () => {
    const list = await get('/review/');
    expect(list.status).toBe(200);
    expect(await list.text()).toContain('reviewed');

    const page = await get('/review/reviewed/');
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/text\/html/);
    expect(await page.text()).toContain('row0001.mp4');
  });

  it('serves videos with Range so players can seek', async () => {
    const whole = await get('/review/reviewed/row0000.mp4');
    expect(whole.status).toBe(200);
    expect(whole.headers.get('content-type')).toBe('video/mp4');
    expect((await whole.arrayBuffer()).byteLength).toBe(17116);
    const part = await get('/review/reviewed/row0000.mp4', { authorization: `Bearer ${KEY}`, range: 'bytes=100-199' });
    expect(part.status).toBe(206);
    expect((await part.arrayBuffer()).byteLength).toBe(100);
  });

  it('never serves a download in progress, nor anything outside the output folder', async () => {
    await writeFile(join(harness.config.outDir, 'reviewed', 'row0009.mp4.part'), 'partial');
    expect((await get('/review/reviewed/row0009.mp4.part')).status).toBe(404);
    expect((await get('/review/reviewed/..%2f..%2fetc%2fpasswd')).status).toBeGreaterThanOrEqual(400);
    expect((await get('/review/nope/')).status).toBe(404);
  });

  it('wants a key; ?key= once sets a cookie a browser can use', async () => {
    expect((await get('/review/', {})).status).toBe(401);
    expect((await get('/review/reviewed/row0000.mp4', {})).status).toBe(401);
    const login = await get(`/review/reviewed/?key=${KEY}`, {});
    expect(login.status).toBe(303);
    expect(login.headers.get('location')).toBe('/review/reviewed/');
    const cookie = (login.headers.get('set-cookie') ?? '').split(';')[0] as string;
    expect(cookie).not.toContain(KEY);
    expect((await get('/review/reviewed/', { cookie })).status).toBe(200);
  });
});
