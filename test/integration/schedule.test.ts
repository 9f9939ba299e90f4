import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rename, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Queue } from 'bullmq';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createRedis } from '../../src/queue/connections.js';
import { startScheduleWorker, type ScheduleWorker } from '../../src/schedules/worker.js';
import { scheduleDefinition, scheduleQueueName, type ScheduleInput, type TickDataInput } from '../../src/schedules/spec.js';
import { ScheduleStore, type ScheduleRun } from '../../src/schedules/store.js';
import { runScheduleTick } from '../../src/schedules/tick.js';
import { openQueue, type QueueHandle } from '../../src/queue/talk-queue.js';
import { silentLogger } from '../../src/shared/logger.js';
import { runCli } from '../helpers/cli.js';
import { testConfig } from '../helpers/context.js';
import { IMAGE, startHarness, type Harness } from '../helpers/harness.js';

const TEMPLATE = 'Hi {{first_name}}, here is your welcome video.';
const HEADER = 'id,first_name,image_url';
const line = (id: string, name = id.toUpperCase()): string => `${id},${name},${IMAGE}`;

/** Replaces the sheet in one step (write + rename), as a spreadsheet export would: a tick never reads half a file. */
async function writeSheet(path: string, rows: string[]): Promise<void> {
  await writeFile(`${path}.tmp`, `${[HEADER, ...rows].join('\n')}\n`);
  await rename(`${path}.tmp`, path);
}

function definition(input: Partial<ScheduleInput> & Pick<ScheduleInput, 'name' | 'manifest'>): ReturnType<typeof scheduleDefinition> {
  return scheduleDefinition({ timing: { everyMs: 1_000 }, options: { template: TEMPLATE }, ...input }, (path) => resolve(path));
}

/** Rows in a batch's ledger, in manifest order. */
async function batchRows(handle: QueueHandle, batchId: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const row of handle.batches.rows(batchId)) keys.push(row.rowKey);
  return keys;
}

let harness: Harness | undefined;
let scheduleWorker: ScheduleWorker | undefined;
const cleanups: (() => Promise<void>)[] = [];

