import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { sendError } from './http-errors.js';

const SESSION_SECONDS = 12 * 60 * 60;

/**
 * Checks bearer API keys in constant time: both sides are hashed to the same length first, and every
 * configured key is compared, so neither the length nor the position of a match shows in the timing.
 */
export class ApiKeys {
  readonly #digests: readonly Buffer[];
  readonly #sessions: readonly Buffer[];

  constructor(keys: readonly string[]) {
    this.#digests = keys.map(digest);
    // A dashboard session cookie is derived from a key, so it never carries the key itself and dies with it.
    this.#sessions = keys.map((key) => Buffer.from(sessionFor(key)));
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

  /** The cookie value for a verified key. */
  session(key: string): string {
    return sessionFor(key);
  }

  verifySession(candidate: string | undefined): boolean {
    if (candidate === undefined || candidate === '') return false;
    const given = Buffer.from(candidate);
    let match = false;
    for (const known of this.#sessions) match = (given.length === known.length && timingSafeEqual(given, known)) || match;
    return match;
  }
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}

function sessionFor(key: string): string {
  return createHmac('sha256', key).update('talkbatch-dashboard-session').digest('base64url');
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
 * header, so `?key=<key>` once sets an HttpOnly cookie derived from the key (never the key itself) for
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
        .redirect(`${url.pathname}${url.search}`, 303);
    }
    if (keys.verify(bearerToken(request.headers.authorization))) return undefined;
    if (keys.verifySession(cookieValue(request.headers.cookie, cookieName))) return undefined;
    const message = keys.configured
      ? `send "Authorization: Bearer <key>", or open ${cookiePath}?key=<key> once in a browser`
      : 'no API keys are configured (set TALKBATCH_API_KEYS)';
    return sendError(reply, 401, 'unauthorized', message);
  };
}
