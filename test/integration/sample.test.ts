import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parse } from 'csv-parse/sync';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ApprovalRefusedError, BatchService } from '../../src/app/index.js';
import { runBatch } from '../../src/cli/commands/run.js';
import type { BatchStore } from '../../src/queue/batches.js';
import { buildServer, startServer, type RunningServer } from '../../src/server/index.js';
import { silentLogger } from '../../src/shared/logger.js';
import { runCli } from '../helpers/cli.js';
import { IMAGE, row, startHarness, type Harness } from '../helpers/harness.js';
import { libraryClientPerTest } from '../helpers/library-client.js';
import { spawnWorker, type WorkerProcess } from '../helpers/worker-process.js';

/* `--sample N`: N rows made, the rest held un-spent in the ledger until approved (or dropped by a cancel). */

const KEY = 'sample-key-for-tests-0123456789abcd';

/** Rows with two voices and one long script, so a sample has something to cover. */
const sheetRows = (prefix: string, count: number) =>
  Array.from({ length: count }, (_, i) => ({
    id: `${prefix}${i}`,
    image_url: IMAGE,
    script: i === 3 ? `Hello ${prefix} number ${i}. ${'This one goes on for a while. '.repeat(6)}` : `Hello ${prefix} number ${i}, nice to meet you.`,
    ...(i === 2 ? { voice: 'en-US-GuyNeural' } : {}),
  }));

function sheetCsv(prefix: string, count: number): string {
  const lines = sheetRows(prefix, count).map((cells) => [cells.id, cells.image_url, `"${cells.script}"`, cells.voice ?? ''].join(','));
  return `id,image_url,script,voice\n${lines.join('\n')}\n`;
}

/** Waits until the sample is made: every row but the held ones has an outcome. */
async function untilSampleMade(batches: BatchStore, batchId: string, sample: number, held: number): Promise<void> {
  await vi.waitFor(
    async () => expect(await batches.counts(batchId)).toMatchObject({ done: sample, failed: 0, active: 0, queued: 0, held }),
    { timeout: 20_000, interval: 100 },
  );
}

async function untilDone(batches: BatchStore, batchId: string, total: number): Promise<void> {
  await vi.waitFor(async () => expect(await batches.counts(batchId)).toMatchObject({ total, done: total, held: 0 }), { timeout: 30_000, interval: 100 });
}

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

