import type { FastifyInstance } from 'fastify';
import { Cluster } from 'ioredis';
import type { Config } from '../config/index.js';
import { workerHeartbeatKey, type WorkerHealth } from '../worker/create-worker.js';
import type { RedisClient } from '../queue/connections.js';

export interface LiveWorker {
  id: string;
  host?: string;
  pid?: number;
  startedAt?: string;
  concurrency?: number;
}

const PING_TIMEOUT_MS = 2_000;

/** Redis glob characters in a literal part of a SCAN pattern. */
function globEscape(text: string): string {
  return text.replace(/[*?[\]\\]/g, (char) => `\\${char}`);
}

/** Workers whose heartbeat key has not expired, found by SCAN (a handful of keys, never KEYS). */
export async function liveWorkers(redis: RedisClient, prefix: string, queueName: string): Promise<LiveWorker[]> {
  const pattern = globEscape(workerHeartbeatKey(prefix, queueName, '')) + '*';
  const keys: string[] = [];
  // SCAN reads one node: on a Cluster, ask each primary (the hash tag puts every key on one of them).
  for (const node of redis instanceof Cluster ? redis.nodes('master') : [redis]) {
    let cursor = '0';
    do {
      const [next, found] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', 500);
      cursor = next;
      keys.push(...found);
    } while (cursor !== '0' && keys.length < 10_000);
  }
  if (keys.length === 0) return [];
  const values = await redis.mget(...keys);
  const workers: LiveWorker[] = [];
  for (const [index, value] of values.entries()) {
    if (value === null) continue;
    try {
      workers.push(JSON.parse(value) as LiveWorker);
    } catch {
      workers.push({ id: keys[index] ?? 'unknown' });
    }
  }
  return workers.sort((a, b) => a.id.localeCompare(b.id));
}

/** `GET /healthz` (the process answers) and `GET /readyz` (Redis answers; lists live workers). No auth: they reveal no secrets. */
export function registerHealth(
  app: FastifyInstance,
  deps: { config: Pick<Config, 'prefix' | 'queueName'>; redis: RedisClient; workerHealth?: () => WorkerHealth | undefined },
): void {
  app.get('/healthz', () => ({ status: 'ok' }));

  app.get('/readyz', async (_request, reply) => {
    // The worker in this process (serve): not ready while it has lost Redis or stopped running.
    const worker = deps.workerHealth?.();
    if (worker && (worker.redis === 'lost' || !worker.running)) {
      return reply.code(503).send({ status: 'unavailable', redis: worker.redis === 'lost' ? 'unreachable' : 'ok', worker, workers: [] });
    }
    try {
      await Promise.race([
        deps.redis.ping(),
        new Promise((_, reject) => setTimeout(() => reject(new Error('Redis did not answer in time')), PING_TIMEOUT_MS).unref()),
      ]);
    } catch {
      return reply.code(503).send({ status: 'unavailable', redis: 'unreachable', workers: [] });
    }
    const workers = await liveWorkers(deps.redis, deps.config.prefix, deps.config.queueName).catch(() => []);
    return reply.send({ status: 'ready', redis: 'ok', ...(worker ? { worker } : {}), workers });
  });
}
