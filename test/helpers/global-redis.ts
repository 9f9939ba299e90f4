import type { TestProject } from 'vitest/node';
import { ensureRedis } from '../../src/queue/local-redis.js';

declare module 'vitest' {
  export interface ProvidedContext {
    redisUrl: string;
  }
}

/**
 * One real Redis per test run: REDIS_URL when set, else a private redis-server, else testcontainers
 * when a Docker daemon answers, else Debian's package installed as root. Tests isolate themselves
 * with their own queue names.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const redis = await ensureRedis({
    redisUrl: process.env.REDIS_URL,
    dockerHost: process.env.DOCKER_HOST,
    announce: (message) => console.warn(message),
  });
  project.provide('redisUrl', redis.url);
  return () => redis.stop();
}
