import { stat } from 'node:fs/promises';
import type { RedisClient } from '../queue/connections.js';
import { queueKeys } from '../queue/keys.js';
import { RenderCacheStore, type RenderCacheCounters, type RenderCacheEntry } from '../queue/render-cache-store.js';

/*
 * `talkbatch cache stats|prune`: the render cache seen from outside a worker. Prune only forgets entries; the videos
 * belong to their batches' folders and are never deleted by it.
 */

export interface RenderCacheStats extends RenderCacheCounters {
  entries: number;
  /** Sum of the entries' file sizes, as recorded. */
  bytes: number;
  /** Index members whose entry no longer exists or cannot be read (prune drops them). */
  unreadable: number;
  /** When the oldest and newest entries were written (ISO), or null with no entries. */
  oldest: string | null;
  newest: string | null;
}

export interface PruneOptions {
  /** Also drop entries written longer ago than this. */
  olderThanMs?: number;
  /** Drop every entry. */
  all?: boolean;
}

export interface PruneResult {
  /** Entries looked at. */
  seen: number;
  dropped: number;
  kept: number;
}

export function renderCacheStore(redis: RedisClient, prefix: string, queueName: string): RenderCacheStore {
  return new RenderCacheStore(redis, queueKeys(prefix, queueName));
}

export async function renderCacheStats(store: RenderCacheStore): Promise<RenderCacheStats> {
  const counters = await store.counters();
  let entries = 0;
  let bytes = 0;
  let unreadable = 0;
  let oldest: number | undefined;
  let newest: number | undefined;
  for await (const { entry } of store.entries()) {
    if (!entry) {
      unreadable += 1;
      continue;
    }
    entries += 1;
    bytes += entry.bytes;
    oldest = oldest === undefined ? entry.recordedAt : Math.min(oldest, entry.recordedAt);
    newest = newest === undefined ? entry.recordedAt : Math.max(newest, entry.recordedAt);
  }
  const iso = (ms: number | undefined): string | null => (ms === undefined ? null : new Date(ms).toISOString());
  return { entries, bytes, unreadable, oldest: iso(oldest), newest: iso(newest), ...counters };
}

/** Drops entries whose file is gone or no longer its recorded size, those older than `olderThanMs`, or all. */
export async function pruneRenderCache(store: RenderCacheStore, options: PruneOptions = {}): Promise<PruneResult> {
  const cutoff = options.olderThanMs === undefined ? undefined : Date.now() - options.olderThanMs;
  const { seen, dropped } = await store.pruneWhere(async ({ entry }) => {
    if (options.all === true || !entry) return true;
    if (cutoff !== undefined && entry.recordedAt < cutoff) return true;
    return !(await fileStillThere(entry));
  });
  return { seen, dropped, kept: seen - dropped };
}

/** Size only: a changed file of the same size is caught (and dropped) by the sha256 check when it is used. */
async function fileStillThere(entry: RenderCacheEntry): Promise<boolean> {
  try {
    const info = await stat(entry.file);
    return info.isFile() && info.size === entry.bytes;
  } catch {
    return false;
  }
}

const UNITS: Readonly<Record<string, number>> = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 7 * 86_400_000 };

/** `30d`, `12h`, `90m`, `45s`, `2w` as milliseconds; undefined when it is none of these. */
export function parseAge(text: string): number | undefined {
  const match = /^(\d+(?:\.\d+)?)\s*([smhdw])$/i.exec(text.trim());
  if (!match) return undefined;
  const ms = Number(match[1]) * (UNITS[(match[2] ?? '').toLowerCase()] ?? NaN);
  return Number.isFinite(ms) && ms > 0 ? ms : undefined;
}
