import { createHash } from 'node:crypto';
import type { RedisClient } from './connections.js';

/** A Lua script run by its SHA (EVALSHA: one short command), loaded with EVAL when Redis does not know it yet. */
export class LuaScript {
  readonly #sha: string;
  constructor(readonly body: string) {
    this.#sha = createHash('sha1').update(body).digest('hex');
  }

  async run(redis: RedisClient, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown> {
    try {
      return await redis.evalsha(this.#sha, keys.length, ...keys, ...args);
    } catch (error) {
      if (!(error instanceof Error) || !error.message.startsWith('NOSCRIPT')) throw error;
      return redis.eval(this.body, keys.length, ...keys, ...args);
    }
  }
}
