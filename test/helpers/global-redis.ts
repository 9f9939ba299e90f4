import type { TestProject } from 'vitest/node';
import { ensureRedis } from '../../src/cli/local-redis.js';
import { startRedisCluster } from './redis-topologies.js';

declare module 'vitest' {
  export interface ProvidedContext {
    redisUrl: string;
  }
}

/**
 * One real Redis per test run: REDIS_URL when set, else a private redis-server, else testcontainers
 * when a Docker daemon answers, else Debian's package installed as root. Tests isolate themselves
 * with their own queue names. TALKBATCH_TEST_REDIS=cluster runs the same tests on a three-primary Redis
 * Cluster the setup starts (`npm run test:cluster`).
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  if (process.env.TALKBATCH_TEST_REDIS === 'cluster') {
    const cluster = await startRedisCluster(3);
    console.warn(`tests run on a Redis Cluster: ${cluster.url}`);
    project.provide('redisUrl', cluster.url);
    return () => cluster.stop();
  }
  const redis = await ensureRedis({
    redisUrl: process.env.REDIS_URL,
    dockerHost: process.env.DOCKER_HOST,
    announce: (message) => console.warn(message),
  });
  project.provide('redisUrl', redis.url);
  return () => redis.stop();
}
