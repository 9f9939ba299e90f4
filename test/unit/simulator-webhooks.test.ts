import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { WebhookDispatcher } from '../../src/simulator/webhooks.js';

describe('WebhookDispatcher', () => {
  const cleanups: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  async function receiver(statuses: number[]): Promise<{ url: string; bodies: unknown[] }> {
    const bodies: unknown[] = [];
    const server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        bodies.push(JSON.parse(Buffer.concat(chunks).toString('utf8')));
        res.writeHead(statuses[bodies.length - 1] ?? 200).end();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
    return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, bodies };
  }

  function dispatcher(counts: { delivered: number; failed: number }): WebhookDispatcher {
    const created = new WebhookDispatcher({
      logger: { warn: () => {} },
      onDelivered: () => counts.delivered++,
      onFailedAttempt: () => counts.failed++,
      retryDelayMs: 10,
    });
    cleanups.push(() => created.close());
    return created;
  }

  it('retries a failing receiver twice, then stops', async () => {
    const { url, bodies } = await receiver([500, 503, 200]);
    const counts = { delivered: 0, failed: 0 };
    dispatcher(counts).schedule(Date.now(), url, () => ({ id: 'tlk_1' }));
    await vi.waitFor(() => expect(counts).toEqual({ delivered: 1, failed: 2 }));
    expect(bodies).toEqual([{ id: 'tlk_1' }, { id: 'tlk_1' }, { id: 'tlk_1' }]);
  });

  it('gives up after three failed attempts without throwing', async () => {
    const { url, bodies } = await receiver([500, 500, 500, 200]);
    const counts = { delivered: 0, failed: 0 };
    dispatcher(counts).schedule(Date.now(), url, () => ({ id: 'tlk_2' }));
    await vi.waitFor(() => expect(counts.failed).toBe(3));
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(bodies).toHaveLength(3);
    expect(counts.delivered).toBe(0);
  });

  it('sends nothing when the payload is gone or the dispatcher is closed first', async () => {
    const { url, bodies } = await receiver([]);
    const counts = { delivered: 0, failed: 0 };
    const webhooks = dispatcher(counts);
    webhooks.schedule(Date.now(), url, () => undefined);
    webhooks.schedule(Date.now() + 20, url, () => ({ id: 'tlk_3' }));
    webhooks.close();
    await new Promise((resolve) => setTimeout(resolve, 60));
    expect(bodies).toEqual([]);
    expect(counts).toEqual({ delivered: 0, failed: 0 });
  });
});
