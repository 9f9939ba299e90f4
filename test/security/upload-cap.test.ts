import { request as httpRequest, type ClientRequest, type IncomingMessage } from 'node:http';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startServer, type RunningServer } from '../../src/server/index.js';
import { silentLogger } from '../../src/shared/logger.js';
import { IMAGE, startHarness, type Harness } from '../helpers/harness.js';

/* A server-wide cap on manifests being uploaded and taken in at once (TALKBATCH_API_MAX_CONCURRENT_UPLOADS). */

const KEY = 'upload-cap-key-for-security-tests-01';
const CAP = 2;
const HEADER = 'id,first_name,image_url\n';
const rowLine = (id: string): string => `${id},Ada,${IMAGE}\n`;
const TEMPLATE = 'Hi {{first_name}}, welcome aboard.';

let harness: Harness;
let server: RunningServer;
beforeAll(async () => {
  harness = await startHarness({}, { TALKBATCH_API_KEYS: KEY, TALKBATCH_API_MAX_CONCURRENT_UPLOADS: String(CAP) });
  server = await startServer({ config: harness.config, redisUrl: harness.config.redisUrl as string, logger: silentLogger, host: '127.0.0.1', port: 0 });
});
afterAll(async () => {
  for (const request of openRequests) request.destroy();
  await server?.close();
  await harness?.close();
});

interface Answer {
  status: number;
  headers: IncomingMessage['headers'];
  body: string;
}

const openRequests = new Set<ClientRequest>();

/**
 * A CSV upload over a raw connection that sends `first` and then holds the body open (it says more is coming).
 * It asks for `100 Continue`, which Node sends as the request reaches the route (within the same turn of the
 * event loop as the slot is taken): `started` resolves then, or when the server answers without reading.
 */
function slowUpload(batchId: string, first: string, declaredBytes = 1_000_000): { request: ClientRequest; started: Promise<void>; answer: Promise<Answer> } {
  const url = new URL(`/v1/batches?${new URLSearchParams({ batchId, template: TEMPLATE }).toString()}`, server.url);
  const request = httpRequest(url, {
    method: 'POST',
    agent: false,
    headers: { authorization: `Bearer ${KEY}`, 'content-type': 'text/csv', 'content-length': String(declaredBytes), expect: '100-continue' },
  });
  openRequests.add(request);
  request.once('close', () => openRequests.delete(request));
  const answer = new Promise<Answer>((resolve, reject) => {
    request.on('error', reject);
    request.on('response', (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, headers: response.headers, body: Buffer.concat(chunks).toString('utf8') }));
      response.on('error', reject);
    });
  });
  const started = new Promise<void>((resolve) => {
    request.once('continue', () => {
      request.write(first);
      resolve();
    });
    request.once('response', () => resolve());
  });
  request.flushHeaders();
  return { request, started, answer };
}

const upload = (batchId: string, body: string) =>
  fetch(`${server.url}/v1/batches?${new URLSearchParams({ batchId, template: TEMPLATE }).toString()}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${KEY}`, 'content-type': 'text/csv' },
    body,
  });

const jobsOf = async (batchId: string) => (await harness.handle.queue.getJobs(['waiting', 'delayed', 'prioritized', 'active', 'completed', 'failed'])).filter((job) => job.data.batchId === batchId);

describe('concurrent uploads', () => {
  it('frees the slot of a refused manifest (422)', async () => {
    // More bad uploads one after another than there are slots: each one's slot came back.
    for (let attempt = 0; attempt < CAP + 2; attempt++) {
      const response = await upload('cap-invalid', `${HEADER}bad,Ada,not a url\n`);
      expect(response.status).toBe(422);
    }
    expect(await jobsOf('cap-invalid')).toHaveLength(0);
  });

  it('refuses one over the cap with 503 and Retry-After without reading it, and takes uploads again once one is aborted', async () => {
    const first = slowUpload('cap-first', HEADER);
    const second = slowUpload('cap-second', HEADER, Buffer.byteLength(HEADER + rowLine('s1')));
    await Promise.all([first.started, second.started]);
    // A manifest that is all there at once is turned away too.
    const probe = await upload('cap-probe', HEADER + rowLine('p1'));
    expect(probe.status).toBe(503);
    expect(probe.headers.get('retry-after')).toMatch(/^\d+$/);

    // The extra upload is answered while its body is still open: the server did not wait to read it.
    const extra = slowUpload('cap-extra', HEADER + rowLine('x1'));
    await extra.started;
    const refused = await extra.answer;
    expect(refused.status).toBe(503);
    expect(Number(refused.headers['retry-after'])).toBeGreaterThan(0);
    expect(JSON.parse(refused.body)).toMatchObject({ error: 'too_many_uploads', message: expect.stringMatching(/nothing was read or enqueued/) });
    extra.request.destroy();
    expect(await harness.handle.batches.exists('cap-extra')).toBe(false);
    expect(await jobsOf('cap-extra')).toHaveLength(0);
    expect(await harness.handle.batches.exists('cap-probe')).toBe(false);

    // A client that goes away mid-upload frees its slot.
    first.request.destroy();
    await first.answer.catch(() => undefined);
    await vi.waitFor(async () => expect((await upload('cap-after-abort', HEADER + rowLine('a1'))).status).toBe(201), { timeout: 10_000, interval: 50 });
    expect(await jobsOf('cap-after-abort')).toHaveLength(1);

    // The upload still in flight finishes normally once its body arrives.
    second.request.end(rowLine('s1'));
    const accepted = await second.answer;
    expect(accepted.status, accepted.body).toBe(201);
    expect(await jobsOf('cap-second')).toHaveLength(1);
    expect(await jobsOf('cap-first')).toHaveLength(0);

    // Every slot is free again: CAP uploads at once are taken.
    const again = await Promise.all(Array.from({ length: CAP }, (_, index) => upload(`cap-again-${index}`, HEADER + rowLine(`g${index}`))));
    expect(again.map((response) => response.status)).toEqual(Array.from({ length: CAP }, () => 201));
  });
});
