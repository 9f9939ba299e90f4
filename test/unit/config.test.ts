import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import { ConfigError } from '../../src/shared/errors.js';

describe('loadConfig', () => {
  it('has working defaults', () => {
    const config = loadConfig({ env: {}, dotenvPath: false });
    expect(config.didApiUrl).toBe('https://api.d-id.com');
    expect(config.concurrency).toBe(4);
    expect(config.workerConcurrency).toBe(4);
    expect(config.prefix).toBe('{talkbatch}');
    expect(config.redisUrl).toBeUndefined();
  });

  it('lets flags win over the environment and the environment over .env', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tb-config-'));
    const dotenv = join(dir, '.env');
    await writeFile(dotenv, 'TALKBATCH_CONCURRENCY=3\nTALKBATCH_QUEUE=fromfile\nDID_API_KEY=abc:def\n');
    const config = loadConfig({ env: { TALKBATCH_CONCURRENCY: '7' }, dotenvPath: dotenv, overrides: { TALKBATCH_QUEUE: 'fromflag' } });
    expect(config.concurrency).toBe(7);
    expect(config.queueName).toBe('fromflag');
    expect(config.didApiKey).toBe('abc:def');
  });

  it('treats empty strings as unset', () => {
    expect(loadConfig({ env: { TALKBATCH_CONCURRENCY: '' }, dotenvPath: false }).concurrency).toBe(4);
  });

  it('names the variable and never prints the value', () => {
    const secret = 'topsecret-value-123';
    try {
      loadConfig({ env: { TALKBATCH_CONCURRENCY: 'lots', REDIS_URL: `http://${secret}` }, dotenvPath: false });
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(ConfigError);
      const message = (error as Error).message;
      expect(message).toContain('TALKBATCH_CONCURRENCY');
      expect(message).toContain('REDIS_URL');
      expect(message).not.toContain(secret);
      expect(message).not.toContain('lots');
    }
  });

  it('requires https for the public webhook URL', () => {
    expect(() => loadConfig({ env: { TALKBATCH_PUBLIC_URL: 'http://example.com' }, dotenvPath: false })).toThrow(/TALKBATCH_PUBLIC_URL.*https/);
  });

  it('rejects a poll ceiling below the first poll', () => {
    expect(() => loadConfig({ env: { TALKBATCH_POLL_INITIAL_MS: '2000', TALKBATCH_POLL_MAX_MS: '1000' }, dotenvPath: false })).toThrow(/TALKBATCH_POLL_MAX_MS/);
  });

  it('rejects a prefix with a colon', () => {
    expect(() => loadConfig({ env: { TALKBATCH_PREFIX: 'a:b' }, dotenvPath: false })).toThrow(/TALKBATCH_PREFIX/);
  });
});
