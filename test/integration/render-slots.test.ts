import { afterEach, describe, expect, it, vi } from 'vitest';
import { createRedis, type RedisClient } from '../../src/queue/connections.js';
import { queueKeys } from '../../src/queue/keys.js';
import { headroomFor, RenderLimit, RenderSlots } from '../../src/queue/render-slots.js';
import { openQueue, type QueueHandle } from '../../src/queue/talk-queue.js';
import { Wakeups } from '../../src/worker/wakeups.js';
import { SlotKeeper } from '../../src/worker/slot-keeper.js';
import { row, startHarness, untilBatchFinished, type Harness } from '../helpers/harness.js';
import { BatchService, cancelBatch } from '../../src/app/index.js';
import { silentLogger } from '../../src/shared/logger.js';
import { jobIdFor } from '../../src/queue/payload.js';
import { testConfig } from '../helpers/context.js';

let handle: QueueHandle | undefined;
let harness: Harness | undefined;
const extra: RedisClient[] = [];
afterEach(async () => {
  for (const client of extra.splice(0)) client.disconnect();
  await handle?.queue.obliterate({ force: true }).catch(() => undefined);
  await handle?.close();
  handle = undefined;
  await harness?.close();
  harness = undefined;
});

async function slotsOn(leaseMs = 30_000, limit = 2): Promise<{ slots: RenderSlots; handle: QueueHandle; keys: ReturnType<typeof queueKeys>; redisUrl: string }> {
  const config = await testConfig();
  const redisUrl = config.redisUrl as string;
  handle = await openQueue(config, redisUrl);
  const keys = queueKeys(config.prefix, config.queueName);
  return { slots: new RenderSlots(handle.redis, keys, handle.queue, leaseMs, limit), handle, keys, redisUrl };
}

describe('render slots (real Redis)', () => {
  it('gives out as many slots as the limit, keeps a holder its slot, and frees one when given back', async () => {
    const { slots } = await slotsOn();
    expect(await slots.take('a', 'b')).toEqual({ kind: 'taken' });
    expect(await slots.take('b', 'b')).toEqual({ kind: 'taken' });
    expect(await slots.take('c', 'b')).toEqual({ kind: 'full' });
    // Asking again while holding is not a second slot.
    expect(await slots.take('a', 'b')).toEqual({ kind: 'taken' });
    expect(await slots.held()).toBe(2);
    await slots.release('a');
    expect(await slots.take('c', 'b')).toEqual({ kind: 'taken' });
    // A talk that renders at D-ID already (adopted, resumed) holds a slot whatever the count.
    expect(await slots.take('d', 'b', { force: true })).toEqual({ kind: 'taken' });
    expect(await slots.held()).toBe(3);
  });

  it('follows the limit stored in Redis, and sets BullMQ global concurrency to the limit plus headroom', async () => {
    const { slots, handle: h } = await slotsOn();
    const limit = new RenderLimit(slots, h.queue);
    expect(await limit.get()).toBeNull();
    await limit.set(1);
    expect(await limit.get()).toBe(1);
    expect(await h.queue.getGlobalConcurrency()).toBe(1 + headroomFor(1));
    expect(await slots.take('a', 'b')).toEqual({ kind: 'taken' });
    expect(await slots.take('b', 'b')).toEqual({ kind: 'full' });
    await limit.set(32);
    expect(await h.queue.getGlobalConcurrency()).toBe(40);
  });

  it("frees a dead holder's slot once its lease ends, and keeps renewed ones", async () => {
    const { slots } = await slotsOn(300, 2);
    await slots.take('dead', 'b');
    await slots.take('alive', 'b');
    const renewing = setInterval(() => void slots.renew(['alive']), 50);
    try {
      await vi.waitFor(async () => expect(await slots.take('next', 'b')).toEqual({ kind: 'taken' }), { timeout: 5_000, interval: 50 });
      expect(await slots.take('another', 'b')).toEqual({ kind: 'full' });
    } finally {
      clearInterval(renewing);
    }
  });

  it("honours the queue's 429 back-off and pause", async () => {
    const { slots, handle: h } = await slotsOn();
    // A worker's own limiter counts the jobs it starts in the key as well: that is not a back-off.
    await h.redis.set(h.queue.toKey('limiter'), 5, 'PX', 1_000);
    expect(await slots.take('early', 'b')).toEqual({ kind: 'taken' });
    await slots.release('early');
    await h.queue.rateLimit(2_000);
    const verdict = await slots.take('a', 'b');
    expect(verdict.kind).toBe('rate-limited');
    expect(verdict.kind === 'rate-limited' && verdict.waitMs > 1_000 && verdict.waitMs <= 2_000).toBe(true);
    await h.queue.removeRateLimitKey();
    await h.queue.pause();
    expect(await slots.take('a', 'b')).toEqual({ kind: 'paused' });
    await h.queue.resume();
    expect(await slots.take('a', 'b')).toEqual({ kind: 'taken' });
  });

  it('refuses a slot to a row whose batch was cancelled, while a talk already rendering keeps its own', async () => {
    const { slots, handle: h } = await slotsOn();
    await h.batches.create('gone', 'test');
    await h.batches.markCancelled('gone');
    expect(await slots.take('a', 'gone')).toEqual({ kind: 'cancelled' });
    expect(await slots.take('b', 'gone', { force: true })).toEqual({ kind: 'taken' });
    expect(await slots.take('c', 'other')).toEqual({ kind: 'taken' });
  });

  it('wakes a row of another process waiting for a slot as soon as one is given back', async () => {
    const { slots, keys, redisUrl } = await slotsOn(30_000, 1);
    const subscriber = createRedis(redisUrl, 'worker');
    extra.push(subscriber);
    const there = new Wakeups(keys.wakeChannel(), keys.slotFreedChannel());
    await there.listen(subscriber);
    const here = new SlotKeeper(slots, new Wakeups(keys.wakeChannel(), keys.slotFreedChannel()), () => undefined);
    try {
      expect(await here.take('holder', 'b')).toEqual({ kind: 'taken' });
      expect(await slots.take('waiter', 'b')).toEqual({ kind: 'full' });
      const waited = there.waitForSlot(60_000);
      await here.release('holder');
      await expect(waited).resolves.toBe(true);
      expect(await slots.take('waiter', 'b')).toEqual({ kind: 'taken' });
    } finally {
      here.stop();
      await there.close();
    }
  });
});