describe('sample, then approve (library)', () => {
  const clients = libraryClientPerTest('sample');

  it('makes the sample, writes its review page, holds the rest; approving twice makes each talk once', async () => {
    const tb = await clients.start();
    await tb.startWorker();
    const enqueued = await tb.enqueueBatch({ rows: sheetRows('s', 8) }, { batchId: 'lib-sample', sample: 4 });
    expect(enqueued).toMatchObject({ added: 8, held: 4, heldSeconds: expect.any(Number) as unknown });
    expect(enqueued.sample).toEqual([
      { rowKey: 's0', reason: 'first' },
      { rowKey: 's3', reason: 'longest script' },
      { rowKey: 's2', reason: 'voice microsoft:en-US-GuyNeural' },
      { rowKey: expect.any(String) as unknown, reason: 'random' },
    ]);

    const sampled = await tb.waitForBatch('lib-sample', { timeoutMs: 20_000 });
    expect(sampled).toMatchObject({ counts: { total: 8, done: 4, held: 4 }, finishedAt: null, sample: { size: 4, approvedAt: null } });
    expect(clients.simulator()?.stats().totalCreates).toBe(4);
    const byKey = new Map<string, { status: string; sampleReason?: string | null; script: string | null }>();
    for await (const record of tb.batchResults('lib-sample')) byKey.set(record.rowKey, record);
    for (const pick of enqueued.sample ?? []) expect(byKey.get(pick.rowKey)).toMatchObject({ status: 'done', sampleReason: pick.reason });
    const heldKeys = [...byKey].filter(([, record]) => record.status === 'held').map(([key]) => key);
    expect(heldKeys).toHaveLength(4);
    expect(byKey.get(heldKeys[0] as string)?.script).toMatch(/^Hello s number/);
    // The worker that made the sample's last row wrote its review page.
    const page = join(tb.config.outDir, 'lib-sample', 'index.html');
    await vi.waitFor(() => expect(existsSync(page)).toBe(true), { timeout: 10_000, interval: 100 });
    const html = await readFile(page, 'utf8');
    expect(html).toContain('sample: longest script');
    expect(html).toContain('4 more rows are held');
    expect(html).not.toContain('<form');

    const approved = await tb.approveBatch('lib-sample');
    expect(approved).toMatchObject({ batchId: 'lib-sample', released: 4, approvedAt: expect.any(String) as unknown });
    expect(await tb.approveBatch('lib-sample')).toMatchObject({ released: 0, approvedAt: approved.approvedAt });
    const finished = await tb.waitForBatch('lib-sample', { timeoutMs: 20_000 });
    expect(finished).toMatchObject({ counts: { total: 8, done: 8, held: 0 }, sample: { size: 4, approvedAt: approved.approvedAt } });
    expect(await tb.approveBatch('lib-sample')).toMatchObject({ released: 0 });
    const stats = clients.simulator()?.stats();
    expect(stats?.totalCreates).toBe(8);
    expect(stats?.duplicateUserData).toEqual([]);
    await vi.waitFor(async () => expect((await tb.getBatch('lib-sample'))?.finishedAt).toEqual(expect.any(String)), { timeout: 10_000, interval: 100 });
    const csv = parse<Record<string, string>>(await readFile(join(tb.config.outDir, 'lib-sample', 'results.csv'), 'utf8'), { columns: true });
    expect(csv.find((row) => row.row_key === 's3')?.sample_reason).toBe('longest script');
    expect(csv.filter((row) => row.sample_reason === '')).toHaveLength(4);
  });

  it('a rejected sample (cancel) drops the held rows and spends nothing more', async () => {
    const tb = await clients.start();
    await tb.startWorker();
    await tb.enqueueBatch({ rows: sheetRows('r', 6) }, { batchId: 'lib-reject', sample: 2 });
    await tb.waitForBatch('lib-reject', { timeoutMs: 20_000 });
    const cancelled = await tb.cancelBatch('lib-reject');
    expect(cancelled).toMatchObject({ heldDropped: 4, removed: [], finished: true });
    await expect(tb.approveBatch('lib-reject')).rejects.toBeInstanceOf(ApprovalRefusedError);
    await expect(tb.approveBatch('lib-reject')).rejects.toMatchObject({ reason: 'cancelled' });
    expect(await tb.getBatch('lib-reject')).toMatchObject({ counts: { total: 6, done: 2, failed: 4, held: 0, queued: 0 }, cancelledAt: expect.any(String) as unknown });
    // A batch enqueued without a sample has nothing to approve.
    await tb.enqueueBatch({ rows: sheetRows('n', 1) }, { batchId: 'lib-plain' });
    await expect(tb.approveBatch('lib-plain')).rejects.toMatchObject({ reason: 'not_sampled' });
    await tb.waitForBatch('lib-plain', { timeoutMs: 20_000 });
    expect(await tb.getBatch('lib-plain')).toMatchObject({ sample: null });
    expect(clients.simulator()?.stats().totalCreates).toBe(3);
  });
});

describe('approving', () => {
  it('after a crash half-way through an approval, approving again loses and duplicates nothing', async () => {
    const h = await startHarness({ renderMs: 100 });
    cleanups.push(() => h.close());
    const service = new BatchService({ config: h.config, handle: h.handle, logger: silentLogger });
    cleanups.push(() => service.close());
    await service.submit({ rows: sheetRows('x', 5) }, { batchId: 'crashed', sample: 1 });
    // What an approval that died between its two steps leaves: two held rows' jobs in the queue, all four still held.
    const { rows: held } = await h.handle.batches.heldPage('crashed', '0', 100);
    expect(held).toHaveLength(4);
    const early = held.slice(0, 2).map((entry) => JSON.parse(entry.payload) as { rowKey: string });
    await h.handle.queue.addBulk(early.map((data) => ({ name: 'talk', data: data as never, opts: { jobId: `crashed-${data.rowKey}` } })));
    await h.startWorker();
    await vi.waitFor(async () => expect(await h.handle.batches.counts('crashed')).toMatchObject({ done: 3 }), { timeout: 20_000, interval: 100 });
    // The queue keeps only the newest completed jobs: once those are gone, only the ledger knows the rows are done.
    for (const data of early) await (await h.handle.queue.getJob(`crashed-${data.rowKey}`))?.remove();
    expect(await h.handle.batches.counts('crashed')).toMatchObject({ done: 3, held: 4 });

    expect(await service.approve('crashed')).toMatchObject({ released: 2 });
    await untilDone(h.handle.batches, 'crashed', 5);
    expect(h.simulator.stats().totalCreates).toBe(5);
    expect(h.simulator.stats().duplicateUserData).toEqual([]);
  });
});

