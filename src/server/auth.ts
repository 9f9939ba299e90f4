import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { sendError } from './http-errors.js';

const SESSION_SECONDS = 12 * 60 * 60;

/**
 * Checks bearer API keys in constant time: both sides are hashed to the same length first, and every
 * configured key is compared, so neither the length nor the position of a match shows in the timing.
 */
export class ApiKeys {
  readonly #digests: readonly Buffer[];
  readonly #keys: readonly string[];

  constructor(keys: readonly string[]) {
    this.#digests = keys.map(digest);
    this.#keys = [...keys];
  }

  get configured(): boolean {
    return this.#digests.length > 0;
  }

  verify(candidate: string | undefined): boolean {
    if (candidate === undefined || candidate === '') return false;
    const given = digest(candidate);
    let match = false;
    for (const known of this.#digests) match = timingSafeEqual(given, known) || match;
    return match;
  }

  /**
   * A new cookie value for a verified key: a random nonce and an expiry, signed with the key. Random per login and
   * expiring; it never carries the key, and dies when the key is removed from TALKBATCH_API_KEYS (no key signs it
   * any more). Stateless, so every server process behind one address accepts it.
   */
  session(key: string, nowMs: number = Date.now()): string {
    const nonce = randomBytes(18).toString('base64url');
    const expires = Math.floor(nowMs / 1000) + SESSION_SECONDS;
    return `${nonce}.${expires}.${sessionMac(key, nonce, expires)}`;
  }

  verifySession(candidate: string | undefined, nowMs: number = Date.now()): boolean {
    return this.#sessionKey(candidate, nowMs) !== undefined;
  }

  /**
   * The CSRF token of a valid session (undefined otherwise): an HMAC of the session under the key that signed it.
   * A page that changes something carries it in its form; another site can neither read the page nor derive it.
   */
  csrfToken(session: string | undefined, nowMs: number = Date.now()): string | undefined {
    const signed = this.#sessionKey(session, nowMs);
    return signed && createHmac('sha256', signed.key).update(`talkbatch-csrf.${signed.nonce}.${signed.expires}`).digest('base64url');
  }

  /** Whether `token` is the CSRF token of `session`, itself valid now; in constant time. */
  verifyCsrf(session: string | undefined, token: string | undefined, nowMs: number = Date.now()): boolean {
    const expected = this.csrfToken(session, nowMs);
    if (expected === undefined || token === undefined) return false;
    const given = Buffer.from(token);
    const wanted = Buffer.from(expected);
    return given.length === wanted.length && timingSafeEqual(given, wanted);
  }

  /** The key that signed a valid, unexpired session; every key is tried, so timing does not tell which. */
  #sessionKey(candidate: string | undefined, nowMs: number): { key: string; nonce: string; expires: number } | undefined {
    if (candidate === undefined || candidate === '') return undefined;
    const match = /^([A-Za-z0-9_-]{24})\.(\d{1,12})\.([A-Za-z0-9_-]{43})$/.exec(candidate);
    if (!match) return undefined;
    const [, nonce = '', expiresText = '', mac = ''] = match;
    const expires = Number(expiresText);
    if (expires * 1000 <= nowMs) return undefined;
    const given = Buffer.from(mac);
    let signer: string | undefined;
    for (const key of this.#keys) {
      const expected = Buffer.from(sessionMac(key, nonce, expires));
      if (expected.length === given.length && timingSafeEqual(expected, given)) signer ??= key;
    }
    return signer === undefined ? undefined : { key: signer, nonce, expires };
  }
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}

function sessionMac(key: string, nonce: string, expires: number): string {
  return createHmac('sha256', key).update(`talkbatch-session.${nonce}.${expires}`).digest('base64url');
}

/** The token of `Authorization: Bearer <token>`, if that is what the header holds. */
export function bearerToken(header: string | undefined): string | undefined {
  if (!header) return undefined;
  const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
  return match?.[1];
}

/** One cookie's value from a Cookie header. */
export function cookieValue(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const index = part.indexOf('=');
    if (index < 0) continue;
    if (part.slice(0, index).trim() === name) return part.slice(index + 1).trim();
  }
  return undefined;
}

/**
 * An onRequest guard for pages a browser opens (dashboard, review pages): a browser cannot send a bearer
 * header, so `?key=<key>` once sets an HttpOnly session cookie (random, expiring, signed with the key) for
 * `cookiePath` and redirects to the same URL without the key. A bearer header works too.
 */
export function browserGuard(keys: ApiKeys, cookieName: string, cookiePath: string) {
  return async (request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply | undefined> => {
    const url = new URL(request.url, 'http://localhost');
    const queryKey = url.searchParams.get('key');
    if (queryKey !== null) {
      if (!keys.verify(queryKey)) return sendError(reply, 401, 'unauthorized', 'invalid key');
      url.searchParams.delete('key');
      const secure = request.protocol === 'https' ? '; Secure' : '';
      return reply
        .header('set-cookie', `${cookieName}=${keys.session(queryKey)}; Path=${cookiePath}; HttpOnly; SameSite=Strict; Max-Age=${SESSION_SECONDS}${secure}`)
        // Same-origin paths only: "//evil.example/" (from "/review/..//evil.example/?key=...") is a different site.
        .redirect(`/${url.pathname.replace(/^[/\\]+/, '')}${url.search}`, 303);
    }
    if (keys.verify(bearerToken(request.headers.authorization))) return undefined;
    if (keys.verifySession(cookieValue(request.headers.cookie, cookieName))) return undefined;
    const message = keys.configured
      ? `send "Authorization: Bearer <key>", or open ${cookiePath}?key=<key> once in a browser`
      : 'no API keys are configured (set TALKBATCH_API_KEYS)';
    return sendError(reply, 401, 'unauthorized', message);
  };
}
