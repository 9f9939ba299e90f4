import type { CreditReading } from '../did/billing.js';
import type { RedisClient } from './connections.js';
import type { BatchCreditLedger, ChargedTalk, CreditsSource } from './credits.js';
import { queueKeys, type BatchKeyPart, type QueueKeys } from './keys.js';
import { LuaScript } from './lua-script.js';
import { PROBE_LUA, RECORD_LUA, parseProbeReply, probeArgs, probeKeys, recordArgs, recordKeys, type RenderCacheProbe, type RenderCacheRecord } from './render-cache-store.js';

export interface BatchBudget {
  /** Talks this batch may create at most (each create is paid). */
  maxTalks?: number;
  /** Estimated seconds of video this batch may make at most. */
  maxVideoSeconds?: number;
}

export type BudgetVerdict = 'ok' | 'max-talks' | 'max-video-seconds';

/*
 * Reserve budget for one create, atomically across every worker. A row that already holds a
 * reservation (a retry, a resumed job) passes without counting twice.
 * KEYS[1] batch hash, KEYS[2] set of members that hold a reservation; ARGV[1] member, ARGV[2] seconds.
 */
const RESERVE_BUDGET = new LuaScript(`
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then return 1 end
local maxTalks = tonumber(redis.call('HGET', KEYS[1], 'maxTalks') or '')
local maxSeconds = tonumber(redis.call('HGET', KEYS[1], 'maxVideoSeconds') or '')
if maxTalks and redis.call('SCARD', KEYS[2]) >= maxTalks then return -1 end
local used = tonumber(redis.call('HGET', KEYS[1], 'videoSecondsReserved') or '0')
if maxSeconds and used + tonumber(ARGV[2]) > maxSeconds then return -2 end
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('HINCRBYFLOAT', KEYS[1], 'videoSecondsReserved', ARGV[2])
return 1
`);

const RELEASE_BUDGET = new LuaScript(`
if redis.call('SREM', KEYS[2], ARGV[1]) == 1 then
  redis.call('HINCRBYFLOAT', KEYS[1], 'videoSecondsReserved', -tonumber(ARGV[2]))
end
return 1
`);

/*
 * A worker takes a row: the row joins its batch's ledger if it is new there (a job another BullMQ
 * client added, docs/api.md), and is marked active. One round trip per row instead of two.
 * A row the ledger already has done is left alone: its job is a copy added after the finished one was
 * removed (see FinishedRow), and must not be made (paid for) again.
 * KEYS[1] rows zset, KEYS[2] active set, KEYS[3] batch hash, KEYS[4] done set; ARGV[1] row key, ARGV[2] line.
 * Returns 1 when the row was new to the batch, 2 when it is done already, else 0.
 */
const TAKE_ROW_LUA = `
local function takeRow()
  if redis.call('SISMEMBER', KEYS[4], ARGV[1]) == 1 then return 2 end
  local added = redis.call('ZADD', KEYS[1], 'NX', ARGV[2], ARGV[1])
  if added == 1 then redis.call('HDEL', KEYS[3], 'finishedAt') end
  redis.call('SADD', KEYS[2], ARGV[1])
  return added
end
`;
const TAKE_ROW = new LuaScript(`${TAKE_ROW_LUA}
return takeRow()
`);

/*
 * The same, plus the render cache's look-up of a fresh row's request (render-cache-store.ts), so a row that is not
 * in the cache costs no extra round trip. A row done already is not looked up.
 * KEYS[5..8] entry, claim, live, stats; ARGV[3..6] job id, claim holder, claim ttl, now. Returns {taken[, answer...]}.
 */
const TAKE_ROW_PROBING = new LuaScript(`${TAKE_ROW_LUA}${PROBE_LUA}
local taken = takeRow()
if taken == 2 then return {2} end
local answer = probeRenderCache(KEYS[3], KEYS[5], KEYS[6], KEYS[7], KEYS[8], ARGV[3], ARGV[4], ARGV[5], ARGV[6])
return {taken, answer[1], answer[2]}
`);

/*
 * Rows join the batch (those it has keep their line); a batch that grows is no longer finished. One round trip.
 * KEYS[1] rows zset, KEYS[2] batch hash; ARGV line, row key, line, row key, ... Returns how many rows were new.
 */
const ADD_ROWS = new LuaScript(`
local added = redis.call('ZADD', KEYS[1], 'NX', unpack(ARGV))
if added > 0 then redis.call('HDEL', KEYS[2], 'finishedAt') end
return added
`);
const ADD_ROWS_SLICE = 1000;

