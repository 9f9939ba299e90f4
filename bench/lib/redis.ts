import { Redis } from 'ioredis';
import { startPrivateRedis, type PrivateRedis } from '../../src/cli/local-redis.js';

/** A private redis-server (AOF on, noeviction: as talkbatch runs it) plus a connection for the bench itself. */
export interface BenchRedis {
  url: string;
  server: PrivateRedis;
  /** The bench's own connection: its commands are left out of talkbatch's counts. */
  admin: Redis;
  flush(): Promise<void>;
  commandStats(): Promise<Map<string, number>>;
  stop(): Promise<void>;
}

/** `bind`: addresses to listen on besides loopback's (a network namespace lab's gateway); the URL stays 127.0.0.1's. */
export async function startBenchRedis(options: { bind?: readonly string[] } = {}): Promise<BenchRedis> {
  const server = await startPrivateRedis(options.bind ? { bind: ['127.0.0.1', ...options.bind] } : {});
  const admin = new Redis(server.url, { maxRetriesPerRequest: null });
  excludeFromCounts(admin);
  return {
    url: server.url,
    server,
    admin,
    flush: async () => {
      await admin.flushall();
    },
    commandStats: async () => parseCommandStats(await admin.info('commandstats')),
    stop: async () => {
      admin.disconnect();
      await server.stop();
    },
  };
}

/** `INFO commandstats` as calls per command. Commands run inside Lua scripts are counted too. */
export function parseCommandStats(info: string): Map<string, number> {
  const calls = new Map<string, number>();
  for (const match of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) {
    if (match[1] && match[2]) calls.set(match[1], Number(match[2]));
  }
  return calls;
}

export function diffStats(before: Map<string, number>, after: Map<string, number>): Map<string, number> {
  const diff = new Map<string, number>();
  for (const [name, count] of after) {
    const delta = count - (before.get(name) ?? 0);
    if (delta > 0) diff.set(name, delta);
  }
  return diff;
}

export function total(stats: Map<string, number>): number {
  let sum = 0;
  for (const value of stats.values()) sum += value;
  return sum;
}

// ---- commands as clients send them (one EVALSHA = one command) -----------------------------------

interface CountedCommand {
  name: string;
  [COUNTED]?: true;
}
const COUNTED = Symbol('counted');
const EXCLUDED = Symbol('excluded from counts');
let sent: Record<string, number> = {};
let benchSent: Record<string, number> = {};
let installed = false;

/** The bench's own connections: what they send is counted apart. */
export function excludeFromCounts(redis: Redis): void {
  (redis as unknown as Record<symbol, boolean>)[EXCLUDED] = true;
}

/**
 * Counts every command this process writes to Redis, by name, once each (ioredis may pass a command
 * through sendCommand again after a reconnect). talkbatch and BullMQ build all their connections from
 * this ioredis class (BullMQ duplicates ours), so the producer, the workers and the webhook server are
 * all seen.
 */
export function installCommandCounter(): void {
  if (installed) return;
  installed = true;
  const proto = Redis.prototype as unknown as { sendCommand: (this: Redis, command: CountedCommand, stream?: unknown) => unknown };
  const original = proto.sendCommand;
  proto.sendCommand = function (this: Redis, command: CountedCommand, stream?: unknown): unknown {
    if (command[COUNTED] !== true) {
      command[COUNTED] = true;
      const into = (this as unknown as Record<symbol, boolean>)[EXCLUDED] === true ? benchSent : sent;
      into[command.name] = (into[command.name] ?? 0) + 1;
    }
    return original.call(this, command, stream);
  };
}

export function resetCommandCounts(): void {
  sent = {};
  benchSent = {};
}

export function commandCounts(): { talkbatch: Map<string, number>; bench: Map<string, number> } {
  return { talkbatch: new Map(Object.entries(sent)), bench: new Map(Object.entries(benchSent)) };
}
