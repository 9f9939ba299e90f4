import { Queue, Worker, type Job } from 'bullmq';
import { afterAll, describe, expect, it } from 'vitest';
import { createRedis, type RedisClient } from '../../src/queue/connections.js';
import { HeldJob, LockLostError } from '../../src/queue/job-lock.js';
import { testConfig } from '../helpers/context.js';

/*
 * A worker cut off from Redis past its lock comes back to a row another worker holds. Here the lock moves
 * to another token by hand (what BullMQ's stalled check and the other worker's fetch do), and what the
 * first try would write is refused. test/faults/hosts-apart.test.ts does it with real network namespaces.
 */

const config = await testConfig();
const redis: RedisClient = createRedis(config.redisUrl as string, 'worker');
const queue = new Queue(config.queueName, { connection: redis, prefix: config.prefix });
// A worker that never runs by itself: jobs are taken by hand with a token of the test's choosing.
const worker = new Worker(config.queueName, null, { connection: redis, prefix: config.prefix, autorun: false, lockDuration: 30_000 });

afterAll(async () => {
  await worker.close();
  await queue.obliterate({ force: true });
  await queue.close();
  redis.disconnect();
});

async function jobOf(id: string): Promise<Job> {
  const job = await queue.getJob(id);
  if (!job) throw new Error(`no job ${id}`);
  return job;
}

async function take(name: string): Promise<{ token: string; lockKey: string; jobKey: string; id: string }> {
  await queue.add(name, { step: 'submitting' }, { jobId: name });
  const token = `token-${name}`;
  const job = await worker.getNextJob(token);
  expect(job?.id).toBe(name);
  const jobKey = queue.toKey(name);
  return { token, lockKey: `${jobKey}:lock`, jobKey, id: name };
}

describe('HeldJob: writes only while this try holds the BullMQ lock', () => {
  it('writes the data and renews the lock while the token is the job’s', async () => {
    const { token, lockKey, id } = await take('held');
    const held = new HeldJob(redis, queue, await jobOf(id), token, 45_000);
    await held.updateData({ step: 'rendering', talkId: 'tlk_1' });
    expect((await queue.getJob(id))?.data).toEqual({ step: 'rendering', talkId: 'tlk_1' });
    await held.check();
    // check() is BullMQ's extendLock: the lock now runs for the duration given.
    expect(await redis.pttl(lockKey)).toBeGreaterThan(30_000);
  });

  it('refuses both once another worker holds the lock, and writes nothing', async () => {
    const { token, lockKey, id } = await take('taken-over');
    const held = new HeldJob(redis, queue, await jobOf(id), token, 30_000);
    await redis.set(lockKey, 'another-worker-token', 'PX', 30_000);
    await expect(held.updateData({ step: 'rendering', talkId: 'tlk_stale' })).rejects.toBeInstanceOf(LockLostError);
    await expect(held.check()).rejects.toBeInstanceOf(LockLostError);
    expect((await queue.getJob(id))?.data).toEqual({ step: 'submitting' });
    // The other worker's lock is untouched.
    expect(await redis.get(lockKey)).toBe('another-worker-token');
  });

  it('refuses once the lock has expired and nobody took the row yet', async () => {
    const { token, lockKey, id } = await take('expired');
    const held = new HeldJob(redis, queue, await jobOf(id), token, 30_000);
    await redis.del(lockKey);
    await expect(held.updateData({ step: 'done' })).rejects.toBeInstanceOf(LockLostError);
    await expect(held.check()).rejects.toBeInstanceOf(LockLostError);
    expect(await redis.exists(lockKey)).toBe(0);
    expect((await queue.getJob(id))?.data).toEqual({ step: 'submitting' });
  });
});
