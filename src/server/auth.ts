import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

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
