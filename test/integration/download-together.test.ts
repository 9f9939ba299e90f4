import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { downloadVerified } from '../../src/download/downloader.js';
import { FIXTURE_SHA256, FIXTURE_VIDEO } from '../helpers/harness.js';

/*
 * Rows finishing together write into one batch folder, and their renames share directory fsyncs
 * (downloader.ts, syncDir). Every download must still end, verified, in waves that overlap.
 */

let server: Server;
let url: string;
let dir: string;

beforeAll(async () => {
  server = createServer((_request, response) => {
    response.writeHead(200, { 'content-type': 'video/mp4', 'content-length': String(FIXTURE_VIDEO.length) }).end(FIXTURE_VIDEO);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/talk.mp4`;
  dir = await mkdtemp(join(tmpdir(), 'tb-download-together-'));
});

afterAll(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await rm(dir, { recursive: true, force: true });
});

describe('downloads finishing together in one folder', () => {
  it('all end verified and renamed, in overlapping waves', async () => {
    const names = Array.from({ length: 60 }, (_, i) => `row${String(i).padStart(3, '0')}.mp4`);
    // Three waves started 5 ms apart, so later renames land while earlier directory syncs run.
    const waves = [0, 1, 2].map(async (wave) => {
      await new Promise((resolve) => setTimeout(resolve, wave * 5));
      return Promise.all(names.filter((_, i) => i % 3 === wave).map((name) => downloadVerified(url, join(dir, name))));
    });
    const results = (await Promise.all(waves)).flat();
    expect(results).toHaveLength(names.length);
    for (const result of results) expect(result).toMatchObject({ sha256: FIXTURE_SHA256, bytes: FIXTURE_VIDEO.length, reused: false });
    expect((await readdir(dir)).sort()).toEqual(names);
    for (const name of names) expect(createHash('sha256').update(await readFile(join(dir, name))).digest('hex')).toBe(FIXTURE_SHA256);
  });
});
