import { readFileSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { readManifest, type ManifestRow } from '../../src/manifest/index.js';
import { shareLink } from '../../src/manifest/local-media.js';
import { startHarness, untilBatchFinished, type Harness } from '../helpers/harness.js';

const PHOTO = readFileSync(new URL('../../jobs/media/ana.jpg', import.meta.url));
let harness: Harness | undefined;
let server: Server | undefined;
afterEach(async () => {
  await harness?.close();
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  harness = undefined;
  server = undefined;
});

/** A share host: /photo serves the image without an extension, /page an HTML page as Dropbox's dl=0 does. */
async function shareHost(): Promise<{ url: string; hits: string[] }> {
  const hits: string[] = [];
  server = createServer((req, res) => {
    hits.push(req.url ?? '');
    if (req.url?.startsWith('/photo')) res.writeHead(200, { 'content-type': 'image/jpeg' }).end(PHOTO);
    else res.writeHead(200, { 'content-type': 'text/html' }).end('<html>Preview</html>');
  });
  await new Promise<void>((resolve) => server?.listen(0, '127.0.0.1', () => resolve()));
  return { url: `http://127.0.0.1:${(server?.address() as AddressInfo).port}`, hits };
}

async function rowsFor(urls: string[]): Promise<ManifestRow[]> {
  const dir = await mkdtemp(join(tmpdir(), 'tb-share-'));
  const path = join(dir, 'sheet.csv');
  await writeFile(path, `id,image_url,script\n${urls.map((url, i) => `r${i},${url},Hello number ${i} nice to meet you.`).join('\n')}\n`);
  const rows: ManifestRow[] = [];
  for await (const record of readManifest(path)) if (record.ok === true) rows.push(record.row);
  return rows;
}

describe('share links', () => {
  it('rewrites Google Drive and Dropbox links to their direct download, and leaves .jpg/.png URLs to D-ID', () => {
    expect(shareLink('https://drive.google.com/file/d/1AbC-d_9/view?usp=sharing')).toBe('https://drive.google.com/uc?export=download&id=1AbC-d_9');
    expect(shareLink('https://www.dropbox.com/s/abc/ana.jpg?dl=0')).toBe('https://www.dropbox.com/s/abc/ana.jpg?dl=1');
    expect(shareLink('https://cdn.example.com/people/ana')).toBe('https://cdn.example.com/people/ana');
    expect(shareLink('https://cdn.example.com/people/ana.png?v=2')).toBeUndefined();
    expect(shareLink('http://example.com/ana')).toBeUndefined();
  });

  it('fetches the image, checks it, uploads it once; an HTML page fails its row with nothing paid', async () => {
    const host = await shareHost();
    harness = await startHarness({ renderMs: 100 }, { TALKBATCH_OUTBOUND_ALLOW: '127.0.0.1' });
    const h = harness;
    await h.startWorker();
    const rows = await rowsFor([`${host.url}/photo`, `${host.url}/photo?again=1`, `${host.url}/page`]);
    expect(rows.map((row) => row.talk.source_link)).toEqual([`${host.url}/photo`, `${host.url}/photo?again=1`, `${host.url}/page`]);
    await h.enqueue('links', rows);
    expect(await untilBatchFinished(h.handle.batches, 'links', 20_000)).toMatchObject({ done: 2, failed: 1 });
    expect(h.simulator.stats()).toMatchObject({ uploads: 1, totalCreates: 2 });
    const failed = await h.handle.queue.getJob('links-r2');
    expect(failed?.data.state?.failure).toMatchObject({ kind: 'LocalFileError', description: expect.stringContaining('does not serve a JPEG or PNG image') });
  });

  it('refuses a link to a private address unless the operator allowed it, sending it nothing', async () => {
    const host = await shareHost();
    harness = await startHarness({ renderMs: 100 });
    const h = harness;
    await h.startWorker();
    await h.enqueue('private', await rowsFor([`${host.url}/photo`]));
    expect(await untilBatchFinished(h.handle.batches, 'private', 20_000)).toMatchObject({ failed: 1 });
    expect(host.hits).toEqual([]);
    expect(h.simulator.stats()).toMatchObject({ uploads: 0, totalCreates: 0 });
    const job = await h.handle.queue.getJob('private-r0');
    expect(job?.data.state?.failure?.description).toContain('only public http(s) addresses are fetched');
  });
});
