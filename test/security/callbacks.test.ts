import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { BatchFinisher } from '../../src/app/finisher.js';
import { silentLogger } from '../../src/shared/logger.js';
import { startHarness, type Harness } from '../helpers/harness.js';

/*
 * Batch callbacks are requests on a user's behalf: they reach only public addresses (or hosts the operator opened),
 * the attempts API callers see are coarse (no error codes, no timings to map ports with), and a later submission
 * into the same batch id cannot re-point the callback.
 */

const SECRET = 'callback-secret-0123456789abcdef';

let harness: Harness | undefined;
let receiver: Server | undefined;
let hits = 0;
afterEach(async () => {
  await harness?.close();
  harness = undefined;
  if (receiver) {
    receiver.closeAllConnections();
    await new Promise<void>((resolve) => receiver?.close(() => resolve()));
  }
  receiver = undefined;
  hits = 0;
});

async function startReceiver(): Promise<number> {
  receiver = createServer((_request, response) => {
    hits += 1;
    response.writeHead(204).end();
  });
  await new Promise<void>((resolve) => receiver?.listen(0, '127.0.0.1', resolve));
  return (receiver.address() as AddressInfo).port;
}

async function finisherFor(allow: string): Promise<{ harness: Harness; finisher: BatchFinisher }> {
  harness = await startHarness({}, { TALKBATCH_CALLBACK_SECRET: SECRET, ...(allow ? { TALKBATCH_OUTBOUND_ALLOW: allow } : {}) });
  const finisher = new BatchFinisher({ config: harness.config, handle: harness.handle, logger: silentLogger, retry: { attempts: 3, baseDelayMs: 10, timeoutMs: 2_000 } });
  return { harness, finisher };
}

describe('batch callbacks', () => {
  it.each([
    ['127.0.0.1', (port: number) => `http://127.0.0.1:${port}/hook`],
    ['localhost', (port: number) => `http://localhost:${port}/hook`],
    ['169.254.169.254', () => 'http://169.254.169.254/latest/meta-data/'],
    ['[::ffff:127.0.0.1]', (port: number) => `http://[::ffff:127.0.0.1]:${port}/hook`],
  ])('to %s are refused without a connection, once, with a coarse reason', async (_label, urlFor) => {
    const port = await startReceiver();
    const { harness: h, finisher } = await finisherFor('');
    await h.handle.batches.create('cb-internal', 'test', { callbackUrl: urlFor(port) });
    expect(await finisher.deliver('cb-internal')).toBe(false);
    expect(hits).toBe(0);
    const status = await finisher.callbacks.status('cb-internal');
    expect(status.attempts).toEqual([{ attempt: 1, at: expect.any(String), ok: false, error: 'not sent: the callback URL is not a public address' }]);
  });

  it('an unreachable receiver is "not delivered", with no error code and no timing', async () => {
    const port = await startReceiver();
    receiver?.close();
    const { harness: h, finisher } = await finisherFor('127.0.0.1');
    await h.handle.batches.create('cb-closed', 'test', { callbackUrl: `http://127.0.0.1:${port}/hook` });
    expect(await finisher.deliver('cb-closed')).toBe(false);
    const status = await finisher.callbacks.status('cb-closed');
    expect(status.attempts).toHaveLength(3);
    for (const attempt of status.attempts) expect(attempt).toEqual({ attempt: expect.any(Number), at: expect.any(String), ok: false, error: 'not delivered' });
  });

  it('the allow-list opens a receiver on this machine', async () => {
    const port = await startReceiver();
    const { harness: h, finisher } = await finisherFor(`127.0.0.1:${port}`);
    await h.handle.batches.create('cb-open', 'test', { callbackUrl: `http://127.0.0.1:${port}/hook` });
    expect(await finisher.deliver('cb-open')).toBe(true);
    await vi.waitFor(() => expect(hits).toBe(1));
  });

  it('a later submission into the same batch id cannot re-point the callback or change its budget', async () => {
    const { harness: h } = await finisherFor('');
    await h.handle.batches.create('cb-kept', 'test', { callbackUrl: 'https://receiver.example.com/hook', budget: { maxTalks: 2 } });
    await h.handle.batches.create('cb-kept', 'test', { callbackUrl: 'http://169.254.169.254/steal', budget: { maxTalks: 1000 } });
    expect(await h.handle.batches.get('cb-kept')).toMatchObject({ callbackUrl: 'https://receiver.example.com/hook', budget: { maxTalks: 2 } });
  });
});