afterEach(async () => {
  if (scheduleWorker) {
    await scheduleWorker.store.queue.obliterate({ force: true }).catch(() => undefined);
    await scheduleWorker.close();
  }
  scheduleWorker = undefined;
  await harness?.close();
  harness = undefined;
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

async function startAll(): Promise<{ harness: Harness; worker: ScheduleWorker; store: ScheduleStore }> {
  // Sheets served from this machine are opened with the allow-list, as an operator would.
  harness = await startHarness({ renderMs: 100 }, { TALKBATCH_OUTBOUND_ALLOW: '127.0.0.1' });
  await harness.startWorker();
  scheduleWorker = await startScheduleWorker({ config: harness.config, redisUrl: harness.config.redisUrl as string, logger: silentLogger });
  return { harness, worker: scheduleWorker, store: scheduleWorker.store };
}

describe('schedules on a short interval', () => {
  it('three runs while rows are appended: each video made exactly once, each batch only the new rows', async () => {
    const { harness: h, store } = await startAll();
    const dir = await mkdtemp(join(tmpdir(), 'tb-schedule-'));
    const sheet = join(dir, 'signups.csv');
    const rows = [line('p1'), line('p2')];
    await writeSheet(sheet, rows);
    expect(await store.upsert(definition({ name: 'signups', manifest: sheet, timing: { everyMs: 1_200 } }))).toBe('added');

    const batchRuns = async (): Promise<ScheduleRun[]> => (await store.runs('signups')).filter((run) => run.batchId !== null).reverse();
    const waitForBatchRuns = (count: number): Promise<void> =>
      vi.waitFor(async () => expect((await batchRuns()).length).toBe(count), { timeout: 15_000, interval: 50 });

    await waitForBatchRuns(1);
    rows.push(line('p3'), line('p4'));
    await writeSheet(sheet, rows);
    await waitForBatchRuns(2);
    rows.push(line('p5'));
    await writeSheet(sheet, rows);
    await waitForBatchRuns(3);

    const runs = await batchRuns();
    expect(runs.map((run) => [run.added, run.skipped, run.error])).toEqual([
      [2, 0, null],
      [2, 2, null],
      [1, 4, null],
    ]);
    const expected = [['p1', 'p2'], ['p3', 'p4'], ['p5']];
    for (const [index, run] of runs.entries()) {
      expect(run.batchId).toMatch(/^signups-\d{8}-\d{4}(\d{2})?(-\d+)?$/);
      expect(await batchRows(h.handle, run.batchId as string)).toEqual(expected[index]);
    }
    // Runs in between found nothing new: recorded, but no batch.
    for (const run of await store.runs('signups')) {
      if (run.batchId === null) expect(run).toMatchObject({ added: 0, error: null });
    }

    for (const run of runs) {
      await vi.waitFor(async () => expect((await h.handle.batches.counts(run.batchId as string)).done).toBe(run.added), { timeout: 20_000, interval: 100 });
    }
    const stats = h.simulator.stats();
    expect(stats.totalCreates).toBe(5);
    expect(Object.keys(stats.createsByUserData)).toHaveLength(5);
    expect(stats.duplicateUserData).toEqual([]);
    const info = await store.get('signups');
    expect(info).toMatchObject({ name: 'signups', timing: { everyMs: 1_200 } });
    expect(info?.next).toBeInstanceOf(Date);
    expect(await store.madeCount('signups')).toBe(5);
  });

  it('a source that fails (404) records a failed run, and the next run recovers', async () => {
    let requests = 0;
    const server: Server = createServer((_request, response) => {
      requests += 1;
      if (requests === 1) response.writeHead(404).end('not yet');
      else response.writeHead(200, { 'content-type': 'text/csv' }).end(`${HEADER}\n${line('u1')}\n${line('u2')}\n`);
    });
    await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
    cleanups.push(() => new Promise<void>((done) => server.close(() => done())));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/published.csv?key=s3cret`;

    const { harness: h, store } = await startAll();
    await store.upsert(definition({ name: 'from-sheet', manifest: url }));
    await vi.waitFor(async () => expect((await store.runs('from-sheet')).some((run) => run.batchId !== null)).toBe(true), { timeout: 15_000, interval: 50 });

    const [success, ...earlier] = await store.runs('from-sheet');
    const failed = earlier.at(-1);
    expect(failed).toMatchObject({ batchId: null, added: 0 });
    expect(failed?.error).toMatch(/published\.csv\?key=REDACTED: download failed: HTTP 404 Not Found/);
    expect(failed?.error).not.toContain('s3cret');
    expect(success).toMatchObject({ added: 2, error: null });
    expect((await store.get('from-sheet'))?.lastRun).toMatchObject({ batchId: success?.batchId, error: null });
    await vi.waitFor(async () => expect((await h.handle.batches.counts(success?.batchId as string)).done).toBe(2), { timeout: 20_000, interval: 100 });
    expect(h.simulator.stats()).toMatchObject({ totalCreates: 2, duplicateUserData: [] });
  });
});

describe('schedule runs, one at a time', () => {
  async function setup(): Promise<{ talks: QueueHandle; store: ScheduleStore; sheet: string }> {
    const config = await testConfig();
    const talks = await openQueue(config, config.redisUrl as string);
    const redis = createRedis(config.redisUrl as string, 'worker');
    const queue = new Queue<TickDataInput, ScheduleRun>(scheduleQueueName(config.queueName), { connection: redis, prefix: config.prefix });
    cleanups.push(async () => {
      await queue.obliterate({ force: true });
      await queue.close();
      await talks.queue.obliterate({ force: true });
      await talks.close();
      redis.disconnect();
    });
    const dir = await mkdtemp(join(tmpdir(), 'tb-tick-'));
    return { talks, store: new ScheduleStore(queue, redis, config.prefix, config.queueName), sheet: join(dir, 'people.csv') };
  }

  it('new rows only, changed rows with remakeChanged, every row with all-rows', async () => {
    const { talks, store, sheet } = await setup();
    const deps = { talks, store, logger: silentLogger };
    await writeSheet(sheet, [line('a'), line('b')]);
    const first = await runScheduleTick(deps, definition({ name: 'team', manifest: sheet }));
    expect(first).toMatchObject({ added: 2, skipped: 0, changed: 0, error: null, trigger: 'schedule' });

    // Nothing new: a run with 0 rows and no batch.
    const idle = await runScheduleTick(deps, definition({ name: 'team', manifest: sheet }));
    expect(idle).toMatchObject({ batchId: null, added: 0, skipped: 2, error: null });

    // b's name changes, so its script does: skipped by default, remade with remakeChanged.
    await writeSheet(sheet, [line('a'), line('b', 'Bea')]);
    expect(await runScheduleTick(deps, definition({ name: 'team', manifest: sheet }))).toMatchObject({ added: 0, skipped: 2 });
    const remade = await runScheduleTick(deps, definition({ name: 'team', manifest: sheet, remakeChanged: true }));
    expect(remade).toMatchObject({ added: 1, changed: 1, skipped: 1 });
    expect(await batchRows(talks, remade.batchId as string)).toEqual(['b']);
    expect(await runScheduleTick(deps, definition({ name: 'team', manifest: sheet, remakeChanged: true }))).toMatchObject({ added: 0, skipped: 2 });

    const all = await runScheduleTick(deps, definition({ name: 'team', manifest: sheet, rows: 'all' }));
    expect(all).toMatchObject({ added: 2, skipped: 0 });
    expect(new Set([first.batchId, remade.batchId, all.batchId]).size).toBe(3);
    expect((await store.runs('team')).map((run) => run.added)).toEqual([2, 0, 1, 0, 0, 2]);
  });

  it('invalid rows fail the run and enqueue nothing; allowPartial enqueues the valid ones', async () => {
    const { talks, store, sheet } = await setup();
    const deps = { talks, store, logger: silentLogger };
    await writeSheet(sheet, [line('a'), 'b,Bo,http://insecure.example.com/b.png']);
    const failed = await runScheduleTick(deps, definition({ name: 'strict', manifest: sheet }));
    expect(failed).toMatchObject({ batchId: null, added: 0, invalid: 1 });
    expect(failed.error).toMatch(/people\.csv:3:3 \(image_url\): must use https:\/\//);
    expect(await talks.queue.count()).toBe(0);
    expect(await runScheduleTick(deps, definition({ name: 'strict', manifest: sheet, allowPartial: true }))).toMatchObject({ added: 1, invalid: 1, error: null });
    const missing = await runScheduleTick(deps, definition({ name: 'gone', manifest: `${sheet}.missing` }));
    expect(missing.error).toMatch(/people\.csv\.missing: file not found/);
  });

  it('a schedule reads its sheet with its encoding (Excel\'s windows-1252 "CSV")', async () => {
    const { talks, store, sheet } = await setup();
    const deps = { talks, store, logger: silentLogger };
    await writeFile(sheet, Buffer.concat([Buffer.from(`${HEADER}\nj,Jos`), Buffer.from([0xe9]), Buffer.from(`,${IMAGE}\n`)]));
    const plain = await runScheduleTick(deps, definition({ name: 'cp-plain', manifest: sheet }));
    expect(plain.error).toContain('--encoding windows-1252');
    const decoded = await runScheduleTick(deps, definition({ name: 'cp', manifest: sheet, options: { template: TEMPLATE, encoding: 'windows-1252' } }));
    expect(decoded).toMatchObject({ added: 1, error: null });
    const [job] = await talks.queue.getJobs(['waiting', 'prioritized', 'delayed']);
    expect(job?.data.talk.script).toEqual({ type: 'text', input: 'Hi José, here is your welcome video.' });
  });

  it('a row marked pending by a run that died is made once: re-added only if its job never got there', async () => {
    const { talks, store, sheet } = await setup();
    const deps = { talks, store, logger: silentLogger };
    await writeSheet(sheet, [line('a'), line('b')]);
    // A run that died after marking both rows pending, having added only a's job.
    await talks.batches.create('crashed-1', 'test');
    const [rowA] = await (async () => {
      const { readManifest } = await import('../../src/manifest/index.js');
      const out = [];
      for await (const record of readManifest(sheet, { template: TEMPLATE })) if (record.ok === true) out.push(record.row);
      return out;
    })();
    const { enqueueRows } = await import('../../src/queue/producer.js');
    await enqueueRows(talks, 'crashed-1', [rowA as never]);
    await store.markPending('team', 'crashed-1', [
      { rowKey: 'a', hash: 'x' },
      { rowKey: 'b', hash: 'y' },
    ]);
    const run = await runScheduleTick(deps, definition({ name: 'team', manifest: sheet }));
    expect(run).toMatchObject({ added: 1, skipped: 1 });
    expect(await batchRows(talks, run.batchId as string)).toEqual(['b']);
  });

  it('a second run while one holds the lock is recorded as skipped', async () => {
    const { talks, store, sheet } = await setup();
    await writeSheet(sheet, [line('a')]);
    const release = await store.lock('busy');
    expect(release).toBeDefined();
    const run = await runScheduleTick({ talks, store, logger: silentLogger }, definition({ name: 'busy', manifest: sheet }));
    expect(run).toMatchObject({ added: 0, error: 'skipped: the previous run of this schedule is still going' });
    await release?.();
    expect(await runScheduleTick({ talks, store, logger: silentLogger }, definition({ name: 'busy', manifest: sheet }))).toMatchObject({ added: 1, error: null });
  });
});

describe('talkbatch schedule', () => {
  it('add, list, run --wait, apply and remove', async () => {
    const config = await testConfig();
    const env = { REDIS_URL: config.redisUrl, TALKBATCH_QUEUE: config.queueName, TALKBATCH_LOG_LEVEL: 'silent' };
    scheduleWorker = await startScheduleWorker({ config, redisUrl: config.redisUrl as string, logger: silentLogger });
    const talks = await openQueue(config, config.redisUrl as string);
    cleanups.push(async () => {
      await talks.queue.obliterate({ force: true });
      await talks.close();
    });
    const dir = await mkdtemp(join(tmpdir(), 'tb-schedule-cli-'));
    const sheet = join(dir, 'people.csv');
    await writeSheet(sheet, [line('a'), line('b')]);

    const bad = await runCli(['schedule', 'add', 'weekly', '--cron', '0 9 * * MOM', '--manifest', sheet, '-t', TEMPLATE], env);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--cron "0 9 * * MOM" is not a valid cron expression (Validation error, cannot resolve alias "mom")');

    const added = await runCli(['schedule', 'add', 'weekly', '--cron', '0 9 * * MON', '--tz', 'Europe/Berlin', '--manifest', sheet, '-t', TEMPLATE], env);
    expect(added.code, added.stderr).toBe(0);
    expect(added.stdout).toMatch(/^schedule "weekly" added: cron "0 9 \* \* MON" \(Europe\/Berlin\)/);
    expect(added.stdout).toMatch(/next runs: \d{4}-\d\d-\d\d 09:00 Europe\/Berlin, /);

    const ran = await runCli(['schedule', 'run', 'weekly', '--wait', '--timeout', '20'], env);
    expect(ran.code, ran.stderr).toBe(0);
    expect(ran.stdout).toMatch(/\(manual\): 2 rows enqueued -> batch weekly-\d{8}-\d{4}/);

    await writeFile(join(dir, 'daily.schedule.json'), JSON.stringify({ cron: '30 7 * * *', manifest: 'people.csv', template: TEMPLATE }));
    const applied = await runCli(['schedule', 'apply', dir, '--prune'], env);
    expect(applied.code, applied.stderr).toBe(0);
    expect(applied.stdout).toMatch(/^added {5}daily {2}\(/m);
    expect(applied.stdout).toMatch(/^removed {3}weekly$/m);
    expect(applied.stdout).toMatch(/1 added, 0 changed, 0 unchanged, 1 removed/);

    const listed = await runCli(['schedule', 'list'], env);
    expect(listed.stdout).toMatch(/^daily: cron "30 7 \* \* \*"/m);
    expect(listed.stdout).toContain(`manifest: ${sheet}`);
    expect(listed.stdout).toMatch(/next: {5}\d{4}-\d\d-\d\d 07:30 UTC/);
    expect(listed.stdout).toContain('last run: none yet');
    expect(listed.stdout).not.toContain('weekly');

    const removed = await runCli(['schedule', 'remove', 'daily'], env);
    expect(removed.code).toBe(0);
    expect(await scheduleWorker.store.list()).toEqual([]);
  });
});
