import { createHmac } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { verifyCallbackSignature } from '../../src/app/index.js';
import { startServer, type RunningServer } from '../../src/server/index.js';
import { silentLogger } from '../../src/shared/logger.js';
import { IMAGE, startHarness, type Harness } from '../helpers/harness.js';

const KEY = 'api-key-for-callback-tests-0123456789';
const CALLBACK_SECRET = 'callback-secret-for-tests-0123456789';

interface Delivery {
  headers: IncomingHttpHeaders;
  body: string;
  answered: number;
  signatureOk: boolean;
}

/** A receiver that answers 500 to the first `failures` deliveries and 204 after, checking each signature by hand. */
async function startReceiver(failures: number): Promise<{ url: string; deliveries: Delivery[]; close(): Promise<void> }> {
  const deliveries: Delivery[] = [];
  const server: Server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const header = String(request.headers['x-talkbatch-signature'] ?? '');
      const match = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(header);
      const expected = match ? createHmac('sha256', CALLBACK_SECRET).update(`${match[1]}.${body}`).digest('hex') : '';
      const fresh = match ? Math.abs(Date.now() / 1000 - Number(match[1])) < 300 : false;
      const answered = deliveries.length < failures ? 500 : 204;
      deliveries.push({ headers: request.headers, body, answered, signatureOk: match?.[2] === expected && fresh });
      response.writeHead(answered).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/hooks/talkbatch?token=receiver-own-token`,
    deliveries,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

let harness: Harness | undefined;
let server: RunningServer | undefined;
let receiver: Awaited<ReturnType<typeof startReceiver>> | undefined;
afterEach(async () => {
  await server?.close();
  await harness?.close();
  await receiver?.close();
  harness = server = receiver = undefined;
});

describe('batch callbacks', () => {
  it('POSTs a signed summary when the batch finishes, retrying with backoff and recording every attempt', async () => {
    harness = await startHarness({ renderMs: 100 }, { TALKBATCH_API_KEYS: KEY, TALKBATCH_CALLBACK_SECRET: CALLBACK_SECRET, TALKBATCH_OUTBOUND_ALLOW: '127.0.0.1' });
    receiver = await startReceiver(2);
    server = await startServer({
      config: harness.config,
      redisUrl: harness.config.redisUrl as string,
      logger: silentLogger,
      host: '127.0.0.1',
      port: 0,
      withWorker: true,
      allowHttpCallbacks: true,
      publicUrl: 'https://talkbatch.example.com/',
      callbackRetry: { baseDelayMs: 50, timeoutMs: 2_000 },
    });
    const rows = [1, 2].map((i) => ({ id: `cb${i}`, first_name: `Person ${i}`, image_url: IMAGE }));
    const created = await fetch(`${server.url}/v1/batches`, {
      method: 'POST',
      headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ rows, options: { batchId: 'cb-batch', template: 'Hello {{first_name}}, all done.', callbackUrl: receiver.url } }),
    });
    expect(created.status).toBe(201);

    const deliveries = receiver.deliveries;
    await vi.waitFor(() => expect(deliveries.map((delivery) => delivery.answered)).toEqual([500, 500, 204]), { timeout: 15_000, interval: 50 });
    expect(deliveries.every((delivery) => delivery.signatureOk)).toBe(true);
    expect(new Set(deliveries.map((delivery) => delivery.headers['x-talkbatch-delivery'])).size).toBe(1);
    expect(deliveries.map((delivery) => delivery.headers['x-talkbatch-attempt'])).toEqual(['1', '2', '3']);
    const last = deliveries[2] as Delivery;
    expect(verifyCallbackSignature(CALLBACK_SECRET, last.body, String(last.headers['x-talkbatch-signature']))).toBe(true);
    expect(verifyCallbackSignature('some-other-secret-0123456789', last.body, String(last.headers['x-talkbatch-signature']))).toBe(false);
    expect(verifyCallbackSignature(CALLBACK_SECRET, last.body.replace('cb-batch', 'cb-batcX'), String(last.headers['x-talkbatch-signature']))).toBe(false);
    expect(JSON.parse(last.body)).toEqual({
      event: 'batch.finished',
      batchId: 'cb-batch',
      finishedAt: expect.any(String),
      counts: { total: 2, done: 2, failed: 0, active: 0, queued: 0, held: 0 },
      resultsUrl: 'https://talkbatch.example.com/v1/batches/cb-batch/results.csv',
    });

    let callback: { attempts: Record<string, unknown>[]; deliveredAt: string | null } | undefined;
    await vi.waitFor(
      async () => {
        const batch = (await (await fetch(`${server?.url}/v1/batches/cb-batch`, { headers: { authorization: `Bearer ${KEY}` } })).json()) as { callback: typeof callback };
        callback = batch.callback;
        expect(callback?.deliveredAt).toBeTruthy();
      },
      { timeout: 5_000, interval: 50 },
    );
    expect(callback?.attempts).toEqual([
      { attempt: 1, at: expect.any(String), ok: false, status: 500, error: 'HTTP 500' },
      { attempt: 2, at: expect.any(String), ok: false, status: 500, error: 'HTTP 500' },
      { attempt: 3, at: expect.any(String), ok: true, status: 204 },
    ]);
    expect(callback?.deliveredAt).toBe(callback?.attempts[2]?.at);
    // Backoff: the third try waited about twice as long after the second as the second after the first.
    const times = (callback?.attempts ?? []).map((attempt) => Date.parse(String(attempt.at)));
    expect((times[2] as number) - (times[1] as number)).toBeGreaterThanOrEqual(95);
  });
});
