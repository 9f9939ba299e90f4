import { describe, expect, it } from 'vitest';
import { REDIS_SERVER, RedisUnavailableError, ensureRedis } from '../../src/cli/local-redis.js';
import { ensureProgram, planProgram, ProgramUnavailableError, type HostFacts } from '../../src/shared/system-package.js';
import { CHROMIUM } from '../helpers/chromium.js';

/*
 * What a fresh machine does about a missing redis-server or Chromium, decided without removing either from this
 * one: the host facts and the lookup are given.
 */

const DEBIAN_ROOT: HostFacts = { platform: 'linux', isRoot: true, isDebian: true, hasAptGet: true };
const DEBIAN_USER: HostFacts = { ...DEBIAN_ROOT, isRoot: false };
const MACOS: HostFacts = { platform: 'darwin', isRoot: false, isDebian: false, hasAptGet: false };
const nothing = (): undefined => undefined;
const only =
  (present: string) =>
  (candidate: string): string | undefined =>
    candidate === present ? (present.startsWith('/') ? present : `/usr/bin/${present}`) : undefined;

describe('missing programs', () => {
  it('uses what is there: on PATH, at an absolute path, or where the Debian package puts it', () => {
    expect(planProgram(CHROMIUM, DEBIAN_USER, only('chromium'))).toEqual({ action: 'use', path: '/usr/bin/chromium' });
    expect(planProgram(CHROMIUM, MACOS, only('/Applications/Chromium.app/Contents/MacOS/Chromium'))).toEqual({
      action: 'use',
      path: '/Applications/Chromium.app/Contents/MacOS/Chromium',
    });
    expect(planProgram(CHROMIUM, DEBIAN_USER, only('/usr/bin/chromium'))).toEqual({ action: 'use', path: '/usr/bin/chromium' });
    expect(planProgram(REDIS_SERVER, DEBIAN_USER, only('redis-server'))).toEqual({ action: 'use', path: '/usr/bin/redis-server' });
  });

  it('as root on Debian/Ubuntu: says so, then apt-get update and install of the one package', () => {
    for (const [program, name] of [
      [CHROMIUM, 'chromium'],
      [REDIS_SERVER, 'redis-server'],
    ] as const) {
      const plan = planProgram(program, DEBIAN_ROOT, nothing);
      expect(plan).toMatchObject({ action: 'install', announcement: expect.stringContaining(`installing Debian's "${name}" package with apt-get`) as unknown });
      if (plan.action !== 'install') throw new Error('unreachable');
      expect(plan.commands).toEqual([
        ['apt-get', '-o', 'DPkg::Lock::Timeout=300', 'update', '-qq'],
        ['apt-get', '-o', 'DPkg::Lock::Timeout=300', 'install', '-y', '-qq', name],
      ]);
    }
  });

  it('otherwise fails with the one-line fix for Debian, macOS and Docker', () => {
    const asUser = planProgram(CHROMIUM, DEBIAN_USER, nothing);
    expect(asUser).toEqual({
      action: 'fail',
      message:
        'the review-page browser test needs chromium, which is not installed (not root, so not installed automatically). ' +
        'Debian/Ubuntu: sudo apt-get install -y chromium; macOS: brew install --cask chromium; ' +
        'Docker: docker run --rm -v "$PWD":/app -w /app node:20-bookworm sh -c "npm ci && npm test" (as root there, npm test installs it)',
    });
    const mac = planProgram(REDIS_SERVER, MACOS, nothing);
    expect(mac).toMatchObject({ action: 'fail' });
    if (mac.action !== 'fail') throw new Error('unreachable');
    expect(mac.message).toContain('macOS: brew install redis');
    expect(mac.message).toContain('Debian/Ubuntu: sudo apt-get install -y redis-server');
    expect(mac.message).toContain('Docker: docker run -d -p 6379:6379 redis:7 and set REDIS_URL=redis://127.0.0.1:6379');
    expect(planProgram(CHROMIUM, { ...DEBIAN_ROOT, hasAptGet: false }, nothing)).toMatchObject({ action: 'fail' });
  });

  it('ensureProgram runs nothing when the program is there, and throws the fixes when it cannot install', () => {
    const announced: string[] = [];
    expect(ensureProgram(CHROMIUM, (message) => announced.push(message), DEBIAN_ROOT, only('chromium'))).toBe('/usr/bin/chromium');
    expect(() => ensureProgram(CHROMIUM, (message) => announced.push(message), MACOS, nothing)).toThrow(ProgramUnavailableError);
    expect(announced).toEqual([]);
  });

  it('without redis-server, apt-get or testcontainers, ensureRedis names every fix, testcontainers included when Docker is there', async () => {
    const outcome = await ensureRedis({ dockerHost: 'unix:///nonexistent/docker.sock', system: { host: DEBIAN_USER, locate: nothing } }).catch((caught: unknown) => caught);
    // Should a Redis ever start here, it must not outlive the test.
    if (typeof outcome === 'object' && outcome !== null && 'stop' in outcome) await (outcome as { stop(): Promise<void> }).stop();
    expect(outcome).toBeInstanceOf(RedisUnavailableError);
    const message = (outcome as Error).message;
    expect(message).toContain('not root, so not installed automatically');
    expect(message).toContain('sudo apt-get install -y redis-server');
    expect(message).toContain('brew install redis');
    expect(message).toContain('REDIS_URL=');
    expect(message).toContain('"npm install testcontainers" lets talkbatch start Redis in a container');
  });
});
