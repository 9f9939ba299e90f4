import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import { parseRedisTarget, redactRedisUrl } from '../../src/queue/connections.js';
import { ConfigError } from '../../src/shared/errors.js';

describe('loadConfig', () => {
  it('has working defaults', () => {
    const config = loadConfig({ env: {}, dotenvPath: false });
    expect(config.didApiUrl).toBe('https://api.d-id.com');
    expect(config.concurrency).toBe(4);
    // Concurrency 4 plus the headroom for rows downloading or ready to create (render-slots.ts).
    expect(config.workerConcurrency).toBe(6);
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

  it('builds a Cluster or Sentinel address from the host lists, with credentials and TLS', () => {
    const cluster = loadConfig({ env: { REDIS_CLUSTER_NODES: 'a.example:7000, b.example:7001', REDIS_PASSWORD: 'p@ss:w/rd', REDIS_TLS: 'true' }, dotenvPath: false });
    expect(cluster.redisUrl).toBe('rediss+cluster://:p%40ss%3Aw%2Frd@a.example:7000,b.example:7001');
    expect(parseRedisTarget(cluster.redisUrl as string)).toEqual({
      kind: 'cluster',
      nodes: [{ host: 'a.example', port: 7000 }, { host: 'b.example', port: 7001 }],
      tls: true,
      password: 'p@ss:w/rd',
    });
    const sentinel = loadConfig({
      env: { REDIS_SENTINELS: '10.0.0.1:26379,[::1]:26380', REDIS_SENTINEL_NAME: 'mymaster', REDIS_USERNAME: 'app', REDIS_PASSWORD: 'pw', REDIS_SENTINEL_PASSWORD: 's pw' },
      dotenvPath: false,
    });
    expect(parseRedisTarget(sentinel.redisUrl as string)).toEqual({
      kind: 'sentinel',
      sentinels: [{ host: '10.0.0.1', port: 26379 }, { host: '::1', port: 26380 }],
      name: 'mymaster',
      tls: false,
      username: 'app',
      password: 'pw',
      sentinelPassword: 's pw',
    });
    expect(redactRedisUrl(sentinel.redisUrl as string)).not.toMatch(/pw/);
  });

  it('refuses mixed or incomplete Redis topologies, and a Cluster prefix without a hash tag, without printing secrets', () => {
    const attempt = (env: Record<string, string>) => () => loadConfig({ env, dotenvPath: false });
    expect(attempt({ REDIS_URL: 'redis://h:6379', REDIS_CLUSTER_NODES: 'h:7000' })).toThrow(/set only one/);
    expect(attempt({ REDIS_SENTINELS: 'h:26379' })).toThrow(/REDIS_SENTINEL_NAME/);
    expect(attempt({ REDIS_CLUSTER_NODES: 'h' })).toThrow(/REDIS_CLUSTER_NODES: "h" is not host:port/);
    expect(attempt({ REDIS_CLUSTER_NODES: 'h:7000', TALKBATCH_PREFIX: 'talkbatch' })).toThrow(/hash tag/);
    expect(attempt({ REDIS_URL: 'redis+sentinel://h:26379' })).toThrow(/master name/);
    try {
      loadConfig({ env: { REDIS_URL: 'redis+cluster://:hunter2-secret@nohost' }, dotenvPath: false });
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as Error).message).not.toContain('hunter2');
    }
  });
});

describe('D-ID key forms', () => {
  const keyOf = (env: Record<string, string>): string | undefined => loadConfig({ env, dotenvPath: false }).didApiKey;

  it('trims whitespace and a trailing newline, and removes a pasted "Basic " prefix', () => {
    expect(keyOf({ DID_API_KEY: '  dXNlckBleGFtcGxlLmNvbQ:s3cr3t\n' })).toBe('dXNlckBleGFtcGxlLmNvbQ:s3cr3t');
    expect(keyOf({ DID_API_KEY: 'Basic dXNlckBleGFtcGxlLmNvbQ:s3cr3t' })).toBe('dXNlckBleGFtcGxlLmNvbQ:s3cr3t');
    expect(keyOf({ DID_API_KEY: 'basic  Basic dXNlckBleGFtcGxlLmNvbQ:s3cr3t\r\n' })).toBe('dXNlckBleGFtcGxlLmNvbQ:s3cr3t');
  });

  it('builds the key from DID_API_USERNAME and DID_API_PASSWORD as D-ID shows them', () => {
    expect(keyOf({ DID_API_USERNAME: 'dXNlckBleGFtcGxlLmNvbQ ', DID_API_PASSWORD: ' s3cr3t\n' })).toBe('dXNlckBleGFtcGxlLmNvbQ:s3cr3t');
    expect(() => keyOf({ DID_API_USERNAME: 'dXNlckBleGFtcGxlLmNvbQ' })).toThrow(/DID_API_PASSWORD: required/);
    expect(() => keyOf({ DID_API_PASSWORD: 's3cr3t' })).toThrow(/DID_API_USERNAME: required/);
  });

  it('refuses a value no Authorization header can carry, naming the variable and never the value', () => {
    for (const [env, name] of [
      [{ DID_API_KEY: 'dXNlc:s3 cr3t' }, 'DID_API_KEY'],
      [{ DID_API_KEY: 'dXNlc:s3cr3t\nsecond-line' }, 'DID_API_KEY'],
      [{ DID_API_KEY: 'dXNlc:sécret' }, 'DID_API_KEY'],
      [{ DID_API_KEY: 'Basic ' }, 'DID_API_KEY'],
      [{ DID_API_USERNAME: 'us er', DID_API_PASSWORD: 's3cr3t' }, 'DID_API_USERNAME'],
      [{ DID_API_USERNAME: 'user', DID_API_PASSWORD: 's3cr\u00e9t' }, 'DID_API_PASSWORD'],
    ] as const) {
      let caught: unknown;
      try {
        keyOf(env);
      } catch (error) {
        caught = error;
      }
      expect(caught).toBeInstanceOf(ConfigError);
      expect((caught as Error).message).toContain(name);
      for (const value of Object.values(env)) if (value.trim().length > 6) expect((caught as Error).message).not.toContain(value.trim());
    }
  });
});
