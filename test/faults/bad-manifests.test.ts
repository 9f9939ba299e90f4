import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ManifestError, ManifestOptions } from '../../src/manifest/index.js';
import { enqueueManifest } from '../../src/queue/producer.js';
import { openQueue, type QueueHandle } from '../../src/queue/talk-queue.js';
import { testConfig } from '../helpers/context.js';

/*
 * Every bad manifest is refused by the producer itself, with the issues its `.expect.json` names, and
 * leaves the queue exactly as it was: no job, no batch record.
 */

const BAD = fileURLToPath(new URL('../../fixtures/manifests/bad/', import.meta.url));
const manifests = readdirSync(BAD).filter((name) => !name.endsWith('.expect.json')).sort();

interface Expectation {
  options?: ManifestOptions;
  issues: { line: number; column?: string; message: string }[];
}

let handle: QueueHandle;
beforeAll(async () => {
  const config = await testConfig();
  handle = await openQueue(config, config.redisUrl as string);
});
afterAll(async () => {
  await handle.queue.obliterate({ force: true });
  await handle.close();
});

describe('bad manifests enqueue nothing', () => {
  it('has at least 40 of them', () => expect(manifests.length).toBeGreaterThanOrEqual(40));

  it.each(manifests)('%s', async (name) => {
    const expectation = JSON.parse(readFileSync(join(BAD, `${name.replace(/\.[^.]+$/, '')}.expect.json`), 'utf8')) as Expectation;
    const batchId = `bad-${name.replace(/[^A-Za-z0-9]/g, '-')}`;
    const error = (await enqueueManifest(handle, join(BAD, name), { ...(expectation.options ?? {}), batchId }).then(
      () => undefined,
      (e: unknown) => e,
    )) as ManifestError | undefined;
    expect(error?.code).toBe('MANIFEST_INVALID');
    expect(error?.issues.map(({ line, column, message }) => ({ line, column, message }))).toEqual(
      expectation.issues.map(({ line, column, message }) => ({ line, column, message })),
    );
    expect(await handle.queue.count()).toBe(0);
    expect(await handle.batches.exists(batchId)).toBe(false);
  });
});
