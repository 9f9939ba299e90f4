import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { buildServer, type TalkbatchServer } from '../../src/server/index.js';
import { BatchFinisher, SIGNATURE_HEADER, verifyCallbackSignature, type RowWebhookBody, type RowWebhookEvent } from '../../src/app/finisher.js';
import { jobIdFor } from '../../src/queue/payload.js';
import { silentLogger } from '../../src/shared/logger.js';
import { webhookUrl } from '../../src/shared/webhook-token.js';
import { row, startHarness, type Harness } from '../helpers/harness.js';

const WEBHOOK_SECRET = 'webhook-secret-for-tests-0123456789';
const CALLBACK_SECRET = 'callback-secret-for-tests-0123456789';

interface Received {
  body: string;
  signature: string | undefined;
  fileExisted: boolean;
}

let cleanup: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const step of cleanup.reverse()) await step();
  cleanup = [];
});

describe('a row\'s own webhook while talkbatch\'s own receiver is on', () => {
  it('is called once by talkbatch, signed, after the MP4 is on disk, with its sha256 and D-ID\'s talk fields', async () => {
    const harness: Harness = await startHarness(
      { renderMs: 200, allowHttpWebhooks: true },
      { TALKBATCH_WEBHOOK_SECRET: WEBHOOK_SECRET, TALKBATCH_CALLBACK_SECRET: CALLBACK_SECRET, TALKBATCH_OUTBOUND_ALLOW: '127.0.0.1' },
    );
    cleanup.push(() => harness.close());
    const outFile = join(harness.config.outDir, 'own', 'row0000.mp4');

    const received: Received[] = [];
    const receiver: Server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        void readFile(outFile).then(
          () => true,
          () => false,
        ).then((fileExisted) => {
          received.push({ body: Buffer.concat(chunks).toString('utf8'), signature: req.headers[SIGNATURE_HEADER] as string | undefined, fileExisted });
          res.writeHead(204).end();
        });
      });
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    cleanup.push(() => new Promise((resolve) => receiver.close(resolve)));
    // Rows must name https webhooks (D-ID's rule, checked whether or not D-ID gets the URL); the test receiver speaks
    // plain http, so only the scheme is swapped on the way to the real signing, allow-list and retry machinery.
    const receiverUrl = `https://127.0.0.1:${(receiver.address() as AddressInfo).port}/hooks/crm?token=abc`;
    const overPlainHttp = (event: RowWebhookEvent): void => finisher.onRowWebhook({ ...event, url: event.url.replace(/^https:/, 'http:') });

    const server: TalkbatchServer = await buildServer({ config: harness.config, handle: harness.handle });
    const url = await server.app.listen({ host: '127.0.0.1', port: 0 });
    cleanup.push(() => server.app.close());
    const finisher = new BatchFinisher({ config: harness.config, handle: harness.handle, logger: silentLogger, retry: { baseDelayMs: 10 } });
    cleanup.push(() => finisher.close());
    // Config only takes an https TALKBATCH_PUBLIC_URL; the test server is http, so the worker is told directly.
    await harness.startWorker({ webhookUrlFor: (jobId) => webhookUrl(url, WEBHOOK_SECRET, jobId), onRowWebhook: overPlainHttp });

    const own = row(0, { talk: { ...row(0).talk, webhook: receiverUrl, user_data: 'crm-42' } });
    await harness.enqueue('own', [own, row(1)]);
    await vi.waitFor(() => expect(received).toHaveLength(1), { timeout: 15_000, interval: 50 });
    const [call] = received;
    expect(call?.fileExisted).toBe(true);
    expect(verifyCallbackSignature(CALLBACK_SECRET, call?.body ?? '', call?.signature)).toBe(true);
    const body = JSON.parse(call?.body ?? '') as RowWebhookBody;
    const sha256 = createHash('sha256').update(await readFile(outFile)).digest('hex');
    const jobId = jobIdFor('own', 'row0000');
    const job = await harness.handle.queue.getJob(jobId);
    expect(body).toMatchObject({ event: 'talk.done', batchId: 'own', rowKey: 'row0000', jobId, status: 'done', file: 'row0000.mp4', sha256 });
    expect(body.talkId).toBe(job?.returnvalue.talkId);
    expect(body.talk).toMatchObject({ id: body.talkId, status: 'done', user_data: expect.stringContaining('crm-42') as unknown });
    expect(typeof body.talk.result_url).toBe('string');
    // D-ID was given talkbatch's receiver; its token does not leak to the row's receiver.
    expect(body.talk.webhook).toBe(receiverUrl);
    expect(call?.body).not.toContain(url);
    await vi.waitFor(async () => expect((await harness.handle.batches.counts('own')).done).toBe(2), { timeout: 15_000, interval: 50 });
    expect(received).toHaveLength(1);
    expect((await finisher.callbacks.status('own', 'row0000')).deliveredAt).not.toBeNull();
  });
});

describe('deliverRowWebhook', () => {
  it('sends nothing to a non-public address that the allow-list does not open, and logs the refusal under the row', async () => {
    const harness: Harness = await startHarness({}, { TALKBATCH_CALLBACK_SECRET: CALLBACK_SECRET });
    cleanup.push(() => harness.close());
    let hits = 0;
    const receiver: Server = createServer((_req, res) => {
      hits += 1;
      res.writeHead(204).end();
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    cleanup.push(() => new Promise((resolve) => receiver.close(resolve)));
    const finisher = new BatchFinisher({ config: harness.config, handle: harness.handle, logger: silentLogger, retry: { baseDelayMs: 10 } });
    cleanup.push(() => finisher.close());

    const delivered = await finisher.deliverRowWebhook({
      batchId: 'private',
      rowKey: 'row0000',
      jobId: jobIdFor('private', 'row0000'),
      url: `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`,
      talkId: 'tlk_x',
      file: 'row0000.mp4',
      sha256: '0'.repeat(64),
      bytes: 1,
      talk: { id: 'tlk_x', status: 'done' },
    });
    expect(delivered).toBe(false);
    expect(hits).toBe(0);
    expect(await finisher.callbacks.status('private', 'row0000')).toEqual({
      attempts: [expect.objectContaining({ attempt: 1, ok: false, error: 'not sent: the callback URL is not a public address' }) as unknown],
      deliveredAt: null,
    });
    expect((await finisher.callbacks.status('private')).attempts).toEqual([]);
  });
});