describe('render slots in a worker', () => {
  it('keeps D-ID at the plan limit while downloads and bookkeeping run beside the renders', async () => {
    // A slow result server: each download takes longer than a render, so a slot held through the download would
    // halve the renders at D-ID. Outside it, D-ID renders at its limit while rows download.
    harness = await startHarness({ renderMs: 150, downloadDelayMs: 400, maxConcurrentRenders: 2 }, { TALKBATCH_CONCURRENCY: 2 });
    await harness.startWorker();
    await harness.enqueue('slots', Array.from({ length: 8 }, (_, i) => row(i)), { cache: false });
    expect(await untilBatchFinished(harness.handle.batches, 'slots', 30_000)).toMatchObject({ done: 8, failed: 0 });
    const stats = harness.simulator.stats();
    expect(stats.responsesByStatus['429'] ?? 0).toBe(0);
    expect(stats.maxConcurrentRendersSeen).toBe(2);
    expect(stats.totalCreates).toBe(8);
    // D-ID rendered at its limit while a row was downloading: that row's slot had gone back when it saw its talk done.
    // Held through the download, as before render slots, this could never exceed 1.
    expect(stats.maxRendersDuringDownloads).toBe(2);
  });

  it('a cancel reaches the rows waiting for a slot before they create: they fail as BATCH_CANCELLED, nothing spent', async () => {
    // Limit 1 with its headroom of 2: one row renders, two wait in their jobs for its slot.
    harness = await startHarness({ renderMs: 1_500 }, { TALKBATCH_CONCURRENCY: 1 });
    await harness.startWorker();
    await harness.enqueue('cancel-wait', Array.from({ length: 6 }, (_, i) => row(i)), { cache: false });
    const h = harness;
    await vi.waitFor(
      async () => {
        expect(h.simulator.stats().totalCreates).toBe(1);
        expect(await h.handle.queue.getActiveCount()).toBe(3);
      },
      { timeout: 10_000, interval: 20 },
    );
    const cancelled = await cancelBatch(h.handle, 'cancel-wait');
    expect(cancelled.kept.filter((kept) => kept.reason === 'active')).toHaveLength(3);
    expect(cancelled.removed).toHaveLength(3);
    expect(await untilBatchFinished(h.handle.batches, 'cancel-wait', 15_000)).toMatchObject({ done: 1, failed: 5 });
    // Only the row that held the slot made a talk.
    expect(h.simulator.stats().totalCreates).toBe(1);
    const failures = await Promise.all(Array.from({ length: 6 }, async (_, i) => (await h.handle.queue.getJob(jobIdFor('cancel-wait', row(i).rowKey)))?.data.state?.failure?.code));
    expect(failures.filter((code) => code === 'BATCH_CANCELLED')).toHaveLength(2);
    // `retry --failed` runs them after all (the batch is no longer cancelled).
    const service = new BatchService({ config: h.config, handle: h.handle, logger: silentLogger });
    try {
      expect(await service.retryFailed('cancel-wait')).toMatchObject({ retried: 2 });
    } finally {
      await service.close();
    }
    await vi.waitFor(async () => expect((await h.handle.batches.counts('cancel-wait')).done).toBe(3), { timeout: 15_000, interval: 50 });
    expect(h.simulator.stats().totalCreates).toBe(3);
  });
});
