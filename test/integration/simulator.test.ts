import { readFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { CreateTalkResponse, Credits, Talk, TalkList, type TalkStatus } from '../../src/did/schemas.js';
import { startSimulator, type Simulator, type SimulatorKnobs } from '../../src/simulator/server.js';

const FIXTURE_VIDEO = readFileSync(fileURLToPath(new URL('../../fixtures/media/talk.mp4', import.meta.url)));

const VALID_BODY = {
  source_url: 'https://example.com/images/alice.jpg',
  script: { type: 'text', input: 'Hello from the simulator, nice to meet you.', provider: { type: 'microsoft', voice_id: 'en-US-JennyNeural' } },
};

const DidError = z.looseObject({ kind: z.string(), description: z.string(), details: z.record(z.string(), z.object({ message: z.string() })).optional() });
const GatewayError = z.looseObject({ message: z.string() });

let simulator: Simulator | undefined;

afterEach(async () => {
  await simulator?.close();
  simulator = undefined;
});

async function start(knobs: Partial<SimulatorKnobs> = {}): Promise<Simulator> {
  simulator = await startSimulator({ knobs: { renderMs: 200, ...knobs } });
  return simulator;
}

interface CallOptions {
  body?: unknown;
  /** Authorization header; default `Basic <key as-is>`, null sends none. */
  authorization?: string | null;
  headers?: Record<string, string>;
}

interface CallResult {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
  json: unknown;
}

async function call(sim: Simulator, method: 'GET' | 'POST' | 'DELETE', path: string, options: CallOptions = {}): Promise<CallResult> {
  const headers: Record<string, string> = { accept: 'application/json', ...options.headers };
  const authorization = options.authorization === undefined ? `Basic ${sim.apiKey}` : options.authorization;
  if (authorization !== null) headers.authorization = authorization;
  let body: string | undefined;
  if (options.body !== undefined) {
    body = typeof options.body === 'string' ? options.body : JSON.stringify(options.body);
    headers['content-type'] ??= 'application/json';
  }
  const response = await request(`${sim.url}${path}`, { method, headers, ...(body === undefined ? {} : { body }) });
  const text = await response.body.text();
  const isJson = String(response.headers['content-type'] ?? '').startsWith('application/json');
  return { status: response.statusCode, headers: response.headers, text, json: isJson ? JSON.parse(text) : undefined };
}

async function createTalk(sim: Simulator, extra: Record<string, unknown> = {}): Promise<string> {
  const response = await call(sim, 'POST', '/talks', { body: { ...VALID_BODY, ...extra } });
  expect(response.status).toBe(201);
  return CreateTalkResponse.parse(response.json).id;
}

async function getTalk(sim: Simulator, id: string): Promise<Talk> {
  const response = await call(sim, 'GET', `/talks/${id}`);
  expect(response.status).toBe(200);
  return Talk.parse(response.json);
}

async function waitForStatus(sim: Simulator, id: string, status: TalkStatus): Promise<Talk> {
  return vi.waitFor(
    async () => {
      const talk = await getTalk(sim, id);
      if (talk.status !== status) throw new Error(`talk ${id} is ${talk.status}, waiting for ${status}`);
      return talk;
    },
    { timeout: 5000, interval: 10 },
  );
}

async function download(url: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: IncomingHttpHeaders; bytes: Buffer }> {
  const response = await request(url, { headers });
  const bytes = Buffer.from(await response.body.arrayBuffer());
  return { status: response.statusCode, headers: response.headers, bytes };
}

describe('simulator auth', () => {
  it('accepts the key as-is and base64-encoded', async () => {
    const sim = await start();
    expect((await call(sim, 'GET', '/credits')).status).toBe(200);
    const encoded = Buffer.from(sim.apiKey).toString('base64');
    expect((await call(sim, 'GET', '/credits', { authorization: `Basic ${encoded}` })).status).toBe(200);
  });

  it('answers 401 AuthorizationError for a wrong or missing key', async () => {
    const sim = await start();
    for (const authorization of ['Basic someone:else', null]) {
      const response = await call(sim, 'GET', '/credits', { authorization });
      expect(response.status).toBe(401);
      expect(response.json).toEqual({ kind: 'AuthorizationError', description: 'user unauthenticated' });
    }
  });

  it('answers a malformed header like the AWS API gateway does', async () => {
    const sim = await start();
    const response = await call(sim, 'GET', '/talks', { authorization: sim.apiKey });
    expect(response.status).toBe(403);
    expect(GatewayError.parse(response.json).message).toMatch(/^Invalid key=value pair \(missing equal-sign\) in Authorization header/);
  });

  it('rate-limits per key with a Retry-After header, or none when the knob is null', async () => {
    const sim = await start({ rateLimitPerSecond: 2, retryAfterSeconds: 3 });
    const statuses = [];
    for (let index = 0; index < 3; index++) statuses.push(await call(sim, 'GET', '/credits'));
    expect(statuses.map((response) => response.status)).toEqual([200, 200, 429]);
    expect(statuses[2]?.headers['retry-after']).toBe('3');

    sim.setKnobs({ retryAfterSeconds: null });
    const throttled = await call(sim, 'GET', '/credits');
    expect(throttled.status).toBe(429);
    expect(throttled.headers['retry-after']).toBeUndefined();
  });
});

describe('simulator POST /talks validation', () => {
  const cases: Array<{ name: string; body: unknown; detail: string }> = [
    { name: 'a 2-character input', body: { ...VALID_BODY, script: { type: 'text', input: 'hi' } }, detail: 'body.script.input' },
    { name: 'an http webhook', body: { ...VALID_BODY, webhook: 'http://example.com/hook' }, detail: 'body.webhook' },
    { name: 'provider as a string', body: { ...VALID_BODY, script: { type: 'text', input: 'Hello there', provider: 'microsoft' } }, detail: 'body.script.provider' },
    // persist is a documented (deprecated) D-ID field since issue 12; an unknown key is still refused.
    { name: 'an extra top-level property', body: { ...VALID_BODY, persisted: true }, detail: 'body.persisted' },
    { name: 'no script', body: { source_url: VALID_BODY.source_url }, detail: 'body.script' },
  ];

  it.each(cases)('rejects $name with a ValidationError naming $detail', async ({ body, detail }) => {
    const sim = await start();
    const response = await call(sim, 'POST', '/talks', { body });
    expect(response.status).toBe(400);
    const error = DidError.parse(response.json);
    expect(error.kind).toBe('ValidationError');
    expect(Object.keys(error.details ?? {})).toContain(detail);
    expect(sim.stats().totalCreates).toBe(0);
  });

  it("answers \"'script' is required\" when the content type is not JSON, like D-ID", async () => {
    const sim = await start();
    const response = await call(sim, 'POST', '/talks', { body: JSON.stringify(VALID_BODY), headers: { 'content-type': 'text/plain' } });
    expect(response.status).toBe(400);
    expect(response.json).toEqual({ kind: 'ValidationError', description: 'Invalid request body', details: { 'body.script': { message: "'script' is required" } } });
  });

  it('answers BadRequestError for invalid JSON and 413 for a body over 1 MB', async () => {
    const sim = await start();
    const invalid = await call(sim, 'POST', '/talks', { body: '{"script":' });
    expect(invalid.status).toBe(400);
    expect(DidError.parse(invalid.json).kind).toBe('BadRequestError');
    const huge = await call(sim, 'POST', '/talks', { body: { ...VALID_BODY, name: 'x'.repeat(1024 * 1024) } });
    expect(huge.status).toBe(413);
  });

  it('takes http webhooks when allowHttpWebhooks is on', async () => {
    const sim = await start({ allowHttpWebhooks: true });
    await createTalk(sim, { webhook: 'http://127.0.0.1:9/hook' });
  });
});

describe('simulator talk lifecycle', () => {
  it('goes created -> started -> done, with pending_url while rendering and result_url when done', async () => {
    const sim = await start({ renderMs: 600 });
    const created = await call(sim, 'POST', '/talks', { body: { ...VALID_BODY, user_data: 'row-1' } });
    const createdBody = CreateTalkResponse.parse(created.json);
    expect(created.status).toBe(201);
    expect(createdBody).toMatchObject({ object: 'talk', status: 'created', created_by: 'sim|user' });
    expect(createdBody.id).toMatch(/^tlk_[A-Za-z0-9_-]{21}$/);

    const first = await getTalk(sim, createdBody.id);
    expect(first.status).toBe('created');
    expect(first.pending_url).toMatch(new RegExp(`^s3://d-id-talks-prod/.+/${createdBody.id}\\.mp4$`));
    expect(first.result_url).toBeUndefined();
    expect(first.user_data).toBe('row-1');

    const started = await waitForStatus(sim, createdBody.id, 'started');
    expect(started.pending_url).toBeDefined();
    // D-ID's started_at has no time zone; the simulator reproduces that.
    expect(started.started_at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}$/);

    const done = await waitForStatus(sim, createdBody.id, 'done');
    expect(done.pending_url).toBeUndefined();
    expect(done.result_url).toMatch(new RegExp(`^${sim.url}/media/${createdBody.id}\\.mp4\\?AWSAccessKeyId=SIMKEY&Expires=\\d+&Signature=`));
    expect(done).toMatchObject({ metadata: { resolution: [512, 512] } });
    expect(done.duration).toBeGreaterThanOrEqual(1);
  });

  it('ends talks in error or rejected with a D-ID error object', async () => {
    const sim = await start({ errorRate: 1 });
    const failed = await waitForStatus(sim, await createTalk(sim), 'error');
    expect(failed.error).toEqual({ kind: 'FaceError', description: 'face not detected' });
    sim.setKnobs({ errorRate: 0, rejectRate: 1 });
    const rejected = await waitForStatus(sim, await createTalk(sim), 'rejected');
    expect(rejected.error).toMatchObject({ kind: 'TextModerationError' });
  });

  it('answers 404 NotFoundError for an unknown talk and an unknown route', async () => {
    const sim = await start();
    const missing = await call(sim, 'GET', '/talks/tlk_doesnotexist');
    expect(missing.status).toBe(404);
    expect(missing.json).toEqual({ kind: 'NotFoundError', description: 'not found' });
    expect((await call(sim, 'GET', '/nowhere')).status).toBe(404);
  });

  it('answers 500 InternalServerError before doing anything when failureRate5xx hits', async () => {
    const sim = await start({ failureRate5xx: 1 });
    const response = await call(sim, 'POST', '/talks', { body: VALID_BODY });
    expect(response.status).toBe(500);
    expect(DidError.parse(response.json).kind).toBe('InternalServerError');
    expect(sim.stats().totalCreates).toBe(0);
  });
});

