import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parse } from 'csv-parse/sync';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { jobIdFor } from '../../src/queue/payload.js';
import { buildServer, startServer, type RunningServer } from '../../src/server/index.js';
import { silentLogger } from '../../src/shared/logger.js';
import { FIXTURE_SHA256, IMAGE, startHarness, type Harness } from '../helpers/harness.js';

const KEY = 'api-key-for-tests-0123456789abcdef';
const OTHER_KEY = 'second-key-for-tests-0123456789ab';

let harness: Harness;
let server: RunningServer;

beforeAll(async () => {
  harness = await startHarness({ renderMs: 150 }, { TALKBATCH_API_KEYS: `${KEY}, ${OTHER_KEY}`, TALKBATCH_CALLBACK_SECRET: 'callback-secret-0123456789abcdef', TALKBATCH_OUTBOUND_ALLOW: '127.0.0.1' });
  // What `talkbatch serve --with-worker` runs.
  server = await startServer({ config: harness.config, redisUrl: harness.config.redisUrl as string, logger: silentLogger, host: '127.0.0.1', port: 0, withWorker: true });
});

afterAll(async () => {
  await server?.close();
  await harness?.close();
});

function api(path: string, init: RequestInit & { key?: string | null } = {}): Promise<Response> {
  const { key = KEY, headers, ...rest } = init;
  return fetch(`${server.url}${path}`, { ...rest, headers: { ...(key ? { authorization: `Bearer ${key}` } : {}), ...(headers as Record<string, string> | undefined) } });
}