describe('sample, then approve (CLI and worker processes)', () => {
  it('held rows survive a worker restart and never start by themselves; `approve` lets them go on', async () => {
    const h: Harness = await startHarness({ renderMs: 100 });
    cleanups.push(() => h.close());
    const env: Record<string, string> = {
      REDIS_URL: h.config.redisUrl as string,
      DID_API_URL: h.simulator.url,
      DID_API_KEY: h.simulator.apiKey,
      TALKBATCH_QUEUE: h.config.queueName,
      TALKBATCH_OUT_DIR: h.config.outDir,
      TALKBATCH_POLL_INITIAL_MS: '100',
      TALKBATCH_POLL_MAX_MS: '300',
    };
    const workers: WorkerProcess[] = [];
    cleanups.push(async () => {
      for (const worker of workers) worker.child.kill('SIGKILL');
      await Promise.all(workers.map((worker) => worker.exited));
    });
    const manifest = join(h.config.outDir, 'sheet.csv');
    await writeFile(manifest, sheetCsv('w', 6));

    const enqueued = await runCli(['enqueue', manifest, '--batch', 'cli-sample', '--sample', '2'], env);
    expect(enqueued.code, enqueued.stderr).toBe(0);
    expect(enqueued.stderr).toMatch(/sample: w0 \(first\), w3 \(longest script\)/);
    expect(enqueued.stderr).toMatch(/held: the remaining 4 rows \(~\d+ s of video, ~\d+ credits\) wait for "talkbatch approve cli-sample"/);

    const first = spawnWorker(env);
    workers.push(first);
    await first.ready;
    await untilSampleMade(h.handle.batches, 'cli-sample', 2, 4);
    await vi.waitFor(() => expect(existsSync(join(h.config.outDir, 'cli-sample', 'index.html'))).toBe(true), { timeout: 10_000, interval: 100 });
    first.child.kill('SIGTERM');
    expect(await first.exited).toBe(0);

    const second = spawnWorker(env);
    workers.push(second);
    await second.ready;
    // Proof the new worker takes jobs: another batch in the same queue is made; the held rows are still held.
    await h.enqueue('cli-other', [row(1)]);
    await untilDone(h.handle.batches, 'cli-other', 1);
    expect(await h.handle.batches.counts('cli-sample')).toMatchObject({ done: 2, held: 4 });
    expect(h.simulator.stats().totalCreates).toBe(3);
    const status = await runCli(['status', 'cli-sample'], env);
    expect(status.stdout).toMatch(/4 held for approval/);
    expect(status.stdout).toMatch(/sample of 2: 4 rows held until "talkbatch approve cli-sample"/);

    const approved = await runCli(['approve', 'cli-sample'], env);
    expect(approved.code, approved.stderr).toBe(0);
    expect(approved.stdout).toMatch(/approved: 4 held rows of cli-sample enqueued/);
    await untilDone(h.handle.batches, 'cli-sample', 6);
    const again = await runCli(['approve', 'cli-sample'], env);
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(/nothing held/);
    expect(h.simulator.stats().totalCreates).toBe(7);
    expect(h.simulator.stats().duplicateUserData).toEqual([]);

    // A refusal is a usage error that changes nothing.
    const plain = await runCli(['approve', 'cli-other'], env);
    expect(plain.code).toBe(2);
    expect(plain.stderr).toMatch(/not enqueued with a sample/);
  });

  it('`cancel` rejects a sample: the held rows are dropped, nothing more is made', async () => {
    const h = await startHarness({ renderMs: 100 });
    cleanups.push(() => h.close());
    await h.startWorker();
    const service = new BatchService({ config: h.config, handle: h.handle, logger: silentLogger });
    cleanups.push(() => service.close());
    await service.submit({ rows: sheetRows('c', 5) }, { batchId: 'cli-reject', sample: 1 });
    await untilSampleMade(h.handle.batches, 'cli-reject', 1, 4);
    const env = { REDIS_URL: h.config.redisUrl as string, TALKBATCH_QUEUE: h.config.queueName, TALKBATCH_OUT_DIR: h.config.outDir };
    const cancelled = await runCli(['cancel', 'cli-reject'], env);
    expect(cancelled.code, cancelled.stderr).toBe(0);
    expect(cancelled.stdout).toMatch(/cancelled cli-reject: 0 queued rows removed, 4 held rows dropped/);
    expect(await h.handle.batches.counts('cli-reject')).toMatchObject({ done: 1, failed: 4, held: 0 });
    // The cancel finished the batch, so its report is written and its rows say so.
    const csv = parse<Record<string, string>>(await readFile(join(h.config.outDir, 'cli-reject', 'results.csv'), 'utf8'), { columns: true });
    expect(csv).toHaveLength(5);
    expect((await runCli(['approve', 'cli-reject'], env)).stderr).toMatch(/was cancelled/);
    expect(h.simulator.stats().totalCreates).toBe(1);
    expect(await h.handle.queue.getJobCounts('waiting', 'delayed', 'active')).toEqual({ waiting: 0, delayed: 0, active: 0 });
  });

  it('run --sample asks after the sample: yes finishes the batch, no leaves the rest held', async () => {
    const h = await startHarness({ renderMs: 100 });
    cleanups.push(() => h.close());
    const manifest = join(h.config.outDir, 'sheet.csv');
    await writeFile(manifest, sheetCsv('q', 5));
    const log = vi.spyOn(console, 'log').mockImplementation(() => {});
    cleanups.push(async () => log.mockRestore());

    const questions: string[] = [];
    const yes = await runBatch({
      config: h.config,
      logger: silentLogger,
      manifest,
      manifestOptions: {},
      batchId: 'run-yes',
      quiet: true,
      sample: 2,
      confirm: async (question) => {
        questions.push(question);
        // Asked once the sample is made and its review page written.
        expect(await h.handle.batches.counts('run-yes')).toMatchObject({ done: 2, held: 3 });
        expect(existsSync(join(h.config.outDir, 'run-yes', 'index.html'))).toBe(true);
        return true;
      },
    });
    expect(yes).toBe(0);
    expect(questions).toEqual([expect.stringMatching(/^approve the remaining 3 rows \(~\d+ s of video, ~\d+ credits\)\? \[y\/N\] $/)]);
    expect(await h.handle.batches.counts('run-yes')).toMatchObject({ total: 5, done: 5, held: 0 });
    expect(h.simulator.stats().totalCreates).toBe(5);

    const no = await runBatch({ config: h.config, logger: silentLogger, manifest, manifestOptions: {}, batchId: 'run-no', quiet: true, sample: 2, cache: false, confirm: async () => false });
    expect(no).toBe(0);
    expect(await h.handle.batches.counts('run-no')).toMatchObject({ total: 5, done: 2, held: 3 });
    expect(h.simulator.stats().totalCreates).toBe(7);
    expect(log.mock.calls.flat().join('\n')).toMatch(/held: the remaining 3 rows .* wait for "talkbatch approve run-no"/);

    // Not on a terminal (a child process with piped input): no question, the sample is made and run exits 0.
    const cli = await runCli(['run', manifest, '--batch', 'run-cli', '--sample', '1', '--quiet', '--no-cache'], {
      REDIS_URL: h.config.redisUrl as string,
      DID_API_URL: h.simulator.url,
      DID_API_KEY: h.simulator.apiKey,
      TALKBATCH_QUEUE: h.config.queueName,
      TALKBATCH_OUT_DIR: h.config.outDir,
      TALKBATCH_POLL_INITIAL_MS: '100',
      TALKBATCH_POLL_MAX_MS: '300',
      TALKBATCH_PREVIEWS: 'false',
    });
    expect(cli.code, cli.stderr).toBe(0);
    expect(cli.stdout).toMatch(/sample made: 1 done, 0 failed/);
    expect(cli.stdout).toMatch(/held: the remaining 4 rows .* wait for "talkbatch approve run-cli"/);
    expect(cli.stderr).not.toMatch(/\[y\/N\]/);
    expect(h.simulator.stats().totalCreates).toBe(8);
    // Without a Redis that outlives the run and without a terminal, a sample could never be approved: refused up front.
    const refused = await runCli(['run', manifest, '--sample', '1'], { DID_API_URL: h.simulator.url, DID_API_KEY: h.simulator.apiKey, REDIS_URL: undefined });
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/--sample .* set REDIS_URL/);
  });
});