describe('simulator result downloads', () => {
  async function doneTalk(sim: Simulator): Promise<{ id: string; resultUrl: string }> {
    const id = await createTalk(sim);
    const talk = await waitForStatus(sim, id, 'done');
    return { id, resultUrl: talk.result_url ?? '' };
  }

  it('serves the fixture MP4 byte for byte', async () => {
    const sim = await start();
    const { resultUrl } = await doneTalk(sim);
    const response = await download(resultUrl);
    expect(response.status).toBe(200);
    expect(response.headers['content-type']).toBe('video/mp4');
    expect(response.headers['content-length']).toBe(String(FIXTURE_VIDEO.length));
    expect(response.headers['accept-ranges']).toBe('bytes');
    expect(response.bytes.equals(FIXTURE_VIDEO)).toBe(true);
    expect(sim.stats().downloads).toBe(1);
  });

  it('answers Range requests with 206, and 416 past the end', async () => {
    const sim = await start();
    const { resultUrl } = await doneTalk(sim);
    const tail = await download(resultUrl, { range: 'bytes=100-' });
    expect(tail.status).toBe(206);
    expect(tail.headers['content-range']).toBe(`bytes 100-${FIXTURE_VIDEO.length - 1}/${FIXTURE_VIDEO.length}`);
    expect(tail.bytes.equals(FIXTURE_VIDEO.subarray(100))).toBe(true);

    const slice = await download(resultUrl, { range: 'bytes=10-19' });
    expect(slice.status).toBe(206);
    expect(slice.bytes.equals(FIXTURE_VIDEO.subarray(10, 20))).toBe(true);

    const beyond = await download(resultUrl, { range: `bytes=${FIXTURE_VIDEO.length}-` });
    expect(beyond.status).toBe(416);
    expect(beyond.headers['content-range']).toBe(`bytes */${FIXTURE_VIDEO.length}`);
  });

  it('answers an expired link with S3 AccessDenied XML, and a re-read of the talk gives a working link', async () => {
    const sim = await start({ expireBeforeDownloadRate: 1 });
    const { id, resultUrl } = await doneTalk(sim);
    const expired = await download(resultUrl);
    expect(expired.status).toBe(403);
    expect(expired.headers['content-type']).toBe('application/xml');
    expect(expired.bytes.toString()).toMatch(/^<\?xml version="1.0" encoding="UTF-8"\?>\s*<Error><Code>AccessDenied<\/Code><Message>Request has expired<\/Message>/);

    sim.setKnobs({ expireBeforeDownloadRate: 0 });
    const fresh = (await getTalk(sim, id)).result_url ?? '';
    expect(fresh).not.toBe(resultUrl);
    const retried = await download(fresh);
    expect(retried.status).toBe(200);
    expect(retried.bytes.equals(FIXTURE_VIDEO)).toBe(true);
  });

  it('expires links after resultUrlTtlMs and refuses tampered ones', async () => {
    const sim = await start({ resultUrlTtlMs: 0 });
    const { resultUrl } = await doneTalk(sim);
    expect((await download(resultUrl)).status).toBe(403);
    const tampered = resultUrl.replace(/Expires=\d+/, 'Expires=9999999999');
    const refused = await download(tampered);
    expect(refused.status).toBe(403);
    expect(refused.bytes.toString()).toContain('<Code>AccessDenied</Code>');
    expect((await download(resultUrl.split('?')[0] ?? '')).status).toBe(403);
  });

  it('cuts a download off after half the bytes when truncateDownloadRate is 1', async () => {
    const sim = await start({ truncateDownloadRate: 1 });
    const { resultUrl } = await doneTalk(sim);
    const response = await request(resultUrl);
    const promised = Number(response.headers['content-length']);
    expect(promised).toBe(FIXTURE_VIDEO.length);
    let received = 0;
    let failure: unknown;
    try {
      for await (const chunk of response.body) received += (chunk as Buffer).length;
    } catch (error) {
      failure = error;
    }
    expect(failure).toBeInstanceOf(Error);
    expect(received).toBeLessThan(promised);
  });
});

