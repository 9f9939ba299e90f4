import { Redis, type RedisOptions } from 'ioredis';
import { RedisUnavailableError } from './local-redis.js';

/**
 * Producers fail fast when Redis is down (no offline queue); workers wait for it to come back
 * (BullMQ needs `maxRetriesPerRequest: null` for its blocking calls).
 */
export function createRedis(url: string, role: 'producer' | 'worker', extra: RedisOptions = {}): Redis {
  const base: RedisOptions =
    role === 'producer'
      ? { enableOfflineQueue: false, maxRetriesPerRequest: 1, connectTimeout: 5_000, retryStrategy: (times) => Math.min(times * 200, 2_000) }
      : { maxRetriesPerRequest: null, enableReadyCheck: true, retryStrategy: (times) => Math.min(times * 200, 2_000) };
  const options = { ...base, lazyConnect: true, ...extra };
  return url.startsWith('/') ? new Redis({ ...options, path: url }) : new Redis(url, options);
}

/** Connects, or throws a clear error naming the URL without its password. */
export async function connectRedis(redis: Redis, url: string, timeoutMs = 5_000): Promise<void> {
  const timeout = new Promise<never>((_, reject) => {
    const timer = setTimeout(() => reject(new RedisUnavailableError(`cannot reach Redis at ${redactRedisUrl(url)} within ${timeoutMs} ms`)), timeoutMs);
    timer.unref();
  });
  try {
    if (redis.status === 'wait') await Promise.race([redis.connect(), timeout]);
    await Promise.race([redis.ping(), timeout]);
  } catch (error) {
    redis.disconnect();
    const reason = error instanceof Error ? error.message : String(error);
    throw new RedisUnavailableError(reason.includes('cannot reach Redis') ? reason : `cannot reach Redis at ${redactRedisUrl(url)}: ${reason}`, { cause: error });
  }
}

export function redactRedisUrl(url: string): string {
  return url.replace(/\/\/([^@/]*)@/, '//[redacted]@');
}