/*
 * KEYS[1] the outcome set the row joins, KEYS[2] the other outcome set, KEYS[3] active set, KEYS[4] finished-rows
 * hash, KEYS[5] credits hash; ARGV[1] row key, ARGV[2] the row's FinishedRow entry (done rows) or '' (failed
 * rows: their jobs are kept, and an entry from an earlier outcome is dropped), ARGV[3] the done row's credits or ''. The
 * credits count once per row done: a job re-run after a stall records its outcome again without adding them twice.
 */
const SET_OUTCOME_LUA = `
local function setOutcome()
  local added = redis.call('SADD', KEYS[1], ARGV[1])
  redis.call('SREM', KEYS[2], ARGV[1])
  redis.call('SREM', KEYS[3], ARGV[1])
  if ARGV[2] ~= '' then redis.call('HSET', KEYS[4], ARGV[1], ARGV[2]) else redis.call('HDEL', KEYS[4], ARGV[1]) end
  if added == 1 and ARGV[3] ~= '' then redis.call('HINCRBYFLOAT', KEYS[5], 'rows', ARGV[3]) end
end
`;
const SET_OUTCOME = new LuaScript(`${SET_OUTCOME_LUA}
setOutcome()
return 1
`);

/*
 * A failed row's created talk, once per talk id; its credits join the batch's.
 * KEYS[1] charged hash, KEYS[2] credits hash; ARGV[1] talk id, ARGV[2] ChargedTalk JSON, ARGV[3] credits.
 */
const RECORD_CHARGED = new LuaScript(`
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then redis.call('HINCRBYFLOAT', KEYS[2], 'rows', ARGV[3]) end
return 1
`);

/*
 * A done row whose video was rendered for it: the render cache's entry for its request is written in the same call
 * (render-cache-store.ts), so recording it costs no extra round trip. KEYS[6..9] entry, index, claim, live;
 * ARGV[4..7] request hash, entry, job id, now.
 */
const SET_OUTCOME_RECORDING = new LuaScript(`${SET_OUTCOME_LUA}${RECORD_LUA}
setOutcome()
recordRenderCache(KEYS[6], KEYS[7], KEYS[8], KEYS[9], ARGV[4], ARGV[5], ARGV[6], ARGV[7])
return 1
`);

/*
 * Claims the finish of a batch whose every row has an outcome: 1 for exactly one caller. Held rows (a sample's
 * rest, waiting for approval) have none, so a batch holding rows never finishes; once every other row has an
 * outcome, exactly one caller gets 2 instead: its sample is ready for review.
 * KEYS[1] batch hash, KEYS[2] rows zset, KEYS[3] done set, KEYS[4] failed set, KEYS[5] held hash; ARGV[1] the time.
 */
const CLAIM_FINISHED = new LuaScript(`
local total = redis.call('ZCARD', KEYS[2])
if total == 0 then return 0 end
local settled = redis.call('SCARD', KEYS[3]) + redis.call('SCARD', KEYS[4])
if settled >= total then return redis.call('HSETNX', KEYS[1], 'finishedAt', ARGV[1]) end
local held = redis.call('HLEN', KEYS[5])
if held > 0 and settled + held >= total and redis.call('HSETNX', KEYS[1], 'sampleReadyAt', ARGV[1]) == 1 then return 2 end
return 0
`);

/*
 * Held rows leave the ledger's held hash as failed rows (a cancelled sample): each row only once, so a row an
 * approval took first is not marked. KEYS[1] held hash, KEYS[2] failed set; ARGV row keys. Returns how many.
 */
const DROP_HELD = new LuaScript(`
local dropped = 0
for i = 1, #ARGV do
  if redis.call('HDEL', KEYS[1], ARGV[i]) == 1 then
    redis.call('SADD', KEYS[2], ARGV[i])
    dropped = dropped + 1
  end
end
return dropped
`);

/*
 * Output names belong to one row of a batch, whatever submission added it. All or nothing: when any name is held
 * by another row, nothing is written and the first clash comes back as {name, owner, row}; else the names this
 * call newly reserved come back (so a refused submission can give them back).
 * KEYS[1] names hash (name key -> row key); ARGV name key, row key, name key, row key, ...
 */
const RESERVE_NAMES = new LuaScript(`
for i = 1, #ARGV, 2 do
  local owner = redis.call('HGET', KEYS[1], ARGV[i])
  if owner and owner ~= ARGV[i + 1] then return {'taken', ARGV[i], owner, ARGV[i + 1]} end
end
local fresh = {'ok'}
for i = 1, #ARGV, 2 do
  if redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1]) == 1 then fresh[#fresh + 1] = ARGV[i] end
end
return fresh
`);

/* Gives names back, each only while its row still holds it. KEYS[1] names hash; ARGV name key, row key, ... */
const RELEASE_NAMES = new LuaScript(`
for i = 1, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then redis.call('HDEL', KEYS[1], ARGV[i]) end
end
return 1
`);

