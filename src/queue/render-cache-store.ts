import type { RedisClient } from './connections.js';
import type { QueueKeys } from './keys.js';
import { LuaScript } from './lua-script.js';

/*
 * The render cache's index in Redis, under the queue's hash-tagged prefix (one Cluster slot with the ledger, so
 * the ledger's scripts can look an entry up and write one in the calls they make anyway):
 *
 *   <prefix>:<queue>:render-cache:<hash>         JSON RenderCacheEntry: a verified MP4 of that request
 *   <prefix>:<queue>:render-cache:<hash>:claim   hash {job, holder, since}: the row making the request now
 *   <prefix>:<queue>:render-cache:<hash>:live    the claimant's job id, expiring unless renewed while it works
 *   <prefix>:<queue>:render-cache-index          zset hash -> when its entry was written
 *   <prefix>:<queue>:render-cache-stats          hash of counters: hits, misses, bypassed, dropped
 *
 * Entries are never removed by BullMQ's job retention; `talkbatch cache prune` and stale files found in use drop
 * them. The claim outlives its `live` key on purpose: a row that takes over a lapsed claim learns whose it was,
 * and so whether a talk may already exist for the request (src/worker/render-cache.ts).
 */

/** A verified MP4 of a request, wherever it was made. */
export interface RenderCacheEntry {
  batchId: string;
  rowKey: string;
  talkId: string;
  /** Absolute path of the file in its batch's folder. */
  file: string;
  bytes: number;
  sha256: string;
  videoSeconds: number | null;
  /** Epoch milliseconds. */
  recordedAt: number;
}

/** Who claimed a request: enough for a row taking over a lapsed claim to look for the talk it may have paid for. */
export interface ClaimHolder {
  jobId: string;
  /** The user_data its talk carries (talkbatch's tag included), for reconciliation. */
  userData: string;
  /** Epoch milliseconds. */
  at: number;
}

export type RenderCacheAnswer =
  /** The row's batch was submitted with the cache off. */
  | { kind: 'off' }
  /** An entry exists; `entry` is undefined when it cannot be read (then it is dropped). */
  | { kind: 'hit'; entry: RenderCacheEntry | undefined; raw: string }
  /** This row holds the claim now; `previous` is the claimant whose claim lapsed, if any. */
  | { kind: 'claimed'; previous: ClaimHolder | undefined }
  /** Another live row is making the request; its claim started at `since` (epoch ms). */
  | { kind: 'wait'; since: number };

/** A look-up to run inside the script that takes the row (BatchStore.takeRow): no round trip of its own. */
export interface RenderCacheProbe {
  readonly hash: string;
  readonly jobId: string;
  readonly holder: ClaimHolder;
  readonly ttlMs: number;
  /** Filled in by the script that ran the probe. */
  answer?: RenderCacheAnswer;
}

/** An entry to write inside the script that marks the row done (BatchStore.markDone). */
export interface RenderCacheRecord {
  readonly hash: string;
  readonly jobId: string;
  readonly entry: RenderCacheEntry;
}

/** A claim nobody finishes or releases is forgotten after a day. */
const CLAIM_RECORD_MS = 24 * 3_600_000;

/*
 * Looks a request up and, when no entry exists and no live row claims it, claims it for `jobId`. Returns
 * {'off'}, {'hit', entry}, {'claimed', previous holder or ''} or {'wait', since}. A row that finds its own live
 * claim (it was handed back and came again) keeps it.
 */
export const PROBE_LUA = `
local function probeRenderCache(batchKey, entryKey, claimKey, liveKey, statsKey, jobId, holder, ttl, now)
  if redis.call('HGET', batchKey, 'cache') == 'off' then
    redis.call('HINCRBY', statsKey, 'bypassed', 1)
    return {'off'}
  end
  local entry = redis.call('GET', entryKey)
  if entry then return {'hit', entry} end
  local live = redis.call('GET', liveKey)
  if live == jobId then
    redis.call('PEXPIRE', liveKey, ttl)
    return {'claimed', ''}
  end
  if live then return {'wait', redis.call('HGET', claimKey, 'since') or '0'} end
  local owner = redis.call('HGET', claimKey, 'job')
  local previous = ''
  if owner ~= jobId then
    if owner then previous = redis.call('HGET', claimKey, 'holder') or '' end
    redis.call('HINCRBY', statsKey, 'misses', 1)
  end
  redis.call('HSET', claimKey, 'job', jobId, 'holder', holder, 'since', now)
  redis.call('PEXPIRE', claimKey, ${CLAIM_RECORD_MS})
  redis.call('SET', liveKey, jobId, 'PX', ttl)
  return {'claimed', previous}
end
`;

