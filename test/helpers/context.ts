import { randomUUID } from 'node:crypto';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inject } from 'vitest';
import { loadConfig, type Config, type EnvName } from '../../src/config/index.js';

export function redisUrl(): string {
  return inject('redisUrl');
}

/** A config on the shared test Redis with a queue of its own, so test files can run side by side. */
export async function testConfig(overrides: Partial<Record<EnvName, string | number>> = {}): Promise<Config> {
  const outDir = await mkdtemp(join(tmpdir(), 'talkbatch-out-'));
  return loadConfig({
    env: {},
    dotenvPath: false,
    overrides: {
      REDIS_URL: redisUrl(),
      TALKBATCH_QUEUE: `test-${randomUUID().slice(0, 8)}`,
      TALKBATCH_OUT_DIR: outDir,
      TALKBATCH_POLL_INITIAL_MS: 100,
      TALKBATCH_POLL_MAX_MS: 300,
      TALKBATCH_LOG_LEVEL: 'silent',
      TALKBATCH_CREDIT_CHECK_MS: 1_000,
      // Encoding posters and GIFs costs CPU that tests of other things do not need; test/integration/previews.test.ts turns them on.
      TALKBATCH_PREVIEWS: 'false',
      ...overrides,
    },
  });
}
