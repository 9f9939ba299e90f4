import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AppError } from '../shared/errors.js';

/** No Redis could be found or started: exit code 2 with a one-line fix. */
export class RedisUnavailableError extends AppError {
  readonly code = 'REDIS_UNAVAILABLE';
}

export interface RedisHandle {
  url: string;
  /** Where the URL came from: the user's REDIS_URL, a private redis-server, or a container. */
  source: 'external' | 'private' | 'container';
  stop(): Promise<void>;
}

export interface EnsureRedisOptions {
  /** REDIS_URL from config: used as is when set. */
  redisUrl?: string | undefined;
  /** Whether a Docker daemon may be tried (DOCKER_HOST set or the default socket present). */
  dockerHost?: string | undefined;
  /** May we `apt-get install redis-server` when running as root on Debian/Ubuntu? */
  allowInstall?: boolean;
  /** Told about slow or surprising steps (an install, a container pull). */
  announce?: (message: string) => void;
}

export const REDIS_FIX_HINT =
  'Install Redis (Debian/Ubuntu: sudo apt-get install -y redis-server; macOS: brew install redis), start a Docker daemon, or set REDIS_URL=redis://host:6379';

/**
 * A Redis to run on: REDIS_URL if given, else a private redis-server (temp dir, free port, noeviction,
 * AOF) stopped with the handle, else a testcontainers Redis, else Debian's package installed on the spot.
 */
export async function ensureRedis(options: EnsureRedisOptions = {}): Promise<RedisHandle> {
  if (options.redisUrl) return { url: options.redisUrl, source: 'external', stop: async () => {} };

  let binary = findOnPath('redis-server');
  if (binary) return startPrivateRedis({ binary });

  if (options.dockerHost || existsSync('/var/run/docker.sock')) {
    const container = await startRedisContainer(options.announce).catch(() => undefined);
    if (container) return container;
  }

  if (options.allowInstall !== false && canInstallWithApt()) {
    options.announce?.('redis-server is not installed; installing Debian\'s "redis-server" package with apt-get (one time)...');
    installWithApt();
    binary = findOnPath('redis-server') ?? (existsSync('/usr/bin/redis-server') ? '/usr/bin/redis-server' : undefined);
    if (binary) return startPrivateRedis({ binary });
  }
  throw new RedisUnavailableError(`redis-server not found. ${REDIS_FIX_HINT}`);
}

export interface PrivateRedisOptions {
  binary?: string;
  /** Data directory; a fresh temp dir (removed on stop) when omitted. Reuse one to restart on the same AOF. */
  dir?: string;
  port?: number;
}

export interface PrivateRedis extends RedisHandle {
  port: number;
  dir: string;
  process: ChildProcess;
}

export async function startPrivateRedis(options: PrivateRedisOptions = {}): Promise<PrivateRedis> {
  const binary = options.binary ?? findOnPath('redis-server');
  if (!binary) throw new RedisUnavailableError(`redis-server not found. ${REDIS_FIX_HINT}`);
  const ownsDir = options.dir === undefined;
  const dir = options.dir ?? (await mkdtemp(join(tmpdir(), 'talkbatch-redis-')));

  for (let attempt = 0; ; attempt += 1) {
    const port = options.port ?? (await freePort());
    const args = [
      '--port', String(port),
      '--bind', '127.0.0.1',
      '--dir', dir,
      '--appendonly', 'yes',
      '--appendfsync', 'everysec',
      '--maxmemory-policy', 'noeviction',
      '--save', '',
      '--daemonize', 'no',
      '--protected-mode', 'yes',
      '--logfile', '',
    ];
    const child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      await waitForReady(child);
    } catch (error) {
      child.kill('SIGKILL');
      // Another process took the port between our probe and redis' bind: try a new one.
      if (options.port === undefined && attempt < 3) continue;
      if (ownsDir) await rm(dir, { recursive: true, force: true });
      throw error;
    }
    let stopped: Promise<void> | undefined;
    const stop = (): Promise<void> => {
      stopped ??= (async () => {
        if (child.exitCode === null && child.signalCode === null) {
          const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
          child.kill('SIGTERM');
          const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
          await exited;
          clearTimeout(timer);
        }
        if (ownsDir) await rm(dir, { recursive: true, force: true });
      })();
      return stopped;
    };
    return { url: `redis://127.0.0.1:${port}`, source: 'private', port, dir, process: child, stop };
  }
}

function waitForReady(child: ChildProcess): Promise<void> {
  return new Promise((resolve, reject) => {
    let output = '';
    const timer = setTimeout(() => done(new Error(`redis-server did not start within 10 s:\n${output.slice(-2000)}`)), 10_000);
    const onData = (chunk: Buffer): void => {
      output += chunk.toString();
      if (output.includes('Ready to accept connections')) done();
    };
    const onExit = (code: number | null): void => done(new Error(`redis-server exited with code ${code}:\n${output.slice(-2000)}`));
    function done(error?: Error): void {
      clearTimeout(timer);
      child.stdout?.off('data', onData);
      child.stderr?.off('data', onData);
      child.off('exit', onExit);
      // Keep draining so a chatty server never blocks on a full pipe.
      child.stdout?.resume();
      child.stderr?.resume();
      if (error) reject(error);
      else resolve();
    }
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', onExit);
  });
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

function findOnPath(command: string): string | undefined {
  const lookup = spawnSync('sh', ['-c', 'command -v "$0"', command], { encoding: 'utf8' });
  const found = lookup.status === 0 ? lookup.stdout.trim() : '';
  return found || undefined;
}

function canInstallWithApt(): boolean {
  return process.platform === 'linux' && process.getuid?.() === 0 && existsSync('/etc/debian_version') && Boolean(findOnPath('apt-get'));
}

function installWithApt(): void {
  for (const args of [['update', '-qq'], ['install', '-y', '-qq', 'redis-server']]) {
    const result = spawnSync('env', ['DEBIAN_FRONTEND=noninteractive', 'apt-get', ...args], { stdio: ['ignore', 'ignore', 'inherit'] });
    if (result.status !== 0) throw new RedisUnavailableError(`apt-get ${args.join(' ')} failed (exit ${result.status}). ${REDIS_FIX_HINT}`);
  }
}

async function startRedisContainer(announce?: (message: string) => void): Promise<RedisHandle | undefined> {
  const { GenericContainer, Wait } = await import('testcontainers');
  announce?.('redis-server is not installed; starting Redis in a Docker container (testcontainers)...');
  const container = await new GenericContainer('redis:7-alpine')
    .withCommand(['redis-server', '--appendonly', 'yes', '--maxmemory-policy', 'noeviction'])
    .withExposedPorts(6379)
    .withWaitStrategy(Wait.forLogMessage('Ready to accept connections'))
    .start();
  return {
    url: `redis://${container.getHost()}:${container.getMappedPort(6379)}`,
    source: 'container',
    stop: async () => {
      await container.stop();
    },
  };
}