describe('sample, then approve (REST API and review page)', () => {
  async function serve(h: Harness, writable: boolean): Promise<RunningServer> {
    const server = await startServer({
      config: { ...h.config, dashboardWrite: writable },
      redisUrl: h.config.redisUrl as string,
      logger: silentLogger,
      host: '127.0.0.1',
      port: 0,
      withWorker: true,
    });
    cleanups.push(() => server.close());
    return server;
  }

  const api = (server: RunningServer, path: string, init: RequestInit = {}) =>
    fetch(`${server.url}${path}`, {
      ...init,
      headers: { authorization: `Bearer ${KEY}`, ...(init.body ? { 'content-type': 'application/json' } : {}), ...(init.headers as Record<string, string> | undefined) },
    });

  it('POST /v1/batches with sample, then POST /v1/batches/:id/approve (twice); refusals are 409', async () => {
    const h = await startHarness({ renderMs: 100 }, { TALKBATCH_API_KEYS: KEY });
    cleanups.push(() => h.close());
    const server = await serve(h, false);

    const created = await api(server, '/v1/batches', { method: 'POST', body: JSON.stringify({ rows: sheetRows('a', 5), options: { batchId: 'api-sample', sample: 2 } }) });
    expect(created.status).toBe(201);
    const body = (await created.json()) as Record<string, unknown>;
    expect(body).toMatchObject({ added: 5, held: 3, sample: [{ rowKey: 'a0', reason: 'first' }, { rowKey: 'a3', reason: 'longest script' }] });
    expect(body.links).toMatchObject({ approve: '/v1/batches/api-sample/approve' });
    await untilSampleMade(h.handle.batches, 'api-sample', 2, 3);
    const view = (await (await api(server, '/v1/batches/api-sample')).json()) as { counts: object; sample: object; rows: { rowKey: string; status: string; sampleReason?: string }[] };
    expect(view).toMatchObject({ counts: { done: 2, held: 3 }, sample: { size: 2, approvedAt: null } });
    expect(view.rows.map((row) => [row.rowKey, row.status, row.sampleReason ?? null])).toEqual([
      ['a0', 'done', 'first'],
      ['a1', 'held', null],
      ['a2', 'held', null],
      ['a3', 'done', 'longest script'],
      ['a4', 'held', null],
    ]);

    const approve = await api(server, '/v1/batches/api-sample/approve', { method: 'POST' });
    expect(approve.status).toBe(200);
    expect(await approve.json()).toMatchObject({ batchId: 'api-sample', released: 3 });
    expect(await (await api(server, '/v1/batches/api-sample/approve', { method: 'POST' })).json()).toMatchObject({ released: 0 });
    await untilDone(h.handle.batches, 'api-sample', 5);
    expect(h.simulator.stats().totalCreates).toBe(5);
    expect(h.simulator.stats().duplicateUserData).toEqual([]);

    // A rejected sample: the cancel drops the held rows, and approving it afterwards is refused.
    await api(server, '/v1/batches', { method: 'POST', body: JSON.stringify({ rows: sheetRows('b', 3), options: { batchId: 'api-reject', sample: 1 } }) });
    await untilSampleMade(h.handle.batches, 'api-reject', 1, 2);
    expect(await (await api(server, '/v1/batches/api-reject/cancel', { method: 'POST' })).json()).toMatchObject({ heldDropped: 2, finished: true });
    const refused = await api(server, '/v1/batches/api-reject/approve', { method: 'POST' });
    expect(refused.status).toBe(409);
    expect(await refused.json()).toMatchObject({ error: 'cancelled' });
    expect((await api(server, '/v1/batches/no-such/approve', { method: 'POST' })).status).toBe(404);
    expect((await api(server, '/v1/batches/api-sample/approve', { method: 'POST', headers: { authorization: 'Bearer wrong-key-0123456789abcdefghij' } })).status).toBe(401);
    expect(h.simulator.stats().totalCreates).toBe(6);
  });

  it('the review page shows an approve button to a session allowed to change things; its POST needs the CSRF token', async () => {
    const h = await startHarness({ renderMs: 100 }, { TALKBATCH_API_KEYS: KEY });
    cleanups.push(() => h.close());
    const server = await serve(h, true);
    await api(server, '/v1/batches', { method: 'POST', body: JSON.stringify({ rows: sheetRows('p', 4), options: { batchId: 'page-sample', sample: 1 } }) });
    await untilSampleMade(h.handle.batches, 'page-sample', 1, 3);

    const login = await fetch(`${server.url}/review/page-sample/?key=${KEY}`, { redirect: 'manual' });
    const cookie = (login.headers.get('set-cookie') ?? '').split(';')[0] as string;
    const page = await fetch(`${server.url}/review/page-sample/`, { headers: { cookie } });
    expect(page.status).toBe(200);
    expect(page.headers.get('cache-control')).toBe('no-store');
    const html = await page.text();
    expect(html).toMatch(/<form class="approve" method="post" action="\/review\/page-sample\/approve">/);
    expect(html).toContain("form-action 'self'");
    expect(html).toContain('Approve the remaining 3 rows');
    const csrf = /name="csrf" value="([^"]+)"/.exec(html)?.[1] as string;
    expect(csrf).toMatch(/^[A-Za-z0-9_-]{43}$/);
    // A bearer key sees the page, but a script has no use for a form: no token is minted for it.
    expect(await (await fetch(`${server.url}/review/page-sample/`, { headers: { authorization: `Bearer ${KEY}` } })).text()).not.toContain('<form');

    const post = (headers: Record<string, string>, form: string) =>
      fetch(`${server.url}/review/page-sample/approve`, { method: 'POST', redirect: 'manual', headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers }, body: form });
    // Another site can make the browser post with the cookie, but cannot know the token.
    expect((await post({ cookie }, '')).status).toBe(403);
    expect((await post({ cookie }, `csrf=${'A'.repeat(43)}`)).status).toBe(403);
    const other = (await fetch(`${server.url}/review/?key=${KEY}`, { redirect: 'manual' })).headers.get('set-cookie')?.split(';')[0] as string;
    expect((await post({ cookie: other }, `csrf=${csrf}`)).status).toBe(403);
    expect((await post({}, `csrf=${csrf}`)).status).toBe(401);
    expect(await h.handle.batches.counts('page-sample')).toMatchObject({ held: 3 });

    const approved = await post({ cookie }, `csrf=${encodeURIComponent(csrf)}`);
    expect(approved.status).toBe(303);
    expect(approved.headers.get('location')).toBe('/review/page-sample/');
    await untilDone(h.handle.batches, 'page-sample', 4);
    expect(h.simulator.stats().totalCreates).toBe(4);
    // Nothing held any more: no button.
    expect(await (await fetch(`${server.url}/review/page-sample/`, { headers: { cookie } })).text()).not.toContain('<form');
  });

  it('without TALKBATCH_DASHBOARD_WRITE the review page has no button and refuses the form', async () => {
    const h = await startHarness({ renderMs: 100 }, { TALKBATCH_API_KEYS: KEY });
    cleanups.push(() => h.close());
    await h.startWorker();
    const service = new BatchService({ config: h.config, handle: h.handle, logger: silentLogger });
    cleanups.push(() => service.close());
    await service.submit({ rows: sheetRows('ro', 3) }, { batchId: 'page-readonly', sample: 1 });
    await untilSampleMade(h.handle.batches, 'page-readonly', 1, 2);
    const { app } = await buildServer({ config: { ...h.config, dashboardWrite: false }, handle: h.handle });
    cleanups.push(() => app.close());
    const login = await app.inject({ method: 'GET', url: `/review/page-readonly/?key=${KEY}` });
    const cookie = String(login.headers['set-cookie']).split(';')[0] as string;
    const page = await app.inject({ method: 'GET', url: '/review/page-readonly/', headers: { cookie } });
    expect(page.statusCode).toBe(200);
    expect(page.body).toContain('2 more rows are held');
    expect(page.body).not.toContain('<form');
    const refused = await app.inject({ method: 'POST', url: '/review/page-readonly/approve', headers: { cookie, 'content-type': 'application/x-www-form-urlencoded' }, payload: 'csrf=x' });
    expect(refused.statusCode).toBe(405);
    expect(await h.handle.batches.counts('page-readonly')).toMatchObject({ held: 2 });
    expect(h.simulator.stats().totalCreates).toBe(1);
  });
});
