import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';

/** One redis-server (or Sentinel) process the tests started, on loopback, in a temp dir of its own. */
export interface ServerProcess {
  port: number;
  dir: string;
  child: ChildProcess;
  /** SIGKILL: no shutdown, no last write to disk. */
  kill(): Promise<void>;
}

export interface RedisCluster {
  /** `redis+cluster://` URL naming every primary. */
  url: string;
  nodes: ServerProcess[];
  stop(): Promise<void>;
}

export interface SentinelSet {
  /** `redis+sentinel://` URL naming the three Sentinels and the master name. */
  url: string;
  name: string;
  primary: ServerProcess;
  replica: ServerProcess;
  sentinels: ServerProcess[];
  /** The address the Sentinels name as primary now. */
  primaryPort(): Promise<number>;
  stop(): Promise<void>;
}

function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** A free port whose cluster-bus port (+10000) is free too. */
async function freePort(withBus = false): Promise<number> {
  for (;;) {
    const port = 20_000 + Math.floor(Math.random() * 30_000);
    if ((await portIsFree(port)) && (!withBus || (await portIsFree(port + 10_000)))) return port;
  }
}

async function untilPing(port: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const client = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  client.on('error', () => {});
  try {
    for (;;) {
      try {
        if (client.status !== 'ready') await client.connect();
        await client.ping();
        return;
      } catch (error) {
        client.disconnect();
        if (Date.now() > deadline) throw new Error(`redis on port ${port} did not answer: ${String(error)}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
  } finally {
    client.disconnect();
  }
}

async function startServer(args: string[], options: { sentinel?: string; port?: number; withBus?: boolean } = {}): Promise<ServerProcess> {
  const dir = await mkdtemp(join(tmpdir(), 'tb-topology-'));
  const port = options.port ?? (await freePort(options.withBus));
  let child: ChildProcess;
  if (options.sentinel !== undefined) {
    const file = join(dir, 'sentinel.conf');
    await writeFile(file, `port ${port}\nbind 127.0.0.1\ndir ${dir}\n${options.sentinel}`);
    child = spawn('redis-server', [file, '--sentinel'], { stdio: 'ignore' });
  } else {
    child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no', ...args], {
      stdio: 'ignore',
    });
  }
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await untilPing(port);
  return {
    port,
    dir,
    child,
    kill: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await exited;
      }
    },
  };
}

async function stopAll(servers: ServerProcess[]): Promise<void> {
  await Promise.all(servers.map((server) => server.kill()));
  await Promise.all(servers.map((server) => rm(server.dir, { recursive: true, force: true })));
}

/** Three primaries, slots spread by `redis-cli --cluster create`; resolves once every slot is served. */
export async function startRedisCluster(primaries = 3): Promise<RedisCluster> {
  const nodes: ServerProcess[] = [];
  for (let i = 0; i < primaries; i += 1) {
    nodes.push(await startServer(['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-node-timeout', '2000'], { withBus: true }));
  }
  const created = spawnSync('redis-cli', ['--cluster', 'create', ...nodes.map((node) => `127.0.0.1:${node.port}`), '--cluster-yes'], { encoding: 'utf8' });
  if (created.status !== 0) {
    await stopAll(nodes);
    throw new Error(`redis-cli --cluster create failed: ${created.stdout}${created.stderr}`);
  }
  const probe = new Redis({ port: (nodes[0] as ServerProcess).port, host: '127.0.0.1' });
  try {
    for (;;) {
      const info = await probe.cluster('INFO');
      if (info.includes('cluster_state:ok')) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  } finally {
    probe.disconnect();
  }
  return {
    url: `redis+cluster://${nodes.map((node) => `127.0.0.1:${node.port}`).join(',')}`,
    nodes,
    stop: () => stopAll(nodes),
  };
}

/**
 * A primary, one replica and three Sentinels (quorum 2) that promote the replica one second after the
 * primary stops answering.
 */
export async function startSentinelSet(name = 'talkbatch'): Promise<SentinelSet> {
  const primary = await startServer([]);
  const replica = await startServer(['--replicaof', '127.0.0.1', String(primary.port)]);
  const sentinels: ServerProcess[] = [];
  for (let i = 0; i < 3; i += 1) {
    sentinels.push(
      await startServer([], {
        sentinel: [
          `sentinel monitor ${name} 127.0.0.1 ${primary.port} 2`,
          `sentinel down-after-milliseconds ${name} 1000`,
          `sentinel failover-timeout ${name} 5000`,
          `sentinel parallel-syncs ${name} 1`,
          '',
        ].join('\n'),
      }),
    );
  }
  const sentinelClient = new Redis({ port: (sentinels[0] as ServerProcess).port, host: '127.0.0.1' });
  const primaryPort = async (): Promise<number> => {
    const [, port] = (await sentinelClient.call('SENTINEL', 'get-master-addr-by-name', name)) as [string, string];
    return Number(port);
  };
  // The replica must have synced, and every Sentinel must know the others, before a failover can work.
  const replicaClient = new Redis({ port: replica.port, host: '127.0.0.1' });
  for (;;) {
    const info = await replicaClient.info('replication');
    const known = await Promise.all(
      sentinels.map(async (sentinel) => {
        const client = new Redis({ port: sentinel.port, host: '127.0.0.1' });
        try {
          const master = (await client.call('SENTINEL', 'master', name)) as string[];
          const field = (key: string): string => master[master.indexOf(key) + 1] ?? '';
          return Number(field('num-other-sentinels')) >= 2 && Number(field('num-slaves')) >= 1;
        } finally {
          client.disconnect();
        }
      }),
    );
    if (info.includes('master_link_status:up') && known.every(Boolean)) break;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  replicaClient.disconnect();
  return {
    url: `redis+sentinel://${sentinels.map((sentinel) => `127.0.0.1:${sentinel.port}`).join(',')}/${name}`,
    name,
    primary,
    replica,
    sentinels,
    primaryPort,
    stop: async () => {
      sentinelClient.disconnect();
      await stopAll([...sentinels, replica, primary]);
    },
  };
}