/* Writes an entry (a newer one replaces an older) and ends the writer's claim, if it still holds it. */
export const RECORD_LUA = `
local function recordRenderCache(entryKey, indexKey, claimKey, liveKey, hash, entry, jobId, now)
  redis.call('SET', entryKey, entry)
  redis.call('ZADD', indexKey, now, hash)
  if redis.call('HGET', claimKey, 'job') == jobId then redis.call('DEL', claimKey) end
  if redis.call('GET', liveKey) == jobId then redis.call('DEL', liveKey) end
end
`;

/** The keys a probe adds after the batch hash: entry, claim, live, stats. */
export function probeKeys(keys: QueueKeys, hash: string): string[] {
  return [keys.renderCache(hash), keys.renderCache(hash, 'claim'), keys.renderCache(hash, 'live'), keys.renderCacheStats()];
}

export function probeArgs(probe: RenderCacheProbe): (string | number)[] {
  return [probe.jobId, JSON.stringify(probe.holder), probe.ttlMs, Date.now()];
}

/** The keys a record needs: entry, index, claim, live. */
export function recordKeys(keys: QueueKeys, hash: string): string[] {
  return [keys.renderCache(hash), keys.renderCacheIndex(), keys.renderCache(hash, 'claim'), keys.renderCache(hash, 'live')];
}

export function recordArgs(record: RenderCacheRecord): (string | number)[] {
  return [record.hash, encodeEntry(record.entry), record.jobId, record.entry.recordedAt];
}

/** A probe's reply ({kind, extra}) as an answer. */
export function parseProbeReply(reply: readonly unknown[]): RenderCacheAnswer {
  const [kind, extra] = reply;
  const text = typeof extra === 'string' ? extra : extra instanceof Buffer ? extra.toString() : '';
  if (kind === 'off') return { kind: 'off' };
  if (kind === 'hit') return { kind: 'hit', entry: decodeEntry(text), raw: text };
  if (kind === 'wait') return { kind: 'wait', since: Number(text) || 0 };
  return { kind: 'claimed', previous: decodeHolder(text) };
}

export function encodeEntry(entry: RenderCacheEntry): string {
  return JSON.stringify(entry);
}

export function decodeEntry(text: string | null | undefined): RenderCacheEntry | undefined {
  if (!text) return undefined;
  try {
    const value = JSON.parse(text) as Partial<RenderCacheEntry>;
    if (
      typeof value.batchId !== 'string' || typeof value.rowKey !== 'string' || typeof value.talkId !== 'string' || typeof value.file !== 'string' ||
      typeof value.bytes !== 'number' || typeof value.sha256 !== 'string' || typeof value.recordedAt !== 'number'
    ) {
      return undefined;
    }
    return {
      batchId: value.batchId,
      rowKey: value.rowKey,
      talkId: value.talkId,
      file: value.file,
      bytes: value.bytes,
      sha256: value.sha256,
      videoSeconds: typeof value.videoSeconds === 'number' ? value.videoSeconds : null,
      recordedAt: value.recordedAt,
    };
  } catch {
    return undefined;
  }
}

function decodeHolder(text: string): ClaimHolder | undefined {
  if (!text) return undefined;
  try {
    const value = JSON.parse(text) as Partial<ClaimHolder>;
    return typeof value.jobId === 'string' && typeof value.userData === 'string' ? { jobId: value.jobId, userData: value.userData, at: Number(value.at) || 0 } : undefined;
  } catch {
    return undefined;
  }
}

/* The same look-up when no script runs anyway (a resumed row about to create; a stale entry just dropped). */
const LOOKUP = new LuaScript(`${PROBE_LUA}
return probeRenderCache(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
`);

/* Drops an entry only while it is the one that was found stale: a fresh entry written meanwhile stays. */
const DROP = new LuaScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[2] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HINCRBY', KEYS[3], 'dropped', 1)
return 1
`);

/* Renews the live keys of claims this process's rows hold. KEYS live keys; ARGV[1] ttl, then one job id per key. */
const RENEW = new LuaScript(`
local renewed = 0
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[i + 1] then
    redis.call('PEXPIRE', KEYS[i], ARGV[1])
    renewed = renewed + 1
  end
