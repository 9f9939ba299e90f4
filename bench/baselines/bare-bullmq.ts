/*
 * What BullMQ itself costs in Redis commands per job, for scale next to talkbatch's figures: the same
 * payloads added with addBulk (500 a call) and taken by a Worker whose processor does nothing, at the
 * same concurrency, on the same Redis. No D-ID, no ledger, no checkpoints.
 */
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import type { ManifestRow } from '../../src/manifest/index.js';
import { commandCounts, diffStats, installCommandCounter, resetCommandCounts, total, type BenchRedis } from '../lib/redis.js';

export interface BareBullmqOutcome {
  jobs: number;
  ms: number;
  /** Commands as sent by BullMQ's clients (a Lua script call is one). */
  clientCommands: number;
  /** INFO commandstats, commands run inside Lua scripts included. */
  serverCommands: number;
}

export async function runBareBullmq(redis: BenchRedis, rows: readonly ManifestRow[], concurrency: number): Promise<BareBullmqOutcome> {
  installCommandCounter();
  const connection = new Redis(redis.url, { maxRetriesPerRequest: null });
  const name = `bare-${Date.now().toString(36)}`;
  const queue = new Queue(name, { connection });
  let worker: Worker | undefined;
  try {
    await queue.waitUntilReady();
    const statsBefore = await redis.commandStats();
    resetCommandCounts();
    const started = performance.now();
    let completed = 0;
    const allDone = new Promise<void>((resolve, reject) => {
      worker = new Worker(name, () => Promise.resolve(null), { connection, concurrency, autorun: false });
      worker.on('completed', () => {
        completed += 1;
        if (completed === rows.length) resolve();
      });
      worker.on('failed', (_job, error) => reject(error));
    });
    for (let start = 0; start < rows.length; start += 500) {
      await queue.addBulk(rows.slice(start, start + 500).map((row) => ({ name: 'talk', data: row, opts: { jobId: `bare-${row.rowKey}` } })));
    }
    void worker?.run();
    await allDone;
    const ms = performance.now() - started;
    await worker?.close();
    worker = undefined;
    const sent = commandCounts();
    const server = diffStats(statsBefore, await redis.commandStats());
    for (const [command, count] of sent.bench) server.set(command, Math.max(0, (server.get(command) ?? 0) - count));
    server.set('info', 0);
    return { jobs: rows.length, ms, clientCommands: total(sent.talkbatch), serverCommands: total(server) };
  } finally {
    await worker?.close();
    await queue.obliterate({ force: true }).catch(() => undefined);
    await queue.close();
    connection.disconnect();
  }
}
