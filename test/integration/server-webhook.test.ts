import { afterEach, describe, expect, it, vi } from 'vitest';
import { DidClient } from '../../src/did/index.js';
import { createRedis, type RedisClient } from '../../src/queue/connections.js';
import { jobIdFor } from '../../src/queue/payload.js';
import { buildServer, type TalkbatchServer } from '../../src/server/index.js';
import { webhookToken, webhookUrl } from '../../src/shared/webhook-token.js';
import { wakeChannel } from '../../src/worker/wakeups.js';
import { row, startHarness, type Harness } from '../helpers/harness.js';

const SECRET = 'webhook-secret-for-tests-0123456789';
/** Polls this far apart (the worker triples it while webhooks are on), so only a webhook can finish a row in time. */
const SLOW_POLLS = { TALKBATCH_POLL_INITIAL_MS: 20_000, TALKBATCH_POLL_MAX_MS: 20_000, TALKBATCH_WEBHOOK_SECRET: SECRET };

interface Setup {
  harness: Harness;
  server: TalkbatchServer;
  did: DidClient;
  url: string;
  wakes: string[];
  subscriber: RedisClient;
}

let setup: Setup | undefined;
afterEach(async () => {
  if (!setup) return;
  await setup.server.app.close();
  setup.subscriber.disconnect();
  await setup.harness.close();
  await setup.did.close();
  setup = undefined;
});

async function start(renderMs: number): Promise<Setup> {
  const harness = await startHarness({ renderMs, allowHttpWebhooks: true, webhookDelayMs: 0 }, SLOW_POLLS);
  const did = new DidClient({ apiKey: harness.simulator.apiKey, baseUrl: harness.simulator.url });
  const server = await buildServer({ config: harness.config, handle: harness.handle, did });
  const url = await server.app.listen({ host: '127.0.0.1', port: 0 });
  // Config only takes an https TALKBATCH_PUBLIC_URL; the test server is http, so the worker is told directly.
  await harness.startWorker({ webhookUrlFor: (jobId) => webhookUrl(url, SECRET, jobId) });

  const wakes: string[] = [];
  const subscriber = createRedis(harness.config.redisUrl as string, 'worker');
  subscriber.on('message', (_channel: string, jobId: string) => wakes.push(jobId));
  await subscriber.subscribe(wakeChannel(harness.config.prefix, harness.config.queueName));
  setup = { harness, server, did, url, wakes, subscriber };
  return setup;
}

function post(url: string, body: string, contentType = 'application/json'): Promise<Response> {
  return fetch(url, { method: 'POST', headers: { 'content-type': contentType }, body });
}

/** Wakes published before this call arrive before its sentinel (pub/sub keeps order per channel): no sleeping needed. */
async function wakesSoFar(s: Setup): Promise<string[]> {
  const sentinel = `sentinel-${Math.random()}`;
  await s.harness.handle.redis.publish(wakeChannel(s.harness.config.prefix, s.harness.config.queueName), sentinel);
  await vi.waitFor(() => expect(s.wakes).toContain(sentinel), { timeout: 5_000, interval: 10 });
  return s.wakes.filter((jobId) => !jobId.startsWith('sentinel-'));
}

describe('D-ID webhook receiver', () => {
  it('wakes the waiting job long before its next poll, and ignores a replay once the row is done', async () => {
    const s = await start(400);
    const started = Date.now();
    await s.harness.enqueue('wh1', [row(1)]);
    await vi.waitFor(async () => expect((await s.harness.handle.batches.counts('wh1')).done).toBe(1), { timeout: 10_000, interval: 50 });
    // Without the webhook the first poll after "started" comes 30-60 s later.
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(s.harness.simulator.stats().webhooksSent).toBe(1);
    const jobId = jobIdFor('wh1', row(1).rowKey);
    expect(await wakesSoFar(s)).toEqual([jobId]);

    // The same delivery again, after the row finished: 2xx, and nothing happens.
    const job = await s.harness.handle.queue.getJob(jobId);
    const before = JSON.stringify(job?.data);
    const talkId = job?.returnvalue.talkId as string;
    const replay = await post(webhookUrl(s.url, SECRET, jobId), JSON.stringify({ id: talkId, status: 'done' }));
    expect(replay.status).toBe(200);
    expect(await replay.json()).toEqual({ status: 'ignored' });
    expect(await wakesSoFar(s)).toEqual([jobId]);
    const after = await s.harness.handle.queue.getJob(jobId);
    expect(await after?.getState()).toBe('completed');
    expect(JSON.stringify(after?.data)).toBe(before);
  });

  it('changes nothing for forged tokens, unknown talks or jobs, malformed bodies and premature calls', async () => {
    const s = await start(60_000);
    await s.harness.enqueue('wh2', [row(2)]);
    const jobId = jobIdFor('wh2', row(2).rowKey);
    await vi.waitFor(
      async () => {
        const job = await s.harness.handle.queue.getJob(jobId);
        expect(job?.data.state?.talkId).toBeTruthy();
        expect(await job?.getState()).toBe('active');
      },
      { timeout: 10_000, interval: 50 },
    );
    const job = await s.harness.handle.queue.getJob(jobId);
    const talkId = job?.data.state?.talkId as string;
    const before = JSON.stringify(job?.data);
    const valid = webhookUrl(s.url, SECRET, jobId);
    const goodBody = JSON.stringify({ id: talkId, status: 'done', result_url: 'https://evil.example/x.mp4' });

    const forged = await post(`${s.url}/webhooks/did/${jobId}/${'A'.repeat(43)}`, goodBody);
    expect(forged.status).toBe(404);
    expect(await forged.json()).toMatchObject({ error: 'not_found' });
    // Another job's valid token does not open this job, and a bad token hides even a bad body.
    expect((await post(`${s.url}/webhooks/did/${jobId}/${webhookToken(SECRET, 'wh2-other')}`, goodBody)).status).toBe(404);
    expect((await post(`${s.url}/webhooks/did/${jobId}/short`, 'not json')).status).toBe(404);
    expect((await post(`${s.url}/webhooks/did/${jobId}`, goodBody)).status).toBe(404);

    expect((await post(valid, JSON.stringify({ id: 'tlk_not_this_one' }))).status).toBe(202);
    expect((await post(webhookUrl(s.url, SECRET, 'wh2-nosuchrow'), goodBody)).status).toBe(202);
    for (const bad of ['not json{', '{}', '{"id":5}', '[]', '']) expect((await post(valid, bad)).status, bad).toBe(400);
    expect((await post(valid, goodBody, 'text/plain')).status).toBe(202);
    expect((await post(valid, JSON.stringify({ id: talkId, padding: 'x'.repeat(70_000) }))).status).toBe(413);

    // Right token and talk, but D-ID (re-read with our key) says the talk is still rendering: no wake.
    const premature = await post(valid, goodBody);
    expect(premature.status).toBe(202);
    expect(await premature.json()).toEqual({ status: 'pending' });

    expect(await wakesSoFar(s)).toEqual([]);
    const after = await s.harness.handle.queue.getJob(jobId);
    expect(await after?.getState()).toBe('active');
    expect(JSON.stringify(after?.data)).toBe(before);
    expect(s.harness.simulator.stats().totalCreates).toBe(1);
  });
});