describe('simulator limits', () => {
  it('answers 429 TooManyRequestsError above the concurrent-render cap, and takes creates again once renders finish', async () => {
    const sim = await start({ maxConcurrentRenders: 2, renderMs: 300 });
    const first = await createTalk(sim);
    await createTalk(sim);
    const refused = await call(sim, 'POST', '/talks', { body: VALID_BODY });
    expect(refused.status).toBe(429);
    expect(DidError.parse(refused.json).kind).toBe('TooManyRequestsError');
    expect(refused.headers['retry-after']).toBe('1');

    await waitForStatus(sim, first, 'done');
    await vi.waitFor(() => expect(sim.stats().rendersInFlight).toBe(0), { timeout: 5000, interval: 10 });
    await createTalk(sim);
    expect(sim.stats()).toMatchObject({ totalCreates: 3, maxConcurrentRendersSeen: 2 });
  });

  it('answers 402 InsufficientCreditsError when credits run out, and GET /credits reports them', async () => {
    const sim = await start({ credits: 1 });
    await createTalk(sim);
    const refused = await call(sim, 'POST', '/talks', { body: VALID_BODY });
    expect(refused.status).toBe(402);
    expect(refused.json).toEqual({ kind: 'InsufficientCreditsError', description: 'not enough credits' });
    const credits = Credits.parse((await call(sim, 'GET', '/credits')).json);
    expect(credits).toMatchObject({ remaining: 0, total: 1 });
    expect(credits.credits?.[0]).toMatchObject({ owner_id: 'sim|user', remaining: 0, total: 1 });
  });

  it('creates the talk before answering a gateway 504, so it is listed and counted', async () => {
    const sim = await start({ gateway504AfterCreateRate: 1 });
    const response = await call(sim, 'POST', '/talks', { body: { ...VALID_BODY, user_data: 'job-42#1' } });
    expect(response.status).toBe(504);
    expect(response.json).toEqual({ message: 'Endpoint request timed out' });

    const list = TalkList.parse((await call(sim, 'GET', '/talks')).json);
    expect(list.talks.map((talk) => talk.user_data)).toEqual(['job-42#1']);
    expect(sim.stats()).toMatchObject({ totalCreates: 1, createsByUserData: { 'job-42#1': 1 } });
  });
});

