import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiKeys } from '../../src/server/auth.js';
import { startServer, type RunningServer } from '../../src/server/index.js';
import { silentLogger } from '../../src/shared/logger.js';
import { startHarness, type Harness } from '../helpers/harness.js';

/* Browser sessions, redirects after `?key=` and what /review/ serves. */

const KEY = 'review-key-for-security-tests-0123';
const OTHER = 'another-key-for-security-tests-456';

let harness: Harness;
let server: RunningServer;
beforeAll(async () => {
  harness = await startHarness({}, { TALKBATCH_API_KEYS: KEY });
  server = await startServer({ config: harness.config, redisUrl: harness.config.redisUrl as string, logger: silentLogger, host: '127.0.0.1', port: 0 });
});
afterAll(async () => {
  await server?.close();
  await harness?.close();
});

const get = (path: string, headers: Record<string, string> = {}) => fetch(`${server.url}${path}`, { headers, redirect: 'manual' });

function cookieOf(response: Response): string {
  return (response.headers.get('set-cookie') ?? '').split(';')[0] ?? '';
}

describe('?key= login', () => {
  it.each(['/review//%2fevil.example/', '/review/..%2f/evil.example', '/review/%2f%2fevil.example/'])('redirects %s to a path on this server only', async (path) => {
    const response = await get(`${path}?key=${KEY}`);
    expect(response.status).toBe(303);
    const location = response.headers.get('location') ?? '';
    expect(location).toMatch(/^\/(?![/\\])/);
    expect(new URL(location, 'http://talkbatch.local').host).toBe('talkbatch.local');
  });

  it('gives a different, expiring session per login', async () => {
    const first = await get(`/review/?key=${KEY}`);
    const second = await get(`/review/?key=${KEY}`);
    expect(cookieOf(first)).not.toBe(cookieOf(second));
    expect(first.headers.get('set-cookie')).toMatch(/Max-Age=\d+/);
    expect(cookieOf(first)).not.toContain(KEY);
    expect((await get('/review/', { cookie: cookieOf(first) })).status).toBe(200);
  });
});

describe('sessions', () => {
  it('expire, and die with their key', () => {
    const keys = new ApiKeys([KEY, OTHER]);
    const now = Date.parse('2026-12-01T10:00:00Z');
    const session = keys.session(KEY, now);
    expect(keys.verifySession(session, now)).toBe(true);
    expect(keys.verifySession(session, now + 13 * 3600_000)).toBe(false);
    expect(new ApiKeys([OTHER]).verifySession(session, now)).toBe(false);
    // A session cannot be made longer by editing its expiry.
    const [nonce, expires, mac] = session.split('.');
    expect(keys.verifySession(`${nonce}.${Number(expires) + 86_400}.${mac}`, now)).toBe(false);
  });
});

describe('CSRF tokens', () => {
  it('belong to one session, and expire and die with it', () => {
    const keys = new ApiKeys([KEY, OTHER]);
    const now = Date.parse('2026-12-01T10:00:00Z');
    const session = keys.session(OTHER, now);
    const token = keys.csrfToken(session, now) as string;
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(keys.verifyCsrf(session, token, now)).toBe(true);
    // Another session's token, a forged session, an expired one, or a removed key: refused.
    expect(keys.verifyCsrf(keys.session(OTHER, now), token, now)).toBe(false);
    expect(keys.csrfToken('forged.123.abc', now)).toBeUndefined();
    expect(keys.verifyCsrf(session, token, now + 13 * 3600_000)).toBe(false);
    expect(new ApiKeys([KEY]).verifyCsrf(session, token, now)).toBe(false);
    expect(keys.verifyCsrf(session, undefined, now)).toBe(false);
    expect(keys.verifyCsrf(session, `${token.slice(0, -1)}A`, now)).toBe(token.endsWith('A'));
  });
});

describe('/review/ files', () => {
  it('serves regular files of the batch, not symlinks that lead out of it', async () => {
    const batchDir = join(harness.config.outDir, 'linked');
    mkdirSync(batchDir, { recursive: true });
    await harness.handle.batches.create('linked', 'test');
    writeFileSync(join(batchDir, 'own.mp4'), 'own video');
    mkdirSync(join(harness.config.outDir, 'other'), { recursive: true });
    writeFileSync(join(harness.config.outDir, 'other', 'theirs.mp4'), 'someone else');
    symlinkSync('/etc/passwd', join(batchDir, 'passwd.mp4'));
    symlinkSync(join(harness.config.outDir, 'other', 'theirs.mp4'), join(batchDir, 'theirs.mp4'));
    symlinkSync('/etc', join(batchDir, 'etc'));
    const auth = { authorization: `Bearer ${KEY}` };

    const own = await get('/review/linked/own.mp4', auth);
    expect(own.status).toBe(200);
    expect(await own.text()).toBe('own video');
    for (const path of ['/review/linked/passwd.mp4', '/review/linked/theirs.mp4', '/review/linked/etc/passwd']) {
      const response = await get(path, auth);
      expect(response.status, path).not.toBe(200);
      expect(await response.text()).not.toMatch(/root:|someone else/);
    }
  });
});