/** How names compare: case-insensitive and Unicode-normalised, as they collide on macOS and Windows file systems. */
export function outputNameKey(name: string): string {
  return name.normalize('NFC').toLowerCase();
}

export interface OutputNameClaim {
  name: string;
  rowKey: string;
}

export type NameReservation = { ok: true; reserved: OutputNameClaim[] } | { ok: false; name: string; owner: string; rowKey: string };

/** Which row's talk wrote a file in the batch folder, recorded after the verified rename. */
export interface OutputFileRecord {
  rowKey: string;
  talkId: string;
  sha256: string;
}

/** One row of a sample and why it was chosen: `first`, `longest script`, `voice <voice>` or `random`. */
export interface SamplePick {
  rowKey: string;
  reason: string;
}

/** A row held back until its batch's sample is approved: the job payload it will be enqueued with. */
export interface HeldRow {
  rowKey: string;
  payload: string;
}

export interface BatchSample {
  /** Rows the sample asked for (fewer were made when the sheet had fewer). */
  size: number;
  approvedAt?: string;
}

export interface BatchMeta {
  id: string;
  createdAt: string;
  /** Where the rows came from: a file path, a URL, "api", "library". */
  source: string;
  /** Distinct rows ever added to the batch. */
  total: number;
  finishedAt?: string;
  callbackUrl?: string;
  cancelledAt?: string;
  budget?: BatchBudget & { talksReserved: number; videoSecondsReserved: number };
  /** Present when the batch was enqueued with a sample: the rest of it is held until approved. */
  sample?: BatchSample;
  /** False when the batch was submitted with the render cache off (`--no-cache`, `cache: false`). */
  cache: boolean;
}

export interface BatchCounts {
  total: number;
  done: number;
  failed: number;
  /** Rows a worker holds right now (submitting, rendering or downloading). */
  active: number;
  /** Neither finished nor held by a worker: waiting, delayed or paused. */
  queued: number;
  /** Held back until the batch's sample is approved: not in the queue, so nothing is spent on them. */
  held: number;
}

export interface BatchRowRef {
  rowKey: string;
  line: number;
}

/**
 * What the report needs of a done row once BullMQ has removed its job (the queue keeps only the newest
 * completed jobs, talk-queue.ts): kept in the ledger's `finished` hash, one compact entry per row.
 */
export interface FinishedRow {
  talkId: string;
  /** The video's path relative to the batch folder. */
  file: string;
  bytes: number;
  sha256: string;
  videoSeconds: number | null;
  renderSeconds: number | null;
  attempts: number;
  /** The script as sent (templates filled in), or the audio URL. */
  script: string | null;
  input: Record<string, string>;
  /** Epoch milliseconds. */
  enqueuedAt: number | null;
  finishedAt: number;
  /** What the row's talk cost (queue/credits.ts rowCredits); null in entries written before credits were kept. */
  credits?: number | null;
  creditsSource?: CreditsSource | null;
  /** Set when the video was copied from the render cache: the batch and talk that made it (nothing was paid). */
  cachedFrom?: CachedFrom;
}

export interface CachedFrom {
  batchId: string;
  talkId: string;
}

/* A positional JSON array: field names written once here rather than once per row in Redis. */
function encodeFinishedRow(row: FinishedRow): string {
  const fields: unknown[] = [
    1, row.talkId, row.file, row.bytes, row.sha256, row.videoSeconds, row.renderSeconds, row.attempts, row.enqueuedAt, row.finishedAt, row.script, row.input,
    row.credits ?? null, row.creditsSource ?? null,
  ];
  // Only cached rows carry a 15th field, so entries of rendered rows keep their size.
  if (row.cachedFrom) fields.push([row.cachedFrom.batchId, row.cachedFrom.talkId]);
  return JSON.stringify(fields);
}

function decodeFinishedRow(text: string | null): FinishedRow | undefined {
  if (!text) return undefined;
  try {
    const value = JSON.parse(text) as unknown;
    // 12 entries: written before credits were kept; 15: a row copied from the render cache.
    if (!Array.isArray(value) || value[0] !== 1 || (value.length !== 12 && value.length !== 14 && value.length !== 15)) return undefined;
    const [, talkId, file, bytes, sha256, videoSeconds, renderSeconds, attempts, enqueuedAt, finishedAt, script, input, credits, creditsSource, cached] = value as [
      number, string, string, number, string, number | null, number | null, number, number | null, number, string | null, Record<string, string>, number | null | undefined, CreditsSource | null | undefined, unknown,
    ];
    const row: FinishedRow = { talkId, file, bytes, sha256, videoSeconds, renderSeconds, attempts, script, input, enqueuedAt, finishedAt, credits: credits ?? null, creditsSource: creditsSource ?? null };
    if (Array.isArray(cached) && typeof cached[0] === 'string' && typeof cached[1] === 'string') row.cachedFrom = { batchId: cached[0], talkId: cached[1] };
    return row;
  } catch {
    return undefined;
  }
}