function postJson(path: string, body: unknown, key: string | null = KEY): Promise<Response> {
  return api(path, { method: 'POST', key, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
}

const people = (prefix: string, count: number) =>
  Array.from({ length: count }, (_, i) => ({ id: `${prefix}${i}`, first_name: `Person ${i}`, image_url: IMAGE }));

async function untilFinished(batchId: string): Promise<Record<string, unknown> & { rows: Record<string, unknown>[] }> {
  let batch: (Record<string, unknown> & { rows: Record<string, unknown>[] }) | undefined;
  await vi.waitFor(
    async () => {
      const response = await api(`/v1/batches/${batchId}`);
      expect(response.status).toBe(200);
      batch = (await response.json()) as typeof batch;
      expect(batch?.progress).toBe(1);
    },
    { timeout: 15_000, interval: 100 },
  );
  return batch as NonNullable<typeof batch>;
}

describe('REST API', () => {
  it('answers 401 on every route without a valid key, and changes nothing', async () => {
    const routes: [string, string][] = [
      ['GET', '/v1/batches'],
      ['POST', '/v1/batches'],
      ['GET', '/v1/batches/b1'],
      ['GET', '/v1/batches/b1/results.csv'],
      ['GET', '/v1/batches/b1/files/row1.mp4'],
      ['POST', '/v1/batches/b1/cancel'],
      ['GET', '/metrics'],
      ['GET', '/openapi.json'],
      ['GET', '/admin'],
      ['GET', '/admin/api/queues'],
    ];
    const body = JSON.stringify({ rows: people('u', 1), options: { batchId: 'unauth', template: 'Hello {{first_name}}!' } });
    for (const key of [null, 'wrong-key-0123456789abcdef0123', `${KEY}x`, KEY.slice(0, -1)]) {
      for (const [method, path] of routes) {
        const response = await api(path, { method, key, headers: { 'content-type': 'application/json' }, ...(method === 'POST' ? { body } : {}) });
        expect(response.status, `${method} ${path} with ${key}`).toBe(401);
        expect(await response.json()).toMatchObject({ error: 'unauthorized' });
      }
    }
    expect(await harness.handle.batches.exists('unauth')).toBe(false);
    expect(await harness.handle.queue.getJob(jobIdFor('unauth', 'u0'))).toBeUndefined();

    expect(await (await api('/healthz', { key: null })).json()).toEqual({ status: 'ok' });
    const ready = await api('/readyz', { key: null });
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ status: 'ready', redis: 'ok', workers: [{ id: server.worker?.id }] });
    // Either configured key works.
    expect((await api('/v1/batches', { key: OTHER_KEY })).status).toBe(200);
  });

  it('refuses everything with a clear message when no API keys are configured', async () => {
    const bare = await buildServer({ config: { ...harness.config, apiKeys: [] }, handle: harness.handle });
    const url = await bare.app.listen({ host: '127.0.0.1', port: 0 });
    try {
      const response = await fetch(`${url}/v1/batches`, { headers: { authorization: `Bearer ${KEY}` } });
      expect(response.status).toBe(401);
      expect(await response.json()).toEqual({ error: 'unauthorized', message: expect.stringContaining('TALKBATCH_API_KEYS') });
      expect((await fetch(`${url}/healthz`)).status).toBe(200);
    } finally {
      await bare.app.close();
    }
  });

  it('takes rows, renders them, and serves progress, videos and results.csv', async () => {
    const created = await postJson('/v1/batches', { rows: people('p', 3), options: { template: 'Hello {{first_name}}, here is your video.' } });
    expect(created.status).toBe(201);
    const { batchId, added, alreadyPresent, links } = (await created.json()) as { batchId: string; added: number; alreadyPresent: number; links: Record<string, string> };
    expect({ added, alreadyPresent }).toEqual({ added: 3, alreadyPresent: 0 });
    expect(links.self).toBe(`/v1/batches/${batchId}`);

    const batch = await untilFinished(batchId);
    expect(batch).toMatchObject({ id: batchId, source: 'api', counts: { total: 3, done: 3, failed: 0 }, finishedAt: expect.any(String) });
    expect(batch.rows.map((row) => row.status)).toEqual(['done', 'done', 'done']);
    const fileLink = (batch.rows[0]?.links as { file: string }).file;
    expect(fileLink).toBe(`/v1/batches/${batchId}/files/p0.mp4`);
    const video = await api(fileLink);
    expect(video.status).toBe(200);
    expect(video.headers.get('content-type')).toBe('video/mp4');
    expect(createHash('sha256').update(Buffer.from(await video.arrayBuffer())).digest('hex')).toBe(FIXTURE_SHA256);

    const csv = await api(`/v1/batches/${batchId}/results.csv`);
    expect(csv.status).toBe(200);
    expect(csv.headers.get('content-type')).toMatch(/^text\/csv/);
    const records = parse<Record<string, string>>(await csv.text(), { columns: true });
    expect(records.map((record) => [record.row_key, record.status])).toEqual([['p0', 'done'], ['p1', 'done'], ['p2', 'done']]);

    // The same rows again add nothing.
    const again = await postJson('/v1/batches', { rows: people('p', 3), options: { batchId, template: 'Hello {{first_name}}, here is your video.' } });
    expect(again.status).toBe(200);
    expect(await again.json()).toMatchObject({ added: 0, alreadyPresent: 3 });

    const list = (await (await api('/v1/batches?limit=50')).json()) as { batches: { id: string; counts: { done: number } }[] };
    expect(list.batches.find((entry) => entry.id === batchId)?.counts.done).toBe(3);

    // Files stay inside the batch folder.
    await writeFile(join(harness.config.outDir, batchId, 'p9.mp4.part'), 'partial');
    for (const name of ['..%2F..%2Fetc%2Fpasswd', '.hidden', 'p9.mp4.part', 'nope.mp4']) {
      expect((await api(`/v1/batches/${batchId}/files/${name}`)).status, name).toBe(404);
    }
    expect((await api('/v1/batches/..%2Fx/files/p0.mp4')).status).toBe(404);

    const metrics = await (await api('/metrics')).text();
    expect(metrics).toContain('talkbatch_did_responses_total{route="POST /talks",status="201"}');
    expect(metrics).toMatch(/talkbatch_rows_total\{outcome="done"\} [3-9]/);
    expect(metrics).toContain('talkbatch_render_seconds_bucket');
    expect(metrics).toMatch(/talkbatch_download_bytes_total \d{5,}/);
    expect(metrics).toContain('bullmq_job_count');
  });

  it('takes a text/csv body with options in the query string', async () => {
    const csvBody = `id,first_name,image_url\nc1,Ada,${IMAGE}\nc2,Grace,${IMAGE}\n`;
    const query = new URLSearchParams({ batchId: 'csv-batch', template: 'Hi {{first_name}}, welcome aboard.' });
    const created = await api(`/v1/batches?${query.toString()}`, { method: 'POST', headers: { 'content-type': 'text/csv' }, body: csvBody });
    expect(created.status).toBe(201);
    expect(await created.json()).toMatchObject({ batchId: 'csv-batch', added: 2 });
    const batch = await untilFinished('csv-batch');
    expect(batch.counts).toMatchObject({ done: 2, failed: 0 });
  });

  it('reads a windows-1252 CSV body by its charset or the encoding parameter', async () => {
    // "José" and "€" in windows-1252: 0xE9 and 0x80.
    const body = Buffer.concat([Buffer.from(`id,first_name,image_url\nw1,Jos`), Buffer.from([0xe9]), Buffer.from(`,${IMAGE}\n`)]);
    const template = 'Hola {{first_name}}, son 9 \u20ac.';
    const plain = await api(`/v1/batches?${new URLSearchParams({ batchId: 'cp-plain', template }).toString()}`, { method: 'POST', headers: { 'content-type': 'text/csv' }, body });
    expect(plain.status).toBe(422);
    expect(await plain.json()).toMatchObject({ issues: [{ line: 2, message: expect.stringContaining('--encoding windows-1252') as unknown }] });
    for (const [batchId, type, extra] of [
      ['cp-charset', 'text/csv; charset=windows-1252', {}],
      ['cp-param', 'text/csv', { encoding: 'windows-1252' }],
    ] as const) {
      const created = await api(`/v1/batches?${new URLSearchParams({ batchId, template, ...extra }).toString()}`, { method: 'POST', headers: { 'content-type': type }, body });
      expect(created.status, batchId).toBe(201);
      const job = await harness.handle.queue.getJob(jobIdFor(batchId, 'w1'));
      expect(job?.data.talk.script).toEqual({ type: 'text', input: 'Hola José, son 9 €.' });
    }
  });

  it('answers 422 with line, column and message for a bad row, and enqueues nothing', async () => {
    const rows = [...people('g', 2), { id: 'bad1', first_name: 'Bad', image_url: 'ftp://example.com/face.gif' }];
    const response = await postJson('/v1/batches', { rows, options: { batchId: 'bad-batch', template: 'Hello {{first_name}}, here you are.' } });
    expect(response.status).toBe(422);
    const body = (await response.json()) as { error: string; message: string; issues: Record<string, unknown>[] };
    expect(body.error).toBe('invalid_rows');
    expect(body.issues).toEqual([{ line: 3, row: 2, column: 'image_url', message: expect.any(String) }]);
    expect(JSON.stringify(body)).not.toContain('talkbatch-intake');
    expect(await harness.handle.batches.exists('bad-batch')).toBe(false);
    expect(await harness.handle.queue.getJob(jobIdFor('bad-batch', 'g0'))).toBeUndefined();

    const csv = await api('/v1/batches?batchId=bad-csv', { method: 'POST', headers: { 'content-type': 'text/csv' }, body: `id,script\nx1,Hello there friend\n` });
    expect(csv.status).toBe(422);
    expect(await csv.json()).toMatchObject({ error: 'invalid_rows', issues: [{ line: 1, column: 'image_url' }] });
    expect(await harness.handle.batches.exists('bad-csv')).toBe(false);

    const tooMany = await postJson('/v1/batches', { rows: people('m', 3), options: { template: 'Hello {{first_name}}!', maxTalks: 2 } });
    expect(tooMany.status).toBe(422);
    expect(await tooMany.json()).toMatchObject({ error: 'too_many_rows', rows: 3, maxTalks: 2 });
  });

  it('answers 400 for malformed requests', async () => {
    const bad: unknown[] = [
      { rows: people('x', 1), csv: 'id\n' },
      {},
      { rows: [] },
      { rows: people('x', 1), options: { unknown: true } },
      { rows: people('x', 1), options: { batchId: 'has:colon', template: 'Hello {{first_name}}!' } },
      { rows: people('x', 1), options: { callbackUrl: 'http://example.com/hook', template: 'Hello {{first_name}}!' } },
    ];
    for (const body of bad) {
      const response = await postJson('/v1/batches', body);
      expect(response.status, JSON.stringify(body)).toBe(400);
      expect(await response.json()).toMatchObject({ error: 'bad_request', message: expect.any(String) });
    }
    const broken = await api('/v1/batches', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"rows": [' });
    expect(broken.status).toBe(400);
    expect((await api('/v1/batches/nope')).status).toBe(404);
    expect((await api('/v1/nothing-here')).status).toBe(404);
  });

  it('cancels the rows that have not started and reports them', async () => {
    await harness.handle.queue.pause();
    try {
      const created = await postJson('/v1/batches', { rows: people('k', 3), options: { batchId: 'to-cancel', template: 'Hello {{first_name}}, bye.' } });
      expect(created.status).toBe(201);
      const cancel = await api('/v1/batches/to-cancel/cancel', { method: 'POST' });
      expect(cancel.status).toBe(200);
      const result = (await cancel.json()) as { removed: string[]; kept: unknown[]; finished: boolean; cancelledAt: string };
      expect(result.removed.sort()).toEqual(['to-cancel-k0', 'to-cancel-k1', 'to-cancel-k2']);
      expect(result).toMatchObject({ kept: [], finished: true });
      const batch = await untilFinished('to-cancel');
      expect(batch).toMatchObject({ cancelledAt: result.cancelledAt, counts: { total: 3, done: 0, failed: 3 } });
      expect(batch.rows.map((row) => row.status)).toEqual(['cancelled', 'cancelled', 'cancelled']);
      expect(await harness.handle.queue.getJob('to-cancel-k0')).toBeUndefined();
    } finally {
      await harness.handle.queue.resume();
    }
    expect(harness.simulator.stats().createsByUserData['to-cancel-k0']).toBeUndefined();
  });

  it('describes itself as OpenAPI 3.1', async () => {
    const document = (await (await api('/openapi.json')).json()) as { openapi: string; paths: Record<string, unknown> };
    expect(document.openapi).toBe('3.1.0');
    expect(Object.keys(document.paths)).toEqual(expect.arrayContaining(['/v1/batches', '/v1/batches/{id}', '/v1/batches/{id}/results.csv', '/v1/batches/{id}/cancel', '/webhooks/did/{jobId}/{token}', '/metrics']));
  });

  it('serves the dashboard behind the key, with a cookie for browsers, read-only', async () => {
    const page = await api('/admin');
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/text\/html/);

    const login = await api(`/admin?key=${encodeURIComponent(KEY)}`, { key: null, redirect: 'manual' });
    expect(login.status).toBe(303);
    expect(login.headers.get('location')).toBe('/admin');
    const cookie = login.headers.get('set-cookie') ?? '';
    expect(cookie).toMatch(/HttpOnly/);
    expect(cookie).not.toContain(KEY);
    const session = cookie.split(';')[0] as string;

    const queues = await api('/admin/api/queues', { key: null, headers: { cookie: session } });
    expect(queues.status).toBe(200);
    expect(await queues.json()).toMatchObject({ queues: [{ readOnlyMode: true }] });
    const pause = await api(`/admin/api/queues/${harness.config.queueName}/pause`, { method: 'PUT', key: null, headers: { cookie: session } });
    expect(pause.status).toBe(405);
    expect(await harness.handle.queue.isPaused()).toBe(false);

    expect((await api('/admin?key=wrong-key-0123456789abcdef0123', { key: null, redirect: 'manual' })).status).toBe(401);
    expect((await api('/admin/api/queues', { key: null, headers: { cookie: 'talkbatch_admin=forged' } })).status).toBe(401);
  });
});
