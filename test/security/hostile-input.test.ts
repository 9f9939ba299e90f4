import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import { validateManifest } from '../../src/manifest/index.js';
import { startServer, type RunningServer } from '../../src/server/index.js';
import { silentLogger } from '../../src/shared/logger.js';
import { runCli } from '../helpers/cli.js';
import { IMAGE, startHarness, type Harness } from '../helpers/harness.js';

/* The smaller holes of issue 14: each input here crashed, passed, or misled before. */

function file(name: string, content: string): string {
  const path = join(mkdtempSync(join(tmpdir(), 'tb-hostile-')), name);
  writeFileSync(path, content);
  return path;
}

const deep = (levels: number): string => `${'{"a":'.repeat(levels)}1${'}'.repeat(levels)}`;

describe('manifests', () => {
  it('a JSON cell nested 100,000 deep is an issue, not a stack overflow', async () => {
    const report = await validateManifest(file('deep.json', `[{"image_url": "${IMAGE}", "script": "Hello", "config": ${deep(100_000)}}]`));
    expect(report.issues.map((issue) => issue.message)).toEqual(['JSON nests deeper than 64 levels']);
  });

  it('a NUL in a text cell is refused, a tab or line break inside a script is not', async () => {
    const report = await validateManifest(file('nul.csv', `id,image_url,script\na,${IMAGE},"Hello\u0000 there"\nb,${IMAGE},"Hello\tthere,\nsee you"\n`));
    expect(report.issues.map((issue) => [issue.line, issue.column, issue.message])).toEqual([[2, 'script', 'cell holds the control character U+0000 (NUL) at position 6; remove it']]);
    expect(report.valid).toBe(1);
  });

  it('a "constructor" or "__proto__" header is a column like any other', async () => {
    const path = file('proto.csv', `id,image_url,constructor,__proto__\na,${IMAGE},Ana,Bo\n`);
    const records: unknown[] = [];
    const { openManifest } = await import('../../src/manifest/index.js');
    const manifest = await openManifest(path, { template: 'Hi {{constructor}} and {{__proto__}}' });
    try {
      for await (const record of manifest.records()) records.push(record);
    } finally {
      await manifest.close();
    }
    const row = (records[0] as { row?: { input: Record<string, string>; talk: { script: { input?: string } } } }).row;
    expect(row?.talk.script.input).toBe('Hi Ana and Bo');
    expect(row?.input.constructor).toBe('Ana');
    expect(Object.keys(row?.input ?? {})).toContain('constructor');
    expect(JSON.stringify(row?.input)).not.toContain('function');
  });

  it('a JSON array of arrays gets its own message, not "no image_url column"', async () => {
    const report = await validateManifest(file('grid.json', `[["image_url", "script"], ["${IMAGE}", "Hello"]]`));
    expect(report.issues.map((issue) => issue.message)).toEqual([expect.stringMatching(/^JSON is an array of arrays/)]);
  });
});

describe('config', () => {
  it.each([
    // Surrounding whitespace (a Windows .env file's trailing \r) is trimmed, as pasted keys are; inside the key it cannot be.
    ['DID_API_KEY', 'user:se\rcret'],
    ['DID_API_KEY', 'user:se\ncret'],
    ['DID_ELEVENLABS_API_KEY', 'abc\u0000def'],
    ['TALKBATCH_API_KEYS', 'a-long-enough-api\r-key-0001'],
  ])('%s with a control character is a config error that names the variable, not the value', (name, value) => {
    let message = '';
    try {
      loadConfig({ env: { [name]: value }, dotenvPath: false });
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toContain(name);
    expect(message).not.toContain('secret');
    expect(message).not.toContain('a-long-enough');
  });

  it('talkbatch worker stops with exit 2 on such a key instead of failing rows', async () => {
    const result = await runCli(['worker'], { DID_API_KEY: 'user:se\rcret', REDIS_URL: 'redis://127.0.0.1:1' });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('DID_API_KEY');
    expect(result.stderr).not.toContain('cret');
  });
});

describe('talkbatch retry', () => {
  let harness: Harness;
  beforeAll(async () => {
    harness = await startHarness();
  });
  afterAll(async () => {
    await harness.close();
  });

  it('of an unknown batch exits 2', async () => {
    const env = { REDIS_URL: harness.config.redisUrl, TALKBATCH_QUEUE: harness.config.queueName, TALKBATCH_LOG_LEVEL: 'silent' };
    const result = await runCli(['retry', 'nosuch', '--failed'], env);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('no batch "nosuch"');
  });
});

describe('the API', () => {
  const KEY = 'api-key-for-hostile-tests-0123456789';
  let harness: Harness;
  let server: RunningServer;
  beforeAll(async () => {
    harness = await startHarness({}, { TALKBATCH_API_KEYS: KEY });
    server = await startServer({ config: harness.config, redisUrl: harness.config.redisUrl as string, logger: silentLogger, host: '127.0.0.1', port: 0 });
  });
  afterAll(async () => {
    await server?.close();
    await harness?.close();
  });

  it('answers a body nested 100,000 deep with 422, not 500', async () => {
    const body = `{"rows": [{"image_url": "${IMAGE}", "script": "Hello", "config": ${deep(100_000)}}]}`;
    const response = await fetch(`${server.url}/v1/batches`, { method: 'POST', headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' }, body });
    expect(response.status).toBe(422);
    expect(await response.json()).toMatchObject({ error: 'too_deep', message: expect.stringContaining('JSON nests deeper than 64 levels') });
  });
});
