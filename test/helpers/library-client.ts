import { randomUUID } from 'node:crypto';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach } from 'vitest';
import { createTalkbatch, startSimulator, type Simulator, type Talkbatch } from '../../src/index.js';
import { redisUrl } from './context.js';

export interface LibraryClients {
  /** A library client on a queue and output folder of its own, against a fresh simulator (render 100 ms). */
  start: () => Promise<Talkbatch>;
  /** The simulator of the client `start` made last. */
  simulator(): Simulator | undefined;
}

/** Library clients for a test file, each closed with its simulator after its test. */
export function libraryClientPerTest(label: string): LibraryClients {
  let simulator: Simulator | undefined;
  let client: Talkbatch | undefined;
  afterEach(async () => {
    await client?.close();
    await simulator?.close();
    client = simulator = undefined;
  });
  return {
    start: async () => {
      simulator = await startSimulator({ knobs: { renderMs: 100 } });
      client = await createTalkbatch({
        redisUrl: redisUrl(),
        didApiKey: simulator.apiKey,
        didApiUrl: simulator.url,
        queueName: `${label}-${randomUUID().slice(0, 8)}`,
        outDir: await mkdtemp(join(tmpdir(), `talkbatch-${label}-`)),
        pollInitialMs: 100,
        pollMaxMs: 300,
      });
      return client;
    },
    simulator: () => simulator,
  };
}
