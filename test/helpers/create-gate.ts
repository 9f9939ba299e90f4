import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A pass-through in front of the simulator that can hold the answers to POST /talks: the talk is
 * created (and paid) at once, but the worker learns its id only when the test lets the answer go.
 */
export interface CreateGate {
  url: string;
  /** Holds the answers of creates from now on, at most `max` at a time (the others pass). */
  hold(max?: number): void;
  release(): void;
  /** user_data of creates whose answers are held now. */
  held(): string[];
  close(): Promise<void>;
}

export async function startCreateGate(target: string, options: { host?: string } = {}): Promise<CreateGate> {
  const host = options.host ?? '127.0.0.1';
  let holding = false;
  let holdMax = Infinity;
  let releaseAll: () => void = () => {};
  let released = Promise.resolve();
  const held = new Set<string>();
  const server: Server = createServer((request, response) => {
    void (async () => {
      const chunks: Buffer[] = [];
      for await (const chunk of request) chunks.push(chunk as Buffer);
      const body = Buffer.concat(chunks);
      const headers: Record<string, string> = {};
      for (const [name, value] of Object.entries(request.headers)) {
        if (typeof value === 'string' && !['host', 'connection', 'content-length', 'transfer-encoding'].includes(name)) headers[name] = value;
      }
      const upstream = await fetch(`${target}${request.url ?? '/'}`, {
        method: request.method ?? 'GET',
        headers,
        ...(body.length > 0 ? { body } : {}),
        redirect: 'manual',
      });
      const answer = Buffer.from(await upstream.arrayBuffer());
      const isCreate = request.method === 'POST' && /^\/talks\/?$/.test(request.url ?? '');
      if (isCreate && holding && held.size < holdMax && upstream.status < 300) {
        const userData = (JSON.parse(body.toString()) as { user_data?: string }).user_data ?? '';
        held.add(userData);
        await released;
        held.delete(userData);
      }
      const out: Record<string, string> = {};
      upstream.headers.forEach((value, name) => {
        if (!['content-length', 'content-encoding', 'transfer-encoding', 'connection'].includes(name)) out[name] = value;
      });
      response.writeHead(upstream.status, out).end(answer);
    })().catch((error: unknown) => response.writeHead(502).end(String(error)));
  });
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  return {
    url: `http://${host}:${(server.address() as AddressInfo).port}`,
    hold: (max = Infinity) => {
      holding = true;
      holdMax = max;
      released = new Promise<void>((resolve) => (releaseAll = resolve));
    },
    release: () => {
      holding = false;
      releaseAll();
    },
    held: () => [...held],
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        // A client on a cut-off host never closes its connection: end it rather than wait.
        server.closeAllConnections();
      }),
  };
}