describe('simulator GET /talks and DELETE /talks/{id}', () => {
  it('lists newest first, paging with token until the last page has none', async () => {
    const sim = await start();
    for (let row = 1; row <= 5; row++) await createTalk(sim, { user_data: `row-${row}` });
    const seen: string[][] = [];
    let token: string | undefined;
    do {
      const query: string = token === undefined ? '' : `&token=${encodeURIComponent(token)}`;
      const page = TalkList.parse((await call(sim, 'GET', `/talks?limit=2${query}`)).json);
      seen.push(page.talks.map((talk) => talk.user_data ?? ''));
      token = page.token;
    } while (token !== undefined && seen.length < 10);
    expect(seen).toEqual([['row-5', 'row-4'], ['row-3', 'row-2'], ['row-1']]);
  });

  it('refuses to delete a rendering talk with 409 NotReadyError, then deletes it once done', async () => {
    const sim = await start();
    const id = await createTalk(sim);
    const refused = await call(sim, 'DELETE', `/talks/${id}`);
    expect(refused.status).toBe(409);
    expect(refused.json).toEqual({ kind: 'NotReadyError', description: 'talk is in process, try again later' });

    await waitForStatus(sim, id, 'done');
    const deleted = await call(sim, 'DELETE', `/talks/${id}`);
    expect(deleted.status).toBe(200);
    expect(Talk.parse(deleted.json)).toMatchObject({ id, status: 'done' });
    expect((await call(sim, 'GET', `/talks/${id}`)).status).toBe(404);
  });
});

