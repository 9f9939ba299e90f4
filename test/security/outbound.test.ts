import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import { isPublicAddress, outboundFetch, OutboundRefusedError } from '../../src/net/outbound.js';

/** A server that counts the connections it receives, so a test can show a refused request sent nothing. */
interface CountingServer {
  server: Server;
  port: number;
  connections: number;
  requests: string[];
}

async function countingServer(handler: (path: string, respond: (status: number, headers: Record<string, string>, body?: string) => void) => void, host = '127.0.0.1'): Promise<CountingServer> {
  const state: CountingServer = { server: undefined as unknown as Server, port: 0, connections: 0, requests: [] };
  const server = createServer((request, response) => {
    state.requests.push(request.url ?? '');
    handler(request.url ?? '', (status, headers, body) => {
      response.writeHead(status, headers);
      response.end(body);
    });
  });
  server.on('connection', () => {
    state.connections += 1;
  });
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  state.server = server;
  state.port = (server.address() as AddressInfo).port;
  return state;
}

async function closeServer(server: Server): Promise<void> {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

async function refusal(promise: Promise<unknown>): Promise<OutboundRefusedError> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(OutboundRefusedError);
  return error as OutboundRefusedError;
}

/** The real collector: `--expose-gc` when the runner gave it, else switched on for this process. */
function collector(): () => void {
  const exposed = (globalThis as { gc?: () => void }).gc;
  if (typeof exposed === 'function') return exposed;
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

describe('isPublicAddress', () => {
  it.each([
    '127.0.0.1',
    '127.8.9.10',
    '0.0.0.0',
    '0.1.2.3',
    '10.1.2.3',
    '172.16.0.1',
    '192.168.1.1',
    '169.254.169.254',
    '100.64.0.1',
    '192.0.0.8',
    '192.0.2.1',
    '198.51.100.7',
    '203.0.113.9',
    '198.18.0.1',
    '224.0.0.1',
    '255.255.255.255',
    '240.0.0.1',
    '::',
    '::1',
    '[::1]',
    'fe80::1',
    'fe80::1%eth0',
    'fc00::1',
    'fd12:3456::1',
    'ff02::1',
    '::ffff:127.0.0.1',
    '::ffff:10.0.0.1',
    '64:ff9b::a00:1',
    '2001:db8::1',
    '2002:7f00:1::1',
    '2001:0:4136:e378:8000:63bf:3fff:fdd2',
    '100::1',
    'not an address',
    '',
  ])('%s is not public', (address) => {
    expect(isPublicAddress(address)).toBe(false);
  });

  it.each(['8.8.8.8', '1.1.1.1', '93.184.216.34', '2606:4700:4700::1111', '2a00:1450:4001:80e::200e', '::ffff:8.8.8.8'])('%s is public', (address) => {
    expect(isPublicAddress(address)).toBe(true);
  });
});

describe('outboundFetch', () => {
  let origin: CountingServer;
  let inside: CountingServer;
  let insideV6: CountingServer | undefined;

  beforeAll(async () => {
    inside = await countingServer((_path, respond) => respond(200, { 'content-type': 'text/plain' }, 'internal secret'));
    try {
      insideV6 = await countingServer((_path, respond) => respond(200, {}, 'internal v6'), '::1');
    } catch {
      insideV6 = undefined;
    }
    origin = await countingServer((path, respond) => {
      const target = decodeURIComponent(path.replace(/^\/to\//, ''));
      if (path.startsWith('/to/')) respond(302, { location: target });
      else if (path === '/loop') respond(302, { location: '/loop' });
      else respond(200, { 'content-type': 'text/plain' }, 'hello');
    });
  });

  afterAll(async () => {
    await closeServer(origin.server);
    await closeServer(inside.server);
    if (insideV6) await closeServer(insideV6.server);
  });

  const allowOrigin = () => ({ allow: [`127.0.0.1:${origin.port}`] });

  it('fetches an allowed host', async () => {
    const { response, finalUrl } = await outboundFetch(new URL(`http://127.0.0.1:${origin.port}/plain`), { timeoutMs: 10_000 }, allowOrigin());
    expect(response.status).toBe(200);
    expect(await response.text()).toBe('hello');
    expect(finalUrl.pathname).toBe('/plain');
  });

  it('refuses a loopback literal when nothing is allowed, sending nothing', async () => {
    const before = inside.connections;
    const error = await refusal(outboundFetch(new URL(`http://127.0.0.1:${inside.port}/`), { timeoutMs: 10_000 }, { allow: [] }));
    expect(error.reason).toBe('non-public-address');
    expect(inside.connections).toBe(before);
  });

  it('an allow entry with a port opens that port only', async () => {
    const before = inside.connections;
    await refusal(outboundFetch(new URL(`http://127.0.0.1:${inside.port}/`), { timeoutMs: 10_000 }, allowOrigin()));
    expect(inside.connections).toBe(before);
  });

  it('refuses other schemes', async () => {
    const error = await refusal(outboundFetch(new URL('file:///etc/passwd'), { timeoutMs: 10_000 }, { allow: [] }));
    expect(error.reason).toBe('scheme');
  });

  it.each([
    ['127.0.0.1 on another port', () => `http://127.0.0.1:${inside.port}/metadata`],
    ['127.0.0.2', () => `http://127.0.0.2:${inside.port}/`],
    ['0.0.0.0', () => `http://0.0.0.0:${inside.port}/`],
    ['169.254.169.254', () => 'http://169.254.169.254/latest/meta-data/'],
    ['[::1]', () => `http://[::1]:${insideV6?.port ?? inside.port}/`],
    ['[::ffff:127.0.0.1]', () => `http://[::ffff:127.0.0.1]:${inside.port}/`],
    ['10.0.0.1', () => 'http://10.0.0.1/'],
    ['localhost', () => `http://localhost:${inside.port}/`],
  ])('refuses a redirect hop to %s before following it', async (_label, target) => {
    const beforeV4 = inside.connections;
    const beforeV6 = insideV6?.connections ?? 0;
    const start = new URL(`http://127.0.0.1:${origin.port}/to/${encodeURIComponent(target())}`);
    const error = await refusal(outboundFetch(start, { timeoutMs: 10_000 }, allowOrigin()));
    expect(error.reason).toBe('non-public-address');
    expect(inside.connections).toBe(beforeV4);
    expect(insideV6?.connections ?? 0).toBe(beforeV6);
  });

  it('refuses a DNS name that resolves to loopback at connect time', async () => {
    const before = inside.connections;
    const error = await refusal(outboundFetch(new URL(`http://localhost:${inside.port}/`), { timeoutMs: 10_000 }, { allow: [] }));
    expect(error.reason).toBe('non-public-address');
    expect(inside.connections).toBe(before);
  });

  it('an allowed IP opens a name that resolves to it', async () => {
    const { response } = await outboundFetch(new URL(`http://localhost:${inside.port}/`), { timeoutMs: 10_000 }, { allow: ['127.0.0.1', '::1'] });
    expect(response.status).toBe(200);
    await response.body?.cancel();
  });

  it('an allowed name opens it', async () => {
    const { response } = await outboundFetch(new URL(`http://localhost:${inside.port}/`), { timeoutMs: 10_000 }, { allow: ['localhost'] });
    expect(await response.text()).toBe('internal secret');
  });

  it('stops after maxRedirects', async () => {
    const error = await refusal(outboundFetch(new URL(`http://127.0.0.1:${origin.port}/loop`), { timeoutMs: 10_000, maxRedirects: 3 }, allowOrigin()));
    expect(error.reason).toBe('too-many-redirects');
  });

  it('config TALKBATCH_OUTBOUND_ALLOW becomes the policy', async () => {
    const config = loadConfig({ env: { TALKBATCH_OUTBOUND_ALLOW: ` 127.0.0.1:${origin.port} , localhost ` }, dotenvPath: false });
    expect(config.outboundAllow).toEqual([`127.0.0.1:${origin.port}`, 'localhost']);
    const { response } = await outboundFetch(new URL(`http://127.0.0.1:${origin.port}/`), { timeoutMs: 10_000 }, { allow: config.outboundAllow });
    expect(response.status).toBe(200);
    await response.body?.cancel();
    expect(() => loadConfig({ env: { TALKBATCH_OUTBOUND_ALLOW: 'http://x/y' }, dotenvPath: false })).toThrow(/TALKBATCH_OUTBOUND_ALLOW/);
  });
});

describe('outboundFetch deadline', () => {
  let slow: Server;
  let port: number;

  beforeAll(async () => {
    // Sends headers and one byte, then nothing: only a total deadline ends this.
    slow = createServer((request, response) => {
      response.writeHead(200, { 'content-type': 'text/csv' });
      response.write('a');
      if (request.url === '/silent') response.socket?.pause();
    });
    await new Promise<void>((resolve) => slow.listen(0, '127.0.0.1', resolve));
    port = (slow.address() as AddressInfo).port;
  });

  afterAll(async () => {
    await closeServer(slow);
  });

  it('fires after garbage collection, while the body is still being read', async () => {
    const gc = collector();
    const { response } = await outboundFetch(new URL(`http://127.0.0.1:${port}/`), { timeoutMs: 300 }, { allow: ['127.0.0.1'] });
    const reading = (async () => {
      for await (const _chunk of response.body ?? []) {
        // draining
      }
    })();
    const settled = reading.then(
      () => 'finished',
      (error: unknown) => (error as { name?: string }).name ?? String(error),
    );
    let outcome: string | undefined;
    void settled.then((value) => {
      outcome = value;
    });
    // Collect repeatedly while waiting: a weakly held timeout signal would be gone after the first pass.
    while (outcome === undefined) {
      gc();
      await new Promise((resolve) => setImmediate(resolve));
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(outcome).toBe('TimeoutError');
  });

  it('fires while waiting for headers', async () => {
    const gc = collector();
    const hung = createServer(() => undefined);
    await new Promise<void>((resolve) => hung.listen(0, '127.0.0.1', resolve));
    try {
      const attempt = outboundFetch(new URL(`http://127.0.0.1:${(hung.address() as AddressInfo).port}/`), { timeoutMs: 300 }, { allow: ['127.0.0.1'] });
      gc();
      const error = await attempt.then(
        () => undefined,
        (caught: unknown) => caught as { name?: string },
      );
      expect(error?.name).toBe('TimeoutError');
    } finally {
      await closeServer(hung);
    }
  });
});
