import { afterEach, describe, expect, it, vi } from 'vitest';
import { startPrivateRedis, type PrivateRedis } from '../../src/cli/local-redis.js';
import { startServer, type RunningServer } from '../../src/server/index.js';
import { silentLogger } from '../../src/shared/logger.js';
import { startSimulator, type Simulator } from '../../src/simulator/server.js';
import { testConfig } from '../helpers/context.js';
import { row, startHarness, type Harness } from '../helpers/harness.js';
import { enqueueRows } from '../../src/queue/producer.js';

let redis: PrivateRedis | undefined;
let server: RunningServer | undefined;
let simulator: Simulator | undefined;
let harness: Harness | undefined;

afterEach(async () => {
  await harness?.close();
  harness = undefined;
  await server?.close().catch(() => undefined);
  await simulator?.close();
  await redis?.stop();
  server = undefined;
  simulator = undefined;
  redis = undefined;
});

async function readyz(url: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(`${url}/readyz`);
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

describe('a worker that loses Redis', () => {
  it('says so on /readyz and goes back to work by itself when Redis returns', async () => {
    // A Redis of this test's own, killed and restarted on the same port and data (AOF).
    redis = await startPrivateRedis();
    const { port, dir } = redis;
    simulator = await startSimulator({ knobs: { renderMs: 100 } });
    const config = await testConfig({ REDIS_URL: redis.url, DID_API_URL: simulator.url, DID_API_KEY: simulator.apiKey });
    server = await startServer({ config, redisUrl: redis.url, logger: silentLogger, host: '127.0.0.1', port: 0, withWorker: true });
    const url = server.url;
    expect(await readyz(url)).toMatchObject({ status: 200, body: { status: 'ready', worker: { redis: 'ok', running: true } } });

    redis.process.kill('SIGKILL');
    await vi.waitFor(async () => expect(await readyz(url)).toMatchObject({ status: 503, body: { status: 'unavailable', worker: { redis: 'lost' } } }), {
      timeout: 15_000,
      interval: 100,
    });

    const restarted = await startPrivateRedis({ port, dir });
    redis = restarted;
    await vi.waitFor(async () => expect(await readyz(url)).toMatchObject({ status: 200, body: { worker: { redis: 'ok', running: true } } }), {
      timeout: 30_000,
      interval: 200,
    });
    // The same worker, never restarted, takes rows again.
    await server.handle.batches.create('after-loss', 'test');
    await enqueueRows(server.handle, 'after-loss', [row(0), row(1)]);
    await vi.waitFor(async () => expect((await server?.handle.batches.counts('after-loss'))?.done).toBe(2), { timeout: 30_000, interval: 100 });
  });

  it('replaces, in the same process, a BullMQ worker that stopped fetching while rows wait', async () => {
    harness = await startHarness({ renderMs: 100 }, { TALKBATCH_FETCH_WATCHDOG_MS: 5_000 });
    const talkWorker = await harness.startWorker();
    // BullMQ's silent stop (taskforcesh/bullmq #4378): the fetch loop never returns while isRunning() stays true.
    const stuck = talkWorker.worker;
    Object.assign(stuck as unknown as Record<string, unknown>, { waitForJob: () => new Promise(() => {}) });
    await vi.waitFor(() => expect(stuck.isRunning()).toBe(true));
    await harness.enqueue('stuck', [row(0), row(1), row(2)]);
    await vi.waitFor(async () => expect((await harness?.handle.batches.counts('stuck'))?.done).toBe(3), { timeout: 60_000, interval: 200 });
    expect(talkWorker.health().restarts).toBeGreaterThanOrEqual(1);
    expect(talkWorker.worker).not.toBe(stuck);
  });
});