describe('simulator webhooks', () => {
  it('POSTs the finished talk to the webhook URL', async () => {
    const received: Array<{ contentType: string | undefined; body: unknown; url: string | undefined }> = [];
    const receiver = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        received.push({ contentType: req.headers['content-type'], body: JSON.parse(Buffer.concat(chunks).toString('utf8')), url: req.url });
        res.writeHead(200).end();
      });
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = receiver.address() as AddressInfo;
      const sim = await start({ allowHttpWebhooks: true });
      const id = await createTalk(sim, { webhook: `http://127.0.0.1:${port}/hooks/did?token=abc`, user_data: 'row-9' });

      await vi.waitFor(() => expect(sim.stats().webhooksSent).toBe(1), { timeout: 5000, interval: 10 });
      expect(received).toHaveLength(1);
      expect(received[0]?.url).toBe('/hooks/did?token=abc');
      expect(received[0]?.contentType).toBe('application/json');
      expect(Talk.parse(received[0]?.body)).toMatchObject({ id, status: 'done', user_data: 'row-9' });
      expect(Talk.parse(received[0]?.body).result_url).toMatch(/\/media\/tlk_/);
    } finally {
      receiver.closeAllConnections();
      await new Promise<void>((resolve) => receiver.close(() => resolve()));
    }
  });
});

