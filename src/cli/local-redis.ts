import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RedisUnavailableError } from '../queue/connections.js';
import { ensureProgram, fixHint, hostFacts, locateProgram, planProgram, ProgramUnavailableError, type HostFacts, type SystemProgram } from '../shared/system-package.js';

/** No Redis could be found or started: exit code 2 with a one-line fix. */
export { RedisUnavailableError };

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
  /** This machine as seen by the install decision; given by tests that play a fresh machine. */
  system?: { host: HostFacts; locate: (candidate: string) => string | undefined };
}

/** redis-server as Debian packages it; the Docker fix runs the official image and points REDIS_URL at it. */
export const REDIS_SERVER: SystemProgram = {
  purpose: 'talkbatch',
  candidates: ['redis-server'],
  debianPackage: 'redis-server',
  debianPath: '/usr/bin/redis-server',
  fixes: {
    debian: 'sudo apt-get install -y redis-server',
    macos: 'brew install redis',
    docker: 'docker run -d -p 6379:6379 redis:7 and set REDIS_URL=redis://127.0.0.1:6379',
  },
};

export const REDIS_FIX_HINT = `Install Redis (${fixHint(REDIS_SERVER)}), or set REDIS_URL=redis://host:6379`;

const TESTCONTAINERS_HINT = 'Docker is available: "npm install testcontainers" lets talkbatch start Redis in a container.';

/**
 * A Redis to run on: REDIS_URL if given, else a private redis-server (temp dir, free port, noeviction,
 * AOF) stopped with the handle, else a testcontainers Redis when Docker runs and the optional
 * testcontainers package is installed, else Debian's package installed on the spot (root only).
 */
export async function ensureRedis(options: EnsureRedisOptions = {}): Promise<RedisHandle> {
  if (options.redisUrl) return { url: options.redisUrl, source: 'external', stop: async () => {} };

  const { host, locate } = options.system ?? { host: hostFacts(), locate: locateProgram };
  const plan = planProgram(REDIS_SERVER, host, locate);
  if (plan.action === 'use') return startPrivateRedis({ binary: plan.path });

  const dockerWanted = Boolean(options.dockerHost) || existsSync('/var/run/docker.sock');
  let dockerNote = '';
  if (dockerWanted) {
    const testcontainers = await loadTestcontainers();
    if (testcontainers) {
      const container = await startRedisContainer(testcontainers, options.announce).catch(() => undefined);
      if (container) return container;
    } else {
      dockerNote = ` ${TESTCONTAINERS_HINT}`;
    }
  }

  if (plan.action === 'install' && options.allowInstall !== false) {
    try {
      return await startPrivateRedis({ binary: ensureProgram(REDIS_SERVER, (message) => options.announce?.(message), host, locate) });
    } catch (error) {
      if (error instanceof ProgramUnavailableError) throw new RedisUnavailableError(`${error.message}${dockerNote}`);
      throw error;
    }
  }
  const reason = plan.action === 'fail' ? plan.message : `redis-server not found. ${fixHint(REDIS_SERVER)}`;
  throw new RedisUnavailableError(`${reason}. Or set REDIS_URL to a Redis you already run.${dockerNote}`);
}

export interface PrivateRedisOptions {
  binary?: string;
  /** Data directory; a fresh temp dir (removed on stop) when omitted. Reuse one to restart on the same AOF. */
  dir?: string;
  port?: number;
  /** Addresses to listen on; default loopback only. The URL returned always names 127.0.0.1. */
  bind?: readonly string[];
}

export interface PrivateRedis extends RedisHandle {
  port: number;
  dir: string;
  process: ChildProcess;
}

export async function startPrivateRedis(options: PrivateRedisOptions = {}): Promise<PrivateRedis> {
  const binary = options.binary ?? locateProgram('redis-server');
  if (!binary) throw new RedisUnavailableError(`redis-server not found. ${REDIS_FIX_HINT}`);
  const ownsDir = options.dir === undefined;
  const dir = options.dir ?? (await mkdtemp(join(tmpdir(), 'talkbatch-redis-')));

  for (let attempt = 0; ; attempt += 1) {
    const port = options.port ?? (await freePort());
    const args = [
      '--port', String(port),
      '--bind', ...(options.bind ?? ['127.0.0.1']),
      '--dir', dir,
      '--appendonly', 'yes',
      '--appendfsync', 'everysec',
      '--maxmemory-policy', 'noeviction',
      '--save', '',
      '--daemonize', 'no',
      // Protected mode refuses every client but loopback's: off only where the caller named other addresses to serve.
      '--protected-mode', options.bind?.some((address) => address !== '127.0.0.1' && address !== '::1') ? 'no' : 'yes',
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

/** The slice of testcontainers this module uses; the package is an optional peer dependency. */
interface ContainerBuilder {
  withCommand(command: string[]): ContainerBuilder;
  withExposedPorts(...ports: number[]): ContainerBuilder;
  withWaitStrategy(strategy: unknown): ContainerBuilder;
  start(): Promise<{ getHost(): string; getMappedPort(port: number): number; stop(): Promise<unknown> }>;
}
interface Testcontainers {
  GenericContainer: new (image: string) => ContainerBuilder;
  Wait: { forLogMessage(message: string): unknown };
}

/** testcontainers only when the user installed it: it pulls ssh2 and native add-ons talkbatch otherwise never needs. */
async function loadTestcontainers(): Promise<Testcontainers | undefined> {
  const name = 'testcontainers';
  try {
    return (await import(name)) as Testcontainers;
  } catch {
    return undefined;
  }
}

async function startRedisContainer(testcontainers: Testcontainers, announce?: (message: string) => void): Promise<RedisHandle> {
  const { GenericContainer, Wait } = testcontainers;
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