end
return renewed
`);

/* Ends a claim (its row failed for good), only while the row still holds it. KEYS claim, live; ARGV job id. */
const RELEASE = new LuaScript(`
if redis.call('HGET', KEYS[1], 'job') == ARGV[1] then redis.call('DEL', KEYS[1]) end
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) return 1 end
return 0
`);

export interface RenderCacheCounters {
  hits: number;
  misses: number;
  /** Rows of batches submitted with the cache off. */
  bypassed: number;
  /** Entries dropped because their file was gone or changed (in use or by prune). */
  dropped: number;
}

export interface RenderCacheListing {
  hash: string;
  /** Undefined when the index names an entry that no longer exists or cannot be read. */
  entry: RenderCacheEntry | undefined;
  raw: string | null;
}

const PAGE = 500;

export class RenderCacheStore {
  readonly #redis: RedisClient;
  readonly #keys: QueueKeys;

  constructor(redis: RedisClient, keys: QueueKeys) {
    this.#redis = redis;
    this.#keys = keys;
  }

  async lookup(batchId: string, probe: RenderCacheProbe): Promise<RenderCacheAnswer> {
    const reply = (await LOOKUP.run(this.#redis, [this.#keys.batch(batchId), ...probeKeys(this.#keys, probe.hash)], probeArgs(probe))) as unknown[];
    return parseProbeReply(reply);
  }

  /** Drops the entry `raw` of `hash` (its file is gone or changed); true when it was still there. */
  async drop(hash: string, raw: string): Promise<boolean> {
    const keys = [this.#keys.renderCache(hash), this.#keys.renderCacheIndex(), this.#keys.renderCacheStats()];
    return Number(await DROP.run(this.#redis, keys, [hash, raw])) === 1;
  }

  /** Drops an index member whose entry is gone (deleted by hand, or never written). */
  async forget(hash: string): Promise<void> {
    await this.#redis.zrem(this.#keys.renderCacheIndex(), hash);
  }

  async countHit(): Promise<void> {
    await this.#redis.hincrby(this.#keys.renderCacheStats(), 'hits', 1);
  }

  async renew(claims: ReadonlyArray<{ hash: string; jobId: string }>, ttlMs: number): Promise<number> {
    if (claims.length === 0) return 0;
    return Number(await RENEW.run(this.#redis, claims.map((claim) => this.#keys.renderCache(claim.hash, 'live')), [ttlMs, ...claims.map((claim) => claim.jobId)]));
  }

  async release(hash: string, jobId: string): Promise<boolean> {
    return Number(await RELEASE.run(this.#redis, [this.#keys.renderCache(hash, 'claim'), this.#keys.renderCache(hash, 'live')], [jobId])) === 1;
  }

  async counters(): Promise<RenderCacheCounters> {
    const hash = await this.#redis.hgetall(this.#keys.renderCacheStats());
    return { hits: Number(hash.hits ?? 0), misses: Number(hash.misses ?? 0), bypassed: Number(hash.bypassed ?? 0), dropped: Number(hash.dropped ?? 0) };
  }

  async size(): Promise<number> {
    return this.#redis.zcard(this.#keys.renderCacheIndex());
  }

  /** Every indexed entry, oldest first, a page at a time (read only: see pruneWhere to drop while walking). */
  async *entries(options: { recordedBefore?: number } = {}): AsyncGenerator<RenderCacheListing> {
    for (let offset = 0; ; offset += PAGE) {
      const page = await this.#page(offset, options.recordedBefore);
      yield* page;
      if (page.length < PAGE) return;
    }
  }

  /**
   * Walks every indexed entry (recorded before `recordedBefore`, if given) and drops those `drop` says to, each
   * only while it is still the entry that was judged. Returns how many were looked at and dropped.
   */
  async pruneWhere(drop: (listing: RenderCacheListing) => Promise<boolean>, options: { recordedBefore?: number } = {}): Promise<{ seen: number; dropped: number }> {
    let seen = 0;
    let dropped = 0;
    for (let offset = 0; ; ) {
      const page = await this.#page(offset, options.recordedBefore);
      let removedHere = 0;
      for (const listing of page) {
        seen += 1;
        if (!(await drop(listing))) continue;
        if (listing.raw === null) await this.forget(listing.hash);
        else if (!(await this.drop(listing.hash, listing.raw))) continue;
        removedHere += 1;
        dropped += 1;
      }
      if (page.length < PAGE) return { seen, dropped };
      // What was dropped from this page moved the rest of the index forward.
      offset += PAGE - removedHere;
    }
  }

  async #page(offset: number, recordedBefore: number | undefined): Promise<RenderCacheListing[]> {
    const max = recordedBefore === undefined ? '+inf' : `(${recordedBefore}`;
    const hashes = await this.#redis.zrangebyscore(this.#keys.renderCacheIndex(), '-inf', max, 'LIMIT', offset, PAGE);
    if (hashes.length === 0) return [];
    const raws = await this.#redis.mget(...hashes.map((hash) => this.#keys.renderCache(hash)));
    return hashes.map((hash, index) => {
      const raw = raws[index] ?? null;
      return { hash, entry: decodeEntry(raw), raw };
    });
  }
}