describe('simulator stats and admin endpoints', () => {
  it('reports user_data created more than once', async () => {
    const sim = await start();
    await createTalk(sim, { user_data: 'row-7' });
    await createTalk(sim, { user_data: 'row-7' });
    await createTalk(sim, { user_data: 'row-8' });
    await createTalk(sim);
    expect(sim.stats()).toMatchObject({
      totalCreates: 4,
      createsByUserData: { 'row-7': 2, 'row-8': 1, '': 1 },
      duplicateUserData: ['row-7'],
      responsesByStatus: { '201': 4 },
    });
    sim.resetStats();
    expect(sim.stats()).toMatchObject({ totalCreates: 0, duplicateUserData: [], totalRequests: 0 });
  });

  it('round-trips knobs over /__sim/knobs, with Infinity as null or "Infinity"', async () => {
    const sim = await start({ credits: 5 });
    const posted = await call(sim, 'POST', '/__sim/knobs', { body: { renderMs: 50, credits: 'Infinity', maxConcurrentRenders: null, retryAfterSeconds: null }, authorization: null });
    expect(posted.status).toBe(200);
    expect(sim.knobs()).toMatchObject({ renderMs: 50, credits: Infinity, maxConcurrentRenders: Infinity, retryAfterSeconds: null });

    const knobs = await call(sim, 'GET', '/__sim/knobs', { authorization: null });
    expect(knobs.json).toMatchObject({ renderMs: 50, credits: 'Infinity', maxConcurrentRenders: 'Infinity', retryAfterSeconds: null });

    for (const invalid of [{ errorRate: 2 }, { noSuchKnob: 1 }]) {
      const refused = await call(sim, 'POST', '/__sim/knobs', { body: invalid, authorization: null });
      expect(refused.status).toBe(400);
    }
    expect(sim.knobs().renderMs).toBe(50);

    await createTalk(sim, { user_data: 'row-1' });
    const stats = await call(sim, 'GET', '/__sim/stats', { authorization: null });
    expect(stats.json).toMatchObject({ totalCreates: 1, createsByUserData: { 'row-1': 1 }, totalRequests: 1 });
  });
});

describe('simulator speaks D-ID\'s published schema', () => {
  it('answers 201 to D-ID\'s own example body (booleans and numbers as strings) and keeps the body as received', async () => {
    const sim = await start();
    const seed = {
      source_url: 'https://d-id-public-bucket.s3.us-west-2.amazonaws.com/alice.jpg',
      script: { type: 'text', subtitles: 'false', provider: { type: 'microsoft', voice_id: 'Sara' }, input: 'Making videos is easy with D-ID', ssml: false },
      config: { fluent: 'false', pad_audio: '0.0' },
    };
    const created = await call(sim, 'POST', '/talks', { body: seed });
    expect(created.status).toBe(201);
    const { id } = CreateTalkResponse.parse(created.json);
    expect(sim.createRequest(id)).toEqual(seed);
    const talk = await call(sim, 'GET', `/talks/${id}`);
    expect(talk.json).toMatchObject({ config: { fluent: false, pad_audio: 0 }, script: { subtitles: false } });
  });

  it('lists talks with the fields real D-ID returns, user_data included', async () => {
    const sim = await start();
    const created = await call(sim, 'POST', '/talks', { body: { ...VALID_BODY, user_data: 'crm-42 [talkbatch b-r1]' } });
    const { id } = CreateTalkResponse.parse(created.json);
    const list = await call(sim, 'GET', '/talks?limit=10');
    const talk = TalkList.parse(list.json).talks.find((candidate) => candidate.id === id);
    expect(talk).toMatchObject({ user_data: 'crm-42 [talkbatch b-r1]', user_id: expect.any(String), driver_url: expect.any(String), subtitles: false, face: { size: 512 }, config: { result_format: '.mp4' } });
  });

  it('accepts the deprecated fields D-ID documents and refuses a misspelt one', async () => {
    const sim = await start();
    const body = { ...VALID_BODY, driver_url: 'bank://lively/', persist: true, face: { size: 512, top_left: [98, 119] }, config: { align_driver: true, motion_factor: 1 } };
    expect((await call(sim, 'POST', '/talks', { body })).status).toBe(201);
    const refused = await call(sim, 'POST', '/talks', { body: { ...VALID_BODY, config: { motion_factr: 1 } } });
    expect(refused.status).toBe(400);
    expect(DidError.parse(refused.json).details).toHaveProperty(['body.config.motion_factr']);
  });
});