function decodeReading(text: string | null | undefined): CreditReading | null {
  if (!text) return null;
  try {
    const value = JSON.parse(text) as Partial<CreditReading>;
    if (typeof value.at !== 'string') return null;
    return {
      remaining: typeof value.remaining === 'number' ? value.remaining : null,
      total: typeof value.total === 'number' ? value.total : null,
      at: value.at,
      ...(typeof value.error === 'string' ? { error: value.error } : {}),
    };
  } catch {
    return null;
  }
}

function decodeCharged(text: string | null): ChargedTalk | undefined {
  if (!text) return undefined;
  try {
    const value = JSON.parse(text) as ChargedTalk;
    return typeof value.talkId === 'string' && typeof value.credits === 'number' ? value : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The batch ledger in Redis, next to BullMQ's own keys and under the same hash-tagged prefix (one
 * Cluster slot). Row membership and outcomes are sets, so recording an outcome twice (a job re-run after
 * a stall) changes nothing.
 */
export class BatchStore {
  readonly #redis: RedisClient;
  readonly #keys: QueueKeys;

  constructor(redis: RedisClient, prefix: string, queueName: string) {
    this.#redis = redis;
    this.#keys = queueKeys(prefix, queueName);
  }

  #key(id: string, part?: Exclude<BatchKeyPart, 'callbacks'>): string {
    return this.#keys.batch(id, part);
  }

  /** `cache: false`: the batch's rows never take a video from the render cache (they still add theirs to it). */
  async create(id: string, source: string, extra: { callbackUrl?: string; budget?: BatchBudget; cache?: boolean } = {}): Promise<void> {
    const now = new Date().toISOString();
    const multi = this.#redis.multi();
    multi.hsetnx(this.#key(id), 'createdAt', now);
    multi.hsetnx(this.#key(id), 'source', source);
    // Settings are the first submission's: a later submission into the same batch id cannot re-point its callback
    // or raise its budget.
    if (extra.callbackUrl) multi.hsetnx(this.#key(id), 'callbackUrl', extra.callbackUrl);
    if (extra.budget?.maxTalks !== undefined) multi.hsetnx(this.#key(id), 'maxTalks', extra.budget.maxTalks);
    if (extra.budget?.maxVideoSeconds !== undefined) multi.hsetnx(this.#key(id), 'maxVideoSeconds', extra.budget.maxVideoSeconds);
    // Read by the render cache's look-up inside takeRow (render-cache-store.ts); absent means on.
    if (extra.cache === false) multi.hsetnx(this.#key(id), 'cache', 'off');
    // A batch that grows again is no longer finished.
    multi.zadd(this.#keys.batchIndex(), 'NX', Date.parse(now), id);
    await multi.exec();
  }

  async exists(id: string): Promise<boolean> {
    return (await this.#redis.exists(this.#key(id))) === 1;
  }

  /** Adds row keys (idempotent), one script call per 1,000 rows; returns how many were new to the batch. */
  async addRows(id: string, rows: readonly BatchRowRef[]): Promise<number> {
    let added = 0;
    // In slices: Lua's unpack() takes a few thousand arguments at most.
    for (let start = 0; start < rows.length; start += ADD_ROWS_SLICE) {
      const args: Array<string | number> = [];
      for (const row of rows.slice(start, start + ADD_ROWS_SLICE)) args.push(row.line, row.rowKey);
      added += Number(await ADD_ROWS.run(this.#redis, [this.#key(id, 'rows'), this.#key(id)], args));
    }
    return added;
  }

  /**
   * Reserves output names for rows (idempotent for a row that holds its name already). Refuses all of them when
   * any belongs to another row of the batch, from this submission or an earlier one.
   */
  async reserveNames(id: string, claims: readonly OutputNameClaim[]): Promise<NameReservation> {
    const reserved: OutputNameClaim[] = [];
    const byKey = new Map<string, OutputNameClaim>();
    for (let start = 0; start < claims.length; start += ADD_ROWS_SLICE) {
      const args: string[] = [];
      for (const claim of claims.slice(start, start + ADD_ROWS_SLICE)) {
        const key = outputNameKey(claim.name);
        byKey.set(key, claim);
        args.push(key, claim.rowKey);
      }
      const result = (await RESERVE_NAMES.run(this.#redis, [this.#key(id, 'names')], args)) as string[];
      if (result[0] === 'taken') {
        await this.releaseNames(id, reserved);
        const claim = byKey.get(result[1] ?? '');
        return { ok: false, name: claim?.name ?? result[1] ?? '', owner: result[2] ?? '', rowKey: result[3] ?? '' };
      }
      for (const key of result.slice(1)) {
        const claim = byKey.get(key);
        if (claim) reserved.push(claim);
      }
    }
    return { ok: true, reserved };
  }

  /** Gives names back (a refused submission), each only while the same row still holds it. */
  async releaseNames(id: string, claims: readonly OutputNameClaim[]): Promise<void> {
    for (let start = 0; start < claims.length; start += ADD_ROWS_SLICE) {
      const args = claims.slice(start, start + ADD_ROWS_SLICE).flatMap((claim) => [outputNameKey(claim.name), claim.rowKey]);
      await RELEASE_NAMES.run(this.#redis, [this.#key(id, 'names')], args);
    }
  }

  /** Records which row's talk wrote `name` (after the verified rename). */
  async recordFile(id: string, name: string, record: OutputFileRecord): Promise<void> {
    await this.#redis.hset(this.#key(id, 'files'), outputNameKey(name), JSON.stringify(record));
  }

  async fileRecord(id: string, name: string): Promise<OutputFileRecord | undefined> {
    const value = await this.#redis.hget(this.#key(id, 'files'), outputNameKey(name));
    if (value === null) return undefined;
    try {
      const parsed = JSON.parse(value) as Partial<OutputFileRecord>;
      return typeof parsed.rowKey === 'string' && typeof parsed.talkId === 'string' && typeof parsed.sha256 === 'string'
        ? { rowKey: parsed.rowKey, talkId: parsed.talkId, sha256: parsed.sha256 }
        : undefined;
    } catch {
      return undefined;
    }
  }

  /** Whether any row of the batch is done: when none is, enqueueing need not ask row by row. */
  async hasDoneRows(id: string): Promise<boolean> {
    return (await this.#redis.exists(this.#key(id, 'done'))) === 1;
  }

  /** Takes budget for one create; `member` is the row key plus its retry generation. */
  async reserveBudget(id: string, member: string, seconds: number): Promise<BudgetVerdict> {
    const result = Number(await RESERVE_BUDGET.run(this.#redis, [this.#key(id), this.#key(id, 'spent')], [member, String(seconds)]));
    return result === 1 ? 'ok' : result === -1 ? 'max-talks' : 'max-video-seconds';
  }

  /** Gives a reservation back when the create certainly did not happen (D-ID refused the row). */
  async releaseBudget(id: string, member: string, seconds: number): Promise<void> {
    await RELEASE_BUDGET.run(this.#redis, [this.#key(id), this.#key(id, 'spent')], [member, String(seconds)]);
  }

  async areDone(id: string, rowKeys: readonly string[]): Promise<boolean[]> {
    if (rowKeys.length === 0) return [];
    const flags = await this.#redis.smismember(this.#key(id, 'done'), ...rowKeys);
    return flags.map((flag) => flag === 1);
  }

  /**
   * A worker takes the row: adds it to the batch when it is new there and marks it active. `'done'` when the
   * ledger has the row done already (nothing is marked then), `'new'` when the row was new to the batch.
   */
  async takeRow(id: string, row: BatchRowRef, probe?: RenderCacheProbe): Promise<'new' | 'known' | 'done'> {
    const keys = [this.#key(id, 'rows'), this.#key(id, 'active'), this.#key(id), this.#key(id, 'done')];
    let taken: number;
    if (probe) {
      // The render cache's look-up rides along; its answer is left on the probe (src/worker/render-cache.ts reads it).
      const reply = (await TAKE_ROW_PROBING.run(this.#redis, [...keys, ...probeKeys(this.#keys, probe.hash)], [row.rowKey, row.line, ...probeArgs(probe)])) as unknown[];
      taken = Number(reply[0]);
      if (reply.length > 1) probe.answer = parseProbeReply(reply.slice(1));
    } else {
      taken = Number(await TAKE_ROW.run(this.#redis, keys, [row.rowKey, row.line]));
    }
    return taken === 2 ? 'done' : taken === 1 ? 'new' : 'known';
  }

  /**
   * Marks the row done; `finished` is what the report shows of it after its job is gone. `cache`: the row's video was
   * rendered for it, and becomes the render cache's entry for its request in the same call.
   */
  async markDone(id: string, rowKey: string, finished?: FinishedRow, cache?: RenderCacheRecord): Promise<void> {
    const keys = [this.#key(id, 'done'), this.#key(id, 'failed'), this.#key(id, 'active'), this.#key(id, 'finished'), this.#key(id, 'credits')];
    const credits = finished?.credits;
    const args = [rowKey, finished ? encodeFinishedRow(finished) : '', typeof credits === 'number' ? credits : ''];
    if (cache && finished) {
      await SET_OUTCOME_RECORDING.run(this.#redis, [...keys, ...recordKeys(this.#keys, cache.hash)], [...args, ...recordArgs(cache)]);
      return;
    }
    await SET_OUTCOME.run(this.#redis, keys, args);
  }

  /** Marks the row failed; `charged` is its talk, when one was created (paid), recorded before the outcome. */
  async markFailed(id: string, rowKey: string, charged?: ChargedTalk): Promise<void> {
    if (charged) await RECORD_CHARGED.run(this.#redis, [this.#key(id, 'charged'), this.#key(id, 'credits')], [charged.talkId, JSON.stringify(charged), charged.credits]);
    const keys = [this.#key(id, 'failed'), this.#key(id, 'done'), this.#key(id, 'active'), this.#key(id, 'finished'), this.#key(id, 'credits')];
    await SET_OUTCOME.run(this.#redis, keys, [rowKey, '', '']);
  }

  /** Whether the batch's balance before its first create is recorded (a failed reading counts: it is never retaken). */
  async hasCreditsBefore(id: string): Promise<boolean> {
    return (await this.#redis.hexists(this.#key(id, 'credits'), 'before')) === 1;
  }

  /** Records the balance before the first create: the first caller wins (HSETNX), so it is taken exactly once. */
  async recordCreditsBefore(id: string, reading: CreditReading): Promise<boolean> {
    return (await this.#redis.hsetnx(this.#key(id, 'credits'), 'before', JSON.stringify(reading))) === 1;
  }

  /** Records the balance once the last row has an outcome (BatchStore.claimFinished picks one caller per finish). */
  async recordCreditsAfter(id: string, reading: CreditReading): Promise<void> {
    await this.#redis.hset(this.#key(id, 'credits'), 'after', JSON.stringify(reading));
  }

  async creditLedger(id: string): Promise<BatchCreditLedger> {
    const [before, after, rows] = await this.#redis.hmget(this.#key(id, 'credits'), 'before', 'after', 'rows');
    return { before: decodeReading(before), after: decodeReading(after), rows: Number(rows ?? 0) };
  }

  /** The created talks of failed rows, by talk id (undefined where there is none), in the order asked. */
  async chargedTalks(id: string, talkIds: readonly string[]): Promise<(ChargedTalk | undefined)[]> {
    if (talkIds.length === 0) return [];
    const entries = await this.#redis.hmget(this.#key(id, 'charged'), ...talkIds);
    return entries.map(decodeCharged);
  }

  /** Every created talk of the batch's failed rows, retried rows' earlier talks included; oldest first. */
  async allChargedTalks(id: string): Promise<ChargedTalk[]> {
    const talks: ChargedTalk[] = [];
    let cursor = '0';
    do {
      const [next, flat] = await this.#redis.hscan(this.#key(id, 'charged'), cursor, 'COUNT', 500);
      cursor = next;
      for (let i = 1; i < flat.length; i += 2) {
        const talk = decodeCharged(flat[i] ?? null);
        if (talk) talks.push(talk);
      }
    } while (cursor !== '0');
    return talks.sort((a, b) => (a.createdAt ?? a.failedAt).localeCompare(b.createdAt ?? b.failedAt) || a.talkId.localeCompare(b.talkId));
  }

  /**
   * Where rows stand by the ledger alone ('done', 'failed', 'active', or undefined for a row that is none
   * of these), in the order asked: three SMISMEMBERs. Reports use this rather than BullMQ's job.getState(),
   * which scans the wait list (LPOS) and so costs O(queued rows) each, blocking Redis on a big batch.
   */
  async outcomesOf(id: string, rowKeys: readonly string[]): Promise<('done' | 'failed' | 'active' | undefined)[]> {
    if (rowKeys.length === 0) return [];
    const results = (await this.#redis
      .multi()
      .smismember(this.#key(id, 'done'), ...rowKeys)
      .smismember(this.#key(id, 'failed'), ...rowKeys)
      .smismember(this.#key(id, 'active'), ...rowKeys)
      .exec()) ?? [];
    const [done, failed, active] = results.map(([error, value]) => {
      if (error) throw error;
      return value as number[];
    }) as [number[], number[], number[]];
    return rowKeys.map((_, index) => (done[index] === 1 ? 'done' : failed[index] === 1 ? 'failed' : active[index] === 1 ? 'active' : undefined));
  }

  /** The ledger entries of done rows (undefined for rows without one), in the order asked. */
  async finishedRows(id: string, rowKeys: readonly string[]): Promise<(FinishedRow | undefined)[]> {
    if (rowKeys.length === 0) return [];
    const entries = await this.#redis.hmget(this.#key(id, 'finished'), ...rowKeys);
    return entries.map(decodeFinishedRow);
  }

  /** Manifest lines of rows (0 for a row the batch does not have), in the order asked. */
  /** Whether each row is in the batch's ledger already. */
  async hasRows(id: string, rowKeys: readonly string[]): Promise<boolean[]> {
    if (rowKeys.length === 0) return [];
    const scores = await this.#redis.zmscore(this.#key(id, 'rows'), ...rowKeys);
    return scores.map((score) => score !== null);
  }

  async linesOf(id: string, rowKeys: readonly string[]): Promise<number[]> {
    if (rowKeys.length === 0) return [];
    const scores = await this.#redis.zmscore(this.#key(id, 'rows'), ...rowKeys);
    return scores.map((score) => (score === null ? 0 : Number(score)));
  }

  /** A row handed back to the queue (shutdown, credits): no longer held by anyone. */
  async markReleased(id: string, rowKey: string): Promise<void> {
    await this.#redis.srem(this.#key(id, 'active'), rowKey);
  }

  /** A failed row going round again (`retry --failed`). */
  async markRetrying(id: string, rowKey: string): Promise<void> {
    await this.#redis.multi().srem(this.#key(id, 'failed'), rowKey).hdel(this.#key(id), 'finishedAt').exec();
  }

  async counts(id: string): Promise<BatchCounts> {
    const results = (await this.#redis
      .multi()
      .zcard(this.#key(id, 'rows'))
      .scard(this.#key(id, 'done'))
      .scard(this.#key(id, 'failed'))
      .scard(this.#key(id, 'active'))
      .hlen(this.#key(id, 'held'))
      .exec()) ?? [];
    const [total, done, failed, active, held] = results.map(([error, value]) => {
      if (error) throw error;
      return Number(value);
    }) as [number, number, number, number, number];
    return { total, done, failed, active, queued: Math.max(0, total - done - failed - active - held), held };
  }

  /**
   * Records a sample: its size once (the first submission's), and why each row was chosen. The reasons are
   * written again by a re-run of the same submission, which chooses the same rows.
   */
  async recordSample(id: string, size: number, picks: readonly SamplePick[]): Promise<void> {
    const multi = this.#redis.multi().hsetnx(this.#key(id), 'sampleSize', size);
    for (let start = 0; start < picks.length; start += ADD_ROWS_SLICE) {
      multi.hset(this.#key(id, 'sample'), ...picks.slice(start, start + ADD_ROWS_SLICE).flatMap((pick) => [pick.rowKey, pick.reason]));
    }
    await multi.exec();
  }

  /** Why each row is in the sample (undefined for rows that are not), in the order asked. */
  async sampleReasons(id: string, rowKeys: readonly string[]): Promise<(string | undefined)[]> {
    if (rowKeys.length === 0) return [];
    return (await this.#redis.hmget(this.#key(id, 'sample'), ...rowKeys)).map((reason) => reason ?? undefined);
  }

  /** Keeps rows out of the queue until the sample is approved; a row held already keeps its payload. */
  async holdRows(id: string, rows: readonly HeldRow[]): Promise<void> {
    for (let start = 0; start < rows.length; start += ADD_ROWS_SLICE) {
      const multi = this.#redis.multi();
      for (const row of rows.slice(start, start + ADD_ROWS_SLICE)) multi.hsetnx(this.#key(id, 'held'), row.rowKey, row.payload);
      await multi.exec();
    }
  }

  /** One page of held rows (HSCAN): pass the cursor back until it comes back '0'. */
  async heldPage(id: string, cursor: string, count: number): Promise<{ cursor: string; rows: HeldRow[] }> {
    const [next, flat] = await this.#redis.hscan(this.#key(id, 'held'), cursor, 'COUNT', count);
    const rows: HeldRow[] = [];
    for (let i = 0; i + 1 < flat.length; i += 2) rows.push({ rowKey: flat[i] as string, payload: flat[i + 1] as string });
    return { cursor: next, rows };
  }

  /** The payloads of held rows (undefined for rows not held), in the order asked. */
  async heldPayloads(id: string, rowKeys: readonly string[]): Promise<(string | undefined)[]> {
    if (rowKeys.length === 0) return [];
    return (await this.#redis.hmget(this.#key(id, 'held'), ...rowKeys)).map((payload) => payload ?? undefined);
  }

  /** Held rows whose jobs are in the queue now: no longer held. */
  async releaseHeld(id: string, rowKeys: readonly string[]): Promise<void> {
    for (let start = 0; start < rowKeys.length; start += ADD_ROWS_SLICE) {
      await this.#redis.hdel(this.#key(id, 'held'), ...rowKeys.slice(start, start + ADD_ROWS_SLICE));
    }
  }

  /** Held rows a cancel takes away: they count as failed, and were never enqueued. Returns how many were held. */
  async dropHeld(id: string, rowKeys: readonly string[]): Promise<number> {
    let dropped = 0;
    for (let start = 0; start < rowKeys.length; start += ADD_ROWS_SLICE) {
      dropped += Number(await DROP_HELD.run(this.#redis, [this.#key(id, 'held'), this.#key(id, 'failed')], rowKeys.slice(start, start + ADD_ROWS_SLICE)));
    }
    return dropped;
  }

  /** Records that the batch's sample was approved; the first time wins. Returns the recorded time. */
  async markApproved(id: string): Promise<string> {
    await this.#redis.hsetnx(this.#key(id), 'approvedAt', new Date().toISOString());
    return (await this.#redis.hget(this.#key(id), 'approvedAt')) ?? new Date().toISOString();
  }

  async get(id: string): Promise<(BatchMeta & { counts: BatchCounts }) | undefined> {
    const hash = await this.#redis.hgetall(this.#key(id));
    if (!hash.createdAt) return undefined;
    const counts = await this.counts(id);
    return {
      id,
      createdAt: hash.createdAt,
      source: hash.source ?? '',
      total: counts.total,
      ...(hash.finishedAt ? { finishedAt: hash.finishedAt } : {}),
      ...(hash.callbackUrl ? { callbackUrl: hash.callbackUrl } : {}),
      ...(hash.cancelledAt ? { cancelledAt: hash.cancelledAt } : {}),
      ...(hash.sampleSize ? { sample: { size: Number(hash.sampleSize), ...(hash.approvedAt ? { approvedAt: hash.approvedAt } : {}) } } : {}),
      cache: hash.cache !== 'off',
      ...(hash.maxTalks || hash.maxVideoSeconds
        ? {
            budget: {
              ...(hash.maxTalks ? { maxTalks: Number(hash.maxTalks) } : {}),
              ...(hash.maxVideoSeconds ? { maxVideoSeconds: Number(hash.maxVideoSeconds) } : {}),
              talksReserved: await this.#redis.scard(this.#key(id, 'spent')),
              videoSecondsReserved: Number(hash.videoSecondsReserved ?? 0),
            },
          }
        : {}),
      counts,
    };
  }

  /** Newest first. */
  async list(offset = 0, limit = 50): Promise<string[]> {
    return this.#redis.zrevrange(this.#keys.batchIndex(), offset, offset + limit - 1);
  }

  /** Rows in manifest order, a page at a time so big batches never sit in memory at once. */
  async *rows(id: string, pageSize = 1000): AsyncGenerator<BatchRowRef> {
    for (let start = 0; ; start += pageSize) {
      const page = await this.#redis.zrange(this.#key(id, 'rows'), start, start + pageSize - 1, 'WITHSCORES');
      for (let i = 0; i + 1 < page.length; i += 2) yield { rowKey: page[i] as string, line: Number(page[i + 1]) };
      if (page.length < pageSize * 2) return;
    }
  }

  /** Records that the batch was cancelled; the first time wins. Returns the recorded time. */
  async markCancelled(id: string): Promise<string> {
    await this.#redis.hsetnx(this.#key(id), 'cancelledAt', new Date().toISOString());
    return (await this.#redis.hget(this.#key(id), 'cancelledAt')) ?? new Date().toISOString();
  }

  /** `retry --failed` of a cancelled batch runs its rows again: the batch is no longer cancelled. */
  async clearCancelled(id: string): Promise<void> {
    await this.#redis.hdel(this.#key(id), 'cancelledAt');
  }

  async failedRowKeys(id: string): Promise<string[]> {
    return this.#redis.smembers(this.#key(id, 'failed'));
  }

  /** True for exactly one caller once every row has an outcome: that caller writes the report. */
  async claimFinished(id: string): Promise<boolean> {
    return (await this.claimOutcome(id)) === 'finished';
  }

  /**
   * After a row's outcome: `finished` for exactly one caller once every row has one (that caller writes the report
   * and calls back); `sample-ready` for exactly one caller once every row but the held ones has one (that caller
   * writes the sample's review page); else undefined.
   */
  async claimOutcome(id: string): Promise<'finished' | 'sample-ready' | undefined> {
    const keys = [this.#key(id), this.#key(id, 'rows'), this.#key(id, 'done'), this.#key(id, 'failed'), this.#key(id, 'held')];
    const claimed = Number(await CLAIM_FINISHED.run(this.#redis, keys, [new Date().toISOString()]));
    return claimed === 1 ? 'finished' : claimed === 2 ? 'sample-ready' : undefined;
  }
}
