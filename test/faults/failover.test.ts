import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it, onTestFailed, vi } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import { enqueueRows } from '../../src/queue/producer.js';
import { openQueue, type QueueHandle } from '../../src/queue/talk-queue.js';
import { startSimulator, type Simulator } from '../../src/simulator/server.js';
import { FIXTURE_SHA256, row, untilBatchFinished } from '../helpers/harness.js';
import { startSentinelSet, type SentinelSet } from '../helpers/redis-topologies.js';
import { spawnWorker, type WorkerProcess } from '../helpers/worker-process.js';

/**
 * A pass-through in front of the simulator that can hold the answers to POST /talks: the talk is
 * created (and paid) at once, but the worker learns its id only when the test lets the answer go.
 */
interface CreateGate {
  url: string;
  hold(): void;
  release(): void;
  /** user_data of creates whose answers are held now. */
  held(): string[];
  close(): Promise<void>;
}

async function startCreateGate(target: string): Promise<CreateGate> {
  let holding = false;
  let releaseAll: () => void = () => {};
  let released = Promise.resolve();
  const held = new Set<string>();
  const server: Server = createServer((request, response) => {
    void (async () => {
      const chunks: Buffer[] = [];
      for await (const chunk of request) chunks.push(chunk as Buffer);
      const body = Buffer.concat(chunks);
      const headers: Record<string, string> = {};
      for (const [name, value] of Object.entries(request.headers)) {
        if (typeof value === 'string' && !['host', 'connection', 'content-length', 'transfer-encoding'].includes(name)) headers[name] = value;
      }
      const upstream = await fetch(`${target}${request.url ?? '/'}`, {
        method: request.method ?? 'GET',
        headers,
        ...(body.length > 0 ? { body } : {}),
        redirect: 'manual',
      });
      const answer = Buffer.from(await upstream.arrayBuffer());
      const isCreate = request.method === 'POST' && /^\/talks\/?$/.test(request.url ?? '');
      if (isCreate && holding && upstream.status < 300) {
        const userData = (JSON.parse(body.toString()) as { user_data?: string }).user_data ?? '';
        held.add(userData);
        await released;
        held.delete(userData);
      }
      const out: Record<string, string> = {};
      upstream.headers.forEach((value, name) => {
        if (!['content-length', 'content-encoding', 'transfer-encoding', 'connection'].includes(name)) out[name] = value;
      });
      response.writeHead(upstream.status, out).end(answer);
    })().catch((error: unknown) => response.writeHead(502).end(String(error)));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    hold: () => {
      holding = true;
      released = new Promise<void>((resolve) => (releaseAll = resolve));
    },
    release: () => {
      holding = false;
      releaseAll();
    },
    held: () => [...held],
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

interface FailoverScenario {
  set: SentinelSet;
  simulator: Simulator;
  gate: CreateGate;
  handle: QueueHandle;
  workers: WorkerProcess[];
  outDir: string;
  clients: Redis[];
}

let scenario: FailoverScenario | undefined;

afterEach(async () => {
  if (!scenario) return;
  const s = scenario;
  scenario = undefined;
  s.gate.release();
  for (const worker of s.workers) worker.child.kill('SIGKILL');
  await Promise.all(s.workers.map((worker) => worker.exited));
  for (const client of s.clients) client.disconnect();
  await s.handle.close().catch(() => undefined);
  await s.gate.close();
  await s.simulator.close();
  if (s.set.replica.child.signalCode === null) s.set.replica.child.kill('SIGCONT');
  await s.set.stop();
  await rm(s.outDir, { recursive: true, force: true });
});

function figure(name: string, values: Record<string, unknown>): void {
  console.log(`[figure] ${name}: ${JSON.stringify(values)}`);
}

describe('Redis behind Sentinel', () => {
  it('survives kill -9 of the primary mid-batch: the replica is promoted, a checkpoint lost to replication is reconciled, no talk paid twice, every worker goes on', async () => {
    const set = await startSentinelSet();
    const simulator = await startSimulator({ knobs: { renderMs: 1_200, renderJitter: 0.3 } });
    const gate = await startCreateGate(simulator.url);
    const outDir = await mkdtemp(join(tmpdir(), 'tb-failover-'));
    const queueName = `failover-${Math.random().toString(36).slice(2, 8)}`;
    const env: Record<string, string> = {
      REDIS_SENTINELS: set.sentinels.map((sentinel) => `127.0.0.1:${sentinel.port}`).join(','),
      REDIS_SENTINEL_NAME: set.name,
      DID_API_URL: gate.url,
      DID_API_KEY: simulator.apiKey,
      TALKBATCH_OUTBOUND_ALLOW: '127.0.0.1,localhost',
      TALKBATCH_QUEUE: queueName,
      TALKBATCH_OUT_DIR: outDir,
      TALKBATCH_CONCURRENCY: '6',
      TALKBATCH_POLL_INITIAL_MS: '150',
      TALKBATCH_POLL_MAX_MS: '400',
      TALKBATCH_LOCK_MS: '2000',
      TALKBATCH_STALLED_INTERVAL_MS: '1000',
      TALKBATCH_CREDIT_CHECK_MS: '2000',
      TALKBATCH_LOG_LEVEL: 'debug',
    };
    const config = loadConfig({ env, dotenvPath: false });
    const handle = await openQueue(config, config.redisUrl as string);
    const primaryClient = new Redis({ port: set.primary.port, host: '127.0.0.1' });
    const replicaClient = new Redis({ port: set.replica.port, host: '127.0.0.1', lazyConnect: true });
    // These talk to one server each on purpose; the killed primary's client just keeps failing.
    primaryClient.on('error', () => {});
    replicaClient.on('error', () => {});
    scenario = { set, simulator, gate, handle, workers: [], outDir, clients: [primaryClient, replicaClient] };
    const s = scenario;
    onTestFailed(() => {
      for (const [index, worker] of s.workers.entries()) {
        const file = join(tmpdir(), `tb-failover-worker-${index}.log`);
        writeFileSync(file, worker.output());
        console.log(`worker ${index} (pid ${worker.child.pid}) log: ${file}`);
      }
    });
    for (let i = 0; i < 3; i += 1) s.workers.push(spawnWorker(env));
    await Promise.all(s.workers.map((worker) => worker.ready));

    const rows = 60;
    await handle.batches.create('failover', 'faults');
    await enqueueRows(handle, 'failover', Array.from({ length: rows }, (_, i) => row(i)));
    await vi.waitFor(async () => expect((await handle.batches.counts('failover')).done).toBeGreaterThanOrEqual(8), { timeout: 120_000, interval: 100 });

    // Hold a create's answer: D-ID has the talk, its "create in flight" checkpoint is on the replica (the
    // worker waited for that), but its talk id is not written anywhere yet.
    gate.hold();
    await vi.waitFor(() => expect(gate.held().length).toBeGreaterThan(0), { timeout: 60_000, interval: 20 });
    const lostJobId = gate.held()[0] as string;

    // Freeze the replica and fill the replication link, so what the primary writes from now on stays in
    // the primary's memory: the replica still counts as attached (creates keep waiting for it).
    set.replica.child.kill('SIGSTOP');
    await primaryClient.set(`${config.prefix}:${queueName}:ballast`, Buffer.alloc(48 * 1024 * 1024, 1));
    gate.release();
    const jobKey = `${config.prefix}:${queueName}:${lostJobId}`;
    await vi.waitFor(
      async () => {
        const data = JSON.parse((await primaryClient.hget(jobKey, 'data')) ?? '{}') as { state?: { talkId?: string } };
        expect(data.state?.talkId).toBeDefined();
      },
      { timeout: 30_000, interval: 20 },
    );

    // The worker holding that row dies with the primary: its row must be picked up from what the replica has.
    const holder = s.workers.find((worker) =>
      worker
        .output()
        .split('\n')
        .some((line) => line.includes('"msg":"talk created"') && line.includes(`"jobId":"${lostJobId}"`)),
    );
    expect(holder, `the worker that created the held talk ${lostJobId}`).toBeDefined();
    holder?.child.kill('SIGKILL');
    await holder?.exited;
    const survivors = s.workers.filter((worker) => worker !== holder);
    const survivorOutputAt = survivors.map((worker) => worker.output().length);
    const oldPrimaryPort = set.primary.port;
    await set.primary.kill();
    const killedAt = Date.now();
    set.replica.child.kill('SIGCONT');

    await vi.waitFor(async () => expect(await set.primaryPort()).toBe(set.replica.port), { timeout: 60_000, interval: 100 });
    const promotedAfterMs = Date.now() - killedAt;
    // The promoted replica never got the talk id: only reconciliation can find the talk.
    await replicaClient.connect();
    const promotedData = JSON.parse((await replicaClient.hget(jobKey, 'data')) ?? '{}') as { state?: { talkId?: string; submitStartedAt?: number } };
    expect(promotedData.state?.submitStartedAt).toBeDefined();
    expect(promotedData.state?.talkId).toBeUndefined();

    const counts = await untilBatchFinished(handle.batches, 'failover', 120_000, 250);
    const stats = simulator.stats();
    figure('sentinel failover', { rows, promotedAfterMs, done: counts.done, failed: counts.failed, talksCreated: stats.totalCreates, duplicates: stats.duplicateUserData.length, oldPrimaryPort });
    expect(counts).toMatchObject({ total: rows, done: rows, failed: 0 });
    expect(stats.duplicateUserData).toEqual([]);
    expect(stats.totalCreates).toBe(rows);
    const adopted = survivors.some((worker) =>
      worker
        .output()
        .split('\n')
        .some((line) => line.includes('adopted talk created by an earlier try') && line.includes(`"jobId":"${lostJobId}"`)),
    );
    expect(adopted, 'a surviving worker adopted the talk whose id was lost').toBe(true);
    // Every surviving worker kept working through the failover, without a restart.
    for (const [index, worker] of survivors.entries()) {
      expect(worker.child.exitCode).toBeNull();
      const after = worker.output().slice(survivorOutputAt[index] ?? 0);
      expect(after, `worker ${index} finished rows after the failover`).toContain('row done');
    }
    const dir = join(outDir, 'failover');
    const videos = (await readdir(dir)).filter((name) => name.endsWith('.mp4'));
    expect(videos).toHaveLength(rows);
    for (const name of videos) expect(createHash('sha256').update(await readFile(join(dir, name))).digest('hex'), name).toBe(FIXTURE_SHA256);
  });
});
