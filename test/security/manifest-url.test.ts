import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { validateManifest, type ManifestError } from '../../src/manifest/index.js';

/*
 * Manifest URLs: a server that never finishes is cut off by the deadline even after garbage collection, and a
 * redirect to an internal address is refused before it is followed.
 */

function collector(): () => void {
  const exposed = (globalThis as { gc?: () => void }).gc;
  if (typeof exposed === 'function') return exposed;
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

let server: Server;
let internal: Server;
let internalHits = 0;
let base: string;
let internalPort: number;

beforeAll(async () => {
  internal = createServer((_request, response) => {
    internalHits += 1;
    response.writeHead(200, { 'content-type': 'text/csv' }).end('id,image_url\n');
  });
  await new Promise<void>((resolve) => internal.listen(0, '0.0.0.0', resolve));
  internalPort = (internal.address() as AddressInfo).port;
  server = createServer((request, response) => {
    if (request.url === '/slow') {
      response.writeHead(200, { 'content-type': 'text/csv' });
      response.write('id,image_url\n');
      return;
    }
    if (request.url === '/to-zero') return void response.writeHead(302, { location: `http://0.0.0.0:${internalPort}/secret.csv` }).end();
    if (request.url === '/to-metadata') return void response.writeHead(302, { location: 'http://169.254.169.254/latest/meta-data/' }).end();
    response.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  internal.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await new Promise<void>((resolve) => internal.close(() => resolve()));
});

async function issueOf(promise: Promise<unknown>): Promise<string> {
  const error = (await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  )) as ManifestError | undefined;
  expect(error?.code).toBe('MANIFEST_INVALID');
  return error?.issues[0]?.message ?? '';
}

describe('manifest URLs', () => {
  it('a server that never finishes is cut off by the deadline, garbage collection or not', async () => {
    const gc = collector();
    let settled = false;
    const validation = issueOf(validateManifest(`${base}/slow`, { source: { timeoutMs: 400, outboundAllow: ['127.0.0.1'] } })).finally(() => {
      settled = true;
    });
    while (!settled) {
      gc();
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    expect(await validation).toBe('download did not finish within 400 ms');
  });

  it.each([
    ['0.0.0.0', '/to-zero'],
    ['169.254.169.254', '/to-metadata'],
  ])('a redirect to %s is refused before it is followed', async (address, path) => {
    const message = await issueOf(validateManifest(`${base}${path}`, { source: { timeoutMs: 10_000, outboundAllow: [`127.0.0.1:${new URL(base).port}`] } }));
    expect(message).toBe(`refused: ${address} is not a public address (an operator can open it with TALKBATCH_OUTBOUND_ALLOW)`);
    expect(internalHits).toBe(0);
  });

  it('this machine is refused unless the operator opened it', async () => {
    const message = await issueOf(validateManifest(`${base}/anything.csv`, { source: { timeoutMs: 10_000 } }));
    expect(message).toMatch(/^refused: 127\.0\.0\.1 is not a public address/);
  });
});
