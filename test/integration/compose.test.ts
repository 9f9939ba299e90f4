import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { loadConfig } from '../../src/config/index.js';

// No Docker engine runs here (and the client has no compose plugin), so the stack is checked from its
// files: `yaml` (with `merge: true` for the `<<: *talkbatch` anchors) reads it as compose would.
const COMPOSE_TEXT = readFileSync(new URL('../../docker-compose.yml', import.meta.url), 'utf8');
const DOCKERFILE = readFileSync(new URL('../../Dockerfile', import.meta.url), 'utf8');

interface ComposeService {
  image?: string;
  command?: string | string[];
  volumes?: (string | { target?: string; source?: string })[];
  healthcheck?: { test?: string | string[]; disable?: boolean };
  depends_on?: string[] | Record<string, { condition?: string }>;
  profiles?: string[];
  stop_grace_period?: string;
}
interface ComposeFile {
  services: Record<string, ComposeService>;
  volumes?: Record<string, unknown>;
}

const compose = parse(COMPOSE_TEXT, { merge: true }) as ComposeFile;

function service(name: string): ComposeService {
  const found = compose.services[name];
  if (!found) throw new Error(`docker-compose.yml has no "${name}" service`);
  return found;
}

function commandWords(command: ComposeService['command']): string[] {
  return Array.isArray(command) ? command : (command ?? '').split(/\s+/).filter(Boolean);
}

/** `--name value` from a redis-server command line. */
function redisOption(words: string[], name: string): string | undefined {
  const index = words.indexOf(`--${name}`);
  return index >= 0 ? words[index + 1] : undefined;
}

/** Compose durations such as "45s", "1m30s", "500ms", in milliseconds. */
function durationMs(text: string): number {
  let total = 0;
  for (const [, amount, unit] of text.matchAll(/(\d+(?:\.\d+)?)(ms|h|m|s)/g)) {
    total += Number(amount) * { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 }[unit as 'ms' | 's' | 'm' | 'h'];
  }
  return total;
}

function dependsOnHealthy(consumer: ComposeService, provider: string): boolean {
  const dependencies = consumer.depends_on;
  return dependencies !== undefined && !Array.isArray(dependencies) && dependencies[provider]?.condition === 'service_healthy';
}

describe('docker-compose.yml', () => {
  it('runs Redis the way BullMQ needs: noeviction, AOF, a healthcheck and a volume', () => {
    const redis = service('redis');
    const words = commandWords(redis.command);
    expect(words[0]).toBe('redis-server');
    expect(redisOption(words, 'maxmemory-policy')).toBe('noeviction');
    expect(redisOption(words, 'appendonly')).toBe('yes');
    expect(redisOption(words, 'appendfsync')).toBe('everysec');
    expect(redis.healthcheck?.disable).not.toBe(true);
    expect(commandWords(redis.healthcheck?.test).join(' ')).toContain('redis-cli ping');
    // Redis writes its AOF under /data: a named volume keeps it across container restarts.
    const dataVolume = (redis.volumes ?? []).map((volume) => (typeof volume === 'string' ? volume : `${volume.source}:${volume.target}`)).find((volume) => volume.split(':')[1] === '/data');
    expect(dataVolume).toBeDefined();
    expect(Object.keys(compose.volumes ?? {})).toContain(dataVolume?.split(':')[0]);
  });

  it('starts workers and the server only once Redis is healthy', () => {
    expect(dependsOnHealthy(service('worker'), 'redis')).toBe(true);
    expect(dependsOnHealthy(service('server'), 'redis')).toBe(true);
  });

  it('gives a stopping worker more time than its own shutdown budget', () => {
    const defaults = loadConfig({ env: {}, dotenvPath: false });
    const grace = service('worker').stop_grace_period;
    expect(grace).toBeDefined();
    expect(durationMs(grace ?? '')).toBeGreaterThan(defaults.shutdownTimeoutMs);
  });

  it('keeps the D-ID simulator out of a plain "docker compose up" (demo profile only)', () => {
    expect(service('simulator').profiles).toEqual(['demo']);
    for (const name of ['redis', 'worker', 'server']) expect(service(name).profiles).toBeUndefined();
  });
});

describe('Dockerfile', () => {
  it('runs the final image as a non-root user', () => {
    const finalStage = DOCKERFILE.split(/^FROM\s/im).at(-1) ?? '';
    const users = [...finalStage.matchAll(/^USER\s+(\S+)/gim)].map((match) => match[1] ?? '');
    expect(users.length).toBeGreaterThan(0);
    const user = users.at(-1) ?? '';
    expect(user.split(':')[0]).not.toMatch(/^(root|0)$/);
  });
});
