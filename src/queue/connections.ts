import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';
import { AppError } from '../shared/errors.js';

/** No Redis could be reached (or started): the one-line fix is in the message. */
export class RedisUnavailableError extends AppError {
  readonly code = 'REDIS_UNAVAILABLE';
}

/** A connection to a single primary (optionally found through Sentinel) or to a Redis Cluster. */
export type RedisClient = Redis | Cluster;

/**
 * Where Redis is, parsed from the one URL talkbatch passes around (config builds it from REDIS_URL or
 * from REDIS_CLUSTER_NODES / REDIS_SENTINELS):
 * - `redis://`, `rediss://`, a unix socket path: one primary;
 * - `redis+cluster://[user:pass@]host:port,host:port` (`rediss+cluster://` for TLS): a Redis Cluster;
 * - `redis+sentinel://[user:pass@]host:port,host:port/<master name>[?sentinelPassword=...]`
 *   (`rediss+sentinel://` for TLS to the primary and the Sentinels): a primary behind Sentinel.
 */
export type RedisTarget =
  | { kind: 'single'; url: string }
  | { kind: 'cluster'; nodes: HostPort[]; tls: boolean; username?: string; password?: string }
  | { kind: 'sentinel'; sentinels: HostPort[]; name: string; tls: boolean; username?: string; password?: string; sentinelUsername?: string; sentinelPassword?: string };

export interface HostPort {
  host: string;
  port: number;
}

