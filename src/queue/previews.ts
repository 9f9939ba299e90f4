import { randomBytes } from 'node:crypto';
import type { RedisClient } from './connections.js';
import { queueKeys, type QueueKeys } from './keys.js';

/** What became of a done row's poster and GIF. */
export type PreviewOutcome =
  | { status: 'done'; poster: string; gif: string }
  | { status: 'failed' | 'skipped'; reason: string };

/**
 * Per batch: a hash rowKey -> PreviewOutcome (JSON) and a set of rows whose previews are still to be
 * made. Under the queue's hash-tagged prefix, like the batch ledger. A row is marked pending before its
 * preview job is added, so "nothing pending" really means every requested preview has an outcome.
 */
export class PreviewStore {
  readonly #redis: RedisClient;
  readonly #keys: QueueKeys;

  constructor(redis: RedisClient, prefix: string, queueName: string) {
    this.#redis = redis;
    this.#keys = queueKeys(prefix, queueName);
  }

  #key(batchId: string, part?: 'pending'): string {
    return this.#keys.previews(batchId, part);
  }

  async markPending(batchId: string, rowKey: string): Promise<void> {
    await this.#redis.sadd(this.#key(batchId, 'pending'), rowKey);
  }

  async finish(batchId: string, rowKey: string, outcome: PreviewOutcome): Promise<void> {
    await this.#redis
      .multi()
      .hset(this.#key(batchId), rowKey, JSON.stringify(outcome))
      .srem(this.#key(batchId, 'pending'), rowKey)
      .exec();
  }

  async pendingCount(batchId: string): Promise<number> {
    return this.#redis.scard(this.#key(batchId, 'pending'));
  }

  /** Outcomes for these rows, in order; undefined where none was recorded (yet). */
  async outcomes(batchId: string, rowKeys: readonly string[]): Promise<(PreviewOutcome | undefined)[]> {
    if (rowKeys.length === 0) return [];
    const values = await this.#redis.hmget(this.#key(batchId), ...rowKeys);
    return values.map((value) => (value ? (JSON.parse(value) as PreviewOutcome) : undefined));
  }
}

/** One published video: what its share page shows. Paths are plain file names inside the batch folder. */
export interface ShareRecord {
  token: string;
  batchId: string;
  rowKey: string;
  video: string;
  poster?: string | undefined;
  gif?: string | undefined;
  title?: string | undefined;
  message?: string | undefined;
  createdAt: string;
  revokedAt?: string | undefined;
}

/** Where `talkbatch serve` publishes share pages. */
export const SHARE_PATH = '/s';

export function shareUrlFor(baseUrl: string, token: string): string {
  return `${baseUrl.replace(/\/+$/, '')}${SHARE_PATH}/${token}`;
}

/** 32 random bytes: the token is the only secret guarding a share page, so it must not be guessable. */
const TOKEN_BYTES = 32;
export const SHARE_TOKEN_PATTERN = /^[A-Za-z0-9_-]{43}$/;

/**
 * Share links: `<base>:share:<token>` holds a ShareRecord (a hash), `<base>:shares:<batchId>` maps each
 * row to its token, so a row keeps one link across re-made previews and a batch's links can be revoked.
 * Revoking keeps the record with `revokedAt`, so the page can answer 410 Gone instead of 404.
 */
export class ShareStore {
  readonly #redis: RedisClient;
  readonly #keys: QueueKeys;

  constructor(redis: RedisClient, prefix: string, queueName: string) {
    this.#redis = redis;
    this.#keys = queueKeys(prefix, queueName);
  }

  #shareKey(token: string): string {
    return this.#keys.share(token);
  }

  #batchKey(batchId: string): string {
    return this.#keys.sharesOf(batchId);
  }

  /** The row's share token, made on first call; details are (re)written each time. */
  async publish(details: Omit<ShareRecord, 'token' | 'createdAt' | 'revokedAt'>): Promise<string> {
    const fresh = randomBytes(TOKEN_BYTES).toString('base64url');
    const won = await this.#redis.hsetnx(this.#batchKey(details.batchId), details.rowKey, fresh);
    const token = won === 1 ? fresh : ((await this.#redis.hget(this.#batchKey(details.batchId), details.rowKey)) ?? fresh);
    const fields: Record<string, string> = { batchId: details.batchId, rowKey: details.rowKey, video: details.video };
    for (const name of ['poster', 'gif', 'title', 'message'] as const) {
      const value = details[name];
      if (value) fields[name] = value;
    }
    const multi = this.#redis.multi();
    multi.hsetnx(this.#shareKey(token), 'createdAt', new Date().toISOString());
    multi.hset(this.#shareKey(token), fields);
    await multi.exec();
    return token;
  }

  async get(token: string): Promise<ShareRecord | undefined> {
    if (!SHARE_TOKEN_PATTERN.test(token)) return undefined;
    const fields = await this.#redis.hgetall(this.#shareKey(token));
    if (!fields.batchId || !fields.rowKey || !fields.video) return undefined;
    return {
      token,
      batchId: fields.batchId,
      rowKey: fields.rowKey,
      video: fields.video,
      poster: fields.poster,
      gif: fields.gif,
      title: fields.title,
      message: fields.message,
      createdAt: fields.createdAt ?? '',
      revokedAt: fields.revokedAt,
    };
  }

  /** Tokens for these rows, in order (undefined: none published). */
  async tokens(batchId: string, rowKeys: readonly string[]): Promise<(string | undefined)[]> {
    if (rowKeys.length === 0) return [];
    const values = await this.#redis.hmget(this.#batchKey(batchId), ...rowKeys);
    return values.map((value) => value ?? undefined);
  }

  /** Turns off the links of a batch, or of one row; returns how many live links were turned off. */
  async revoke(batchId: string, rowKey?: string): Promise<number> {
    let tokens: string[];
    if (rowKey !== undefined) {
      const token = await this.#redis.hget(this.#batchKey(batchId), rowKey);
      tokens = token ? [token] : [];
    } else {
      tokens = Object.values(await this.#redis.hgetall(this.#batchKey(batchId)));
    }
    const now = new Date().toISOString();
    let revoked = 0;
    for (const token of tokens) {
      // HSETNX: a link revoked earlier keeps its first revocation time and is not counted again.
      revoked += await this.#redis.hsetnx(this.#shareKey(token), 'revokedAt', now);
    }
    return revoked;
  }
}
