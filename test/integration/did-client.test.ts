import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { DidClient, DidConflictError, DidConnectionError, DidNotFoundError, DidPaymentRequiredError, DidTimeoutError } from '../../src/did/index.js';
import { startSimulator, type Simulator } from '../../src/simulator/server.js';
import { IMAGE } from '../helpers/harness.js';

let simulator: Simulator | undefined;
let client: DidClient | undefined;
afterEach(async () => {
  await client?.close();
  await simulator?.close();
  client = undefined;
  simulator = undefined;
});

const body = (n: number) => ({ source_url: IMAGE, script: { type: 'text' as const, input: `Hello number ${n}` }, user_data: `tag-${n}` });

describe('DidClient against the simulator', () => {
  it('creates, reads, lists with token paging, finds by user_data, deletes and reads credits', async () => {
    simulator = await startSimulator({ knobs: { renderMs: 100_000, credits: 500 } });
    client = new DidClient({ apiKey: simulator.apiKey, baseUrl: simulator.url });
    const created = [];
    for (let i = 0; i < 105; i += 1) created.push(await client.createTalk(body(i)));
    expect(created[0]?.status).toBe('created');

    const talk = await client.getTalk(created[3]?.id as string);
    expect(talk).toMatchObject({ id: created[3]?.id, user_data: 'tag-3' });
    expect(['created', 'started']).toContain(talk.status);

    const first = await client.listTalks({ limit: 100 });
    expect(first.talks).toHaveLength(100);
    expect(first.talks[0]?.user_data).toBe('tag-104');
    expect(first.token).toBeDefined();
    const second = await client.listTalks({ limit: 100, token: first.token as string });
    expect(second.talks.map((t) => t.user_data)).toEqual(['tag-4', 'tag-3', 'tag-2', 'tag-1', 'tag-0']);
    expect(second.token).toBeUndefined();

    expect((await client.findTalkByUserData('tag-1', { window: 1000 }))?.id).toBe(created[1]?.id);
    expect(await client.findTalkByUserData('tag-1', { window: 50 })).toBeUndefined();
    expect(await client.findTalkByUserData('nope', { window: 1000 })).toBeUndefined();

    await expect(client.deleteTalk(created[0]?.id as string)).rejects.toBeInstanceOf(DidConflictError);
    await expect(client.getTalk('tlk_missing')).rejects.toBeInstanceOf(DidNotFoundError);

    const credits = await client.getCredits();
    expect(credits.remaining).toBe(395);
  });

  it('maps 402 to DidPaymentRequiredError with D-ID kind', async () => {
    simulator = await startSimulator({ knobs: { credits: 0 } });
    client = new DidClient({ apiKey: simulator.apiKey, baseUrl: simulator.url });
    await expect(client.createTalk(body(1))).rejects.toMatchObject({ constructor: DidPaymentRequiredError, kind: 'InsufficientCreditsError' });
  });
});

describe('DidClient on the wire', () => {
  async function recordingServer(respond: (headers: IncomingHttpHeaders) => { status: number; body: string; delayMs?: number }) {
    const seen: IncomingHttpHeaders[] = [];
    const server = createServer((req, res) => {
      seen.push(req.headers);
      const answer = respond(req.headers);
      req.resume();
      setTimeout(() => {
        res.writeHead(answer.status, { 'content-type': 'application/json' });
        res.end(answer.body);
      }, answer.delayMs ?? 0);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    return { url, seen, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
  }

  it('sends the key as-is after Basic, and the ElevenLabs key as x-api-key-external on creates', async () => {
    const server = await recordingServer(() => ({ status: 201, body: JSON.stringify({ id: 'tlk_1', status: 'created' }) }));
    client = new DidClient({ apiKey: 'dXNlckBleGFtcGxlLmNvbQ:s3cret', baseUrl: server.url, elevenLabsApiKey: 'el-key-123' });
    await client.createTalk(body(1));
    expect(server.seen[0]?.authorization).toBe('Basic dXNlckBleGFtcGxlLmNvbQ:s3cret');
    expect(server.seen[0]?.['content-type']).toBe('application/json');
    expect(JSON.parse(server.seen[0]?.['x-api-key-external'] as string)).toEqual({ elevenlabs: 'el-key-123' });
    await server.close();
  });

  it('times out with DidTimeoutError and never retries a create', async () => {
    const server = await recordingServer(() => ({ status: 201, body: '{}', delayMs: 2_000 }));
    client = new DidClient({ apiKey: 'user:secret', baseUrl: server.url, timeoutMs: 200 });
    await expect(client.createTalk(body(1))).rejects.toBeInstanceOf(DidTimeoutError);
    expect(server.seen).toHaveLength(1);
    await server.close();
  });

  it('retries an idempotent GET after a 5xx, a little', async () => {
    let calls = 0;
    const server = await recordingServer(() => {
      calls += 1;
      return calls < 3 ? { status: 503, body: '{"message":"Service Unavailable"}' } : { status: 200, body: JSON.stringify({ id: 'tlk_1', status: 'done' }) };
    });
    client = new DidClient({ apiKey: 'user:secret', baseUrl: server.url });
    expect((await client.getTalk('tlk_1')).status).toBe('done');
    expect(calls).toBe(3);
    await server.close();
  });

  it('keeps the key out of connection error messages', async () => {
    client = new DidClient({ apiKey: 'user:verysecretkey', baseUrl: 'http://127.0.0.1:1', getRetries: 0 });
    const error = await client.getCredits().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DidConnectionError);
    expect((error as Error).message).not.toContain('verysecretkey');
  });
});