const TOPOLOGY_URL = /^(rediss?)\+(cluster|sentinel):\/\/(?:([^@/]*)@)?([^/?#]+)(?:\/([^?#]*))?(?:\?([^#]*))?$/;

/** Parses `host:port,host:port` (IPv6 as `[::1]:port`); throws a message without secrets on bad input. */
export function parseHostList(text: string, what: string): HostPort[] {
  const nodes = text
    .split(',')
    .map((part) => part.trim())
    .filter(Boolean)
    .map((part) => {
      const match = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(part);
      const port = Number(match?.[3]);
      const host = match?.[1] ?? match?.[2];
      if (!host || !Number.isInteger(port) || port < 1 || port > 65_535) throw new Error(`${what}: "${part}" is not host:port`);
      return { host, port };
    });
  if (nodes.length === 0) throw new Error(`${what}: no host:port given`);
  return nodes;
}

export function parseRedisTarget(url: string): RedisTarget {
  const match = TOPOLOGY_URL.exec(url);
  if (!match) return { kind: 'single', url };
  const [, scheme, kind, auth, hosts = '', path = '', query = ''] = match;
  const tls = scheme === 'rediss';
  const credentials: { username?: string; password?: string } = {};
  if (auth) {
    const colon = auth.indexOf(':');
    const username = decodeURIComponent(colon === -1 ? '' : auth.slice(0, colon));
    const password = decodeURIComponent(colon === -1 ? auth : auth.slice(colon + 1));
    if (username) credentials.username = username;
    if (password) credentials.password = password;
  }
  const nodes = parseHostList(hosts, kind === 'cluster' ? 'cluster nodes' : 'sentinels');
  if (kind === 'cluster') return { kind: 'cluster', nodes, tls, ...credentials };
  const name = decodeURIComponent(path);
  if (!name) throw new Error('a redis+sentinel:// URL needs the master name as its path (redis+sentinel://host:26379/mymaster)');
  const params = new URLSearchParams(query);
  const sentinelUsername = params.get('sentinelUsername') ?? undefined;
  const sentinelPassword = params.get('sentinelPassword') ?? undefined;
  return {
    kind: 'sentinel',
    sentinels: nodes,
    name,
    tls,
    ...credentials,
    ...(sentinelUsername ? { sentinelUsername } : {}),
    ...(sentinelPassword ? { sentinelPassword } : {}),
  };
}

/** Builds the topology URL config hands around (see RedisTarget); credentials are URL-encoded. */
export function topologyUrl(
  kind: 'cluster' | 'sentinel',
  nodes: string,
  options: { tls: boolean; username?: string | undefined; password?: string | undefined; name?: string | undefined; sentinelPassword?: string | undefined },
): string {
  const auth =
    options.username || options.password ? `${encodeURIComponent(options.username ?? '')}:${encodeURIComponent(options.password ?? '')}@` : '';
  const hosts = parseHostList(nodes, kind === 'cluster' ? 'REDIS_CLUSTER_NODES' : 'REDIS_SENTINELS')
    .map(({ host, port }) => (host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`))
    .join(',');
  const base = `${options.tls ? 'rediss' : 'redis'}+${kind}://${auth}${hosts}`;
  if (kind === 'cluster') return base;
  const query = options.sentinelPassword ? `?sentinelPassword=${encodeURIComponent(options.sentinelPassword)}` : '';
  return `${base}/${encodeURIComponent(options.name ?? '')}${query}`;
}

/** A primary that came back as a replica answers writes with READONLY: reconnect (Sentinel then names the new primary). */
function reconnectOnReadonly(error: Error): boolean | 1 | 2 {
  return error.message.startsWith('READONLY') ? 2 : false;
}

/**
 * Producers fail fast when Redis is down (no offline queue); workers wait for it to come back
 * (BullMQ needs `maxRetriesPerRequest: null` for its blocking calls).
 */
export function createRedis(url: string, role: 'producer' | 'worker', extra: RedisOptions = {}): RedisClient {
  const retryStrategy = (times: number): number => Math.min(times * 200, 2_000);
  const base: RedisOptions =
    role === 'producer'
      ? { enableOfflineQueue: false, maxRetriesPerRequest: 1, connectTimeout: 5_000, retryStrategy }
      : { maxRetriesPerRequest: null, enableReadyCheck: true, retryStrategy };
  const options: RedisOptions = { ...base, lazyConnect: true, reconnectOnError: reconnectOnReadonly, ...extra };
  const target = parseRedisTarget(url);
  if (target.kind === 'cluster') {
    const { enableOfflineQueue, lazyConnect, ...nodeOptions } = options;
    const clusterOptions: ClusterOptions = {
      lazyConnect: lazyConnect ?? true,
      enableOfflineQueue: enableOfflineQueue ?? true,
      enableReadyCheck: true,
      clusterRetryStrategy: retryStrategy,
      // Managed clusters (ElastiCache, MemoryDB) answer CLUSTER SLOTS with names their TLS certificates match.
      dnsLookup: (address, callback) => callback(null, address),
      redisOptions: {
        ...nodeOptions,
        ...(target.username ? { username: target.username } : {}),
        ...(target.password ? { password: target.password } : {}),
        ...(target.tls ? { tls: {} } : {}),
      },
    };
    return quiet(new Cluster(target.nodes, clusterOptions));
  }
  if (target.kind === 'sentinel') {
    return quiet(new Redis({
      ...options,
      sentinels: target.sentinels,
      name: target.name,
      ...(target.username ? { username: target.username } : {}),
      ...(target.password ? { password: target.password } : {}),
      ...(target.sentinelUsername ? { sentinelUsername: target.sentinelUsername } : {}),
      ...(target.sentinelPassword ? { sentinelPassword: target.sentinelPassword } : {}),
      ...(target.tls ? { tls: {}, sentinelTLS: {}, enableTLSForSentinelMode: true } : {}),
      // Not ioredis' failoverDetector: its disconnect on +switch-master can end a client that is between
      // reconnect attempts for good ("Connection is closed"), which the failover fault test caught.
      sentinelRetryStrategy: retryStrategy,
    }));
  }
  return quiet(url.startsWith('/') ? new Redis({ ...options, path: url }) : new Redis(url, options));
}

/** Connection errors reach callers through their commands, and workers log losing and regaining Redis once each. */
function quiet<T extends RedisClient>(client: T): T {
  client.on('error', () => {});
  return client;
}

/** Connects, or throws a clear error naming the URL without its password. */
export async function connectRedis(redis: RedisClient, url: string, timeoutMs = 5_000): Promise<void> {
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
  return url.replace(/\/\/([^@/]*)@/, '//[redacted]@').replace(/([?&]sentinelPassword=)[^&#]*/, '$1[redacted]');
}

/** Whether a client can serve commands now; a Cluster is usable once its slots are known. */
export function isRedisUsable(redis: RedisClient): boolean {
  return redis.status === 'ready' || (redis.status === 'connect' && redis instanceof Cluster);
}
