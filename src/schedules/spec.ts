import { CronExpressionParser } from 'cron-parser';
import { z } from 'zod';
import type { ManifestOptions } from '../manifest/index.js';
import { idPattern, ManifestDefaultsSchema, ManifestFormatSchema } from '../manifest/schemas.js';
import { UsageError } from '../shared/errors.js';

/*
 * What a schedule is, as stored in Redis: BullMQ's job scheduler keeps the timing and a job template, and the template's
 * data is a ScheduleDefinition. So the whole schedule lives in one place that survives restarts of every process,
 * and each tick job carries everything a worker needs (no file on the worker's disk but the manifest, if local).
 */

export const TICK_JOB_NAME = 'schedule-tick';
export const SCHEDULE_VERSION = 1;

/** Schedule names start batch ids (`<name>-20261125-0900`), so they follow the batch id alphabet, shorter. */
export const SCHEDULE_NAME_PATTERN = idPattern(48);
export const ScheduleName = z.string().regex(SCHEDULE_NAME_PATTERN, 'schedule name: 1-48 letters, digits, "_", "." or "-", starting with a letter or digit');

export { scheduleQueueName } from '../queue/keys.js';

export const ScheduleTiming = z.union([
  z.strictObject({ cron: z.string().min(1), tz: z.string().min(1).optional() }),
  z.strictObject({ everyMs: z.number().int().positive() }),
]);
export type ScheduleTiming = z.infer<typeof ScheduleTiming>;

/** The manifest options a schedule reads its sheet with (ManifestOptions minus what only makes sense locally). */
export const StoredManifestOptions = z.strictObject({
  template: z.string().optional(),
  nameTemplate: z.string().optional(),
  format: ManifestFormatSchema.optional(),
  sheet: z.string().optional(),
  /** Text encoding when the file has no byte-order mark (see ManifestOptions.encoding). */
  encoding: z.string().optional(),
  map: z.record(z.string(), z.string()).optional(),
  defaults: ManifestDefaultsSchema.optional(),
});
export type StoredManifestOptions = z.infer<typeof StoredManifestOptions>;

/**
 * Stored options as ManifestOptions. They come from JSON, where absent keys are simply absent; the round trip drops
 * the `undefined`s zod's optional types allow, which ManifestOptions (exact optional properties) does not.
 */
export function manifestOptionsOf(stored: StoredManifestOptions): ManifestOptions {
  return JSON.parse(JSON.stringify(stored)) as ManifestOptions;
}

export const ScheduleDefinition = z.strictObject({
  v: z.literal(SCHEDULE_VERSION),
  name: ScheduleName,
  timing: ScheduleTiming,
  /** An absolute path or an https URL, read again on every tick. */
  manifest: z.string().min(1),
  options: StoredManifestOptions,
  /** `new`: rows made by earlier runs of this schedule are skipped. `all`: every tick makes every row. */
  rows: z.enum(['new', 'all']),
  /** With rows `new`: a row whose D-ID body changed (a new script) counts as new. */
  remakeChanged: z.boolean(),
  /** Enqueue the valid rows even when others are invalid (default: such a tick fails and enqueues nothing). */
  allowPartial: z.boolean(),
});
export type ScheduleDefinition = z.infer<typeof ScheduleDefinition>;

/** A tick job's data: the definition, who asked, and the batch id once chosen (kept so a retried tick reuses it). */
export const TickData = ScheduleDefinition.extend({
  trigger: z.enum(['schedule', 'manual']).default('schedule'),
  batchId: z.string().optional(),
});
export type TickData = z.infer<typeof TickData>;
export type TickDataInput = z.input<typeof TickData>;

const CRON_HELP = 'five fields: minute hour day-of-month month day-of-week, e.g. "0 9 * * MON" (a sixth, leading field is seconds)';

/** Throws a UsageError naming the zone when `tz` is not an IANA time zone. */
export function checkTimeZone(tz: string): string {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz });
    return tz;
  } catch {
    throw new UsageError(`--tz "${tz}" is not a time zone; use an IANA name such as Europe/Berlin, America/New_York or UTC`);
  }
}

/**
 * Checks a cron expression the way BullMQ will read it (the same cron-parser) and returns its next run times. Throws
 * a UsageError that says what is wrong, before anything is saved.
 */
export function checkCron(expression: string, tz?: string, count = 3, from: Date = new Date()): Date[] {
  const trimmed = expression.trim();
  if (tz !== undefined) checkTimeZone(tz);
  const fields = trimmed.split(/\s+/).filter(Boolean).length;
  // cron-parser reads a four-field expression in a surprising way; only the usual forms are accepted.
  if (!trimmed.startsWith('@') && fields !== 5 && fields !== 6) {
    throw new UsageError(`--cron "${expression}" has ${fields} field${fields === 1 ? '' : 's'}; give ${CRON_HELP}`);
  }
  try {
    const interval = CronExpressionParser.parse(trimmed, { currentDate: from, ...(tz !== undefined ? { tz } : {}) });
    const times: Date[] = [];
    for (let i = 0; i < count && interval.hasNext(); i++) times.push(interval.next().toDate());
    if (times.length === 0) throw new Error('it never runs');
    return times;
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new UsageError(`--cron "${expression}" is not a valid cron expression (${reason}); give ${CRON_HELP}`);
  }
}

const UNITS: Readonly<Record<string, number>> = { ms: 1, s: 1_000, sec: 1_000, m: 60_000, min: 60_000, h: 3_600_000, d: 86_400_000 };

/** The shortest interval: ticks re-read the whole sheet, and faster than this only hammers its server. */
export const MIN_EVERY_MS = 1_000;

/** `10s`, `1500ms`, `5m`, `1h`, `1d` or plain milliseconds -> milliseconds. */
export function parseEvery(text: string | number): number {
  let ms: number;
  if (typeof text === 'number') ms = text;
  else {
    const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|sec|m|min|h|d)?\s*$/i.exec(text);
    const unit = UNITS[(match?.[2] ?? 'ms').toLowerCase()];
    if (match === null || unit === undefined) throw new UsageError(`--every "${text}" is not a duration; use e.g. 10s, 1500ms, 5m or 1h`);
    ms = Math.round(Number(match[1]) * unit);
  }
  if (!Number.isSafeInteger(ms)) throw new UsageError(`--every must be a whole number of milliseconds (got ${text})`);
  if (ms < MIN_EVERY_MS) throw new UsageError(`--every must be at least ${MIN_EVERY_MS} ms (got ${ms} ms)`);
  return ms;
}

/** `12000` -> `12s`, `90000` -> `90s`, `3600000` -> `1h`: for listings. */
export function formatEvery(ms: number): string {
  if (ms % 86_400_000 === 0) return `${ms / 86_400_000}d`;
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms % 1_000 === 0) return `${ms / 1_000}s`;
  return `${ms}ms`;
}

export function describeTiming(timing: ScheduleTiming): string {
  return 'cron' in timing ? `cron "${timing.cron}"${timing.tz ? ` (${timing.tz})` : ''}` : `every ${formatEvery(timing.everyMs)}`;
}

/** The calendar fields of `at` as seen in time zone `tz`, zero-padded. */
export function zonedParts(at: Date, tz = 'UTC'): Record<'year' | 'month' | 'day' | 'hour' | 'minute' | 'second', string> {
  const parts = new Intl.DateTimeFormat('en-US', {
    timeZone: tz,
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
    hourCycle: 'h23',
  }).formatToParts(at);
  const part = (type: Intl.DateTimeFormatPartTypes): string => parts.find((p) => p.type === type)?.value ?? '00';
  return { year: part('year'), month: part('month'), day: part('day'), hour: part('hour'), minute: part('minute'), second: part('second') };
}

/** `20261125-0900` in the schedule's zone (UTC for intervals): sortable, readable, no ':' (job ids may not have one). */
export function tickStamp(at: Date, tz = 'UTC', withSeconds = false): string {
  const p = zonedParts(at, tz);
  const stamp = `${p.year}${p.month}${p.day}-${p.hour}${p.minute}`;
  return withSeconds ? `${stamp}${p.second}` : stamp;
}

export interface ScheduleInput {
  name: string;
  timing: ScheduleTiming;
  /** A path (made absolute here: workers may run elsewhere in the tree) or an https URL; `-` is refused. */
  manifest: string;
  options: ManifestOptions;
  rows?: 'new' | 'all';
  remakeChanged?: boolean;
  allowPartial?: boolean;
}

/** Checks everything a schedule needs before it is saved; throws UsageError naming what is wrong. */
export function scheduleDefinition(input: ScheduleInput, resolvePath: (path: string) => string): ScheduleDefinition {
  const name = ScheduleName.safeParse(input.name);
  if (!name.success) throw new UsageError(`invalid schedule name "${input.name}": ${name.error.issues[0]?.message ?? 'invalid'}`);
  if (input.manifest === '-') throw new UsageError('a schedule reads its manifest again on every run: give a file path or an https:// URL, not "-"');
  if ('cron' in input.timing) checkCron(input.timing.cron, input.timing.tz, 1);
  else parseEvery(input.timing.everyMs);
  // Without a zone, cron-parser would use each worker's local zone, and workers may sit in different ones.
  const timing: ScheduleTiming = 'cron' in input.timing ? { cron: input.timing.cron.trim(), tz: input.timing.tz ?? 'UTC' } : input.timing;
  const manifest = /^[a-z][a-z0-9+.-]*:\/\//i.test(input.manifest) ? input.manifest : resolvePath(input.manifest);
  // `source` (limits, stdin) belongs to the process that reads, not to the stored schedule.
  const { source: _source, ...stored } = input.options;
  const options = StoredManifestOptions.safeParse(JSON.parse(JSON.stringify(stored)));
  if (!options.success) {
    throw new UsageError(`invalid manifest options: ${options.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`).join('; ')}`);
  }
  return {
    v: SCHEDULE_VERSION,
    name: name.data,
    timing,
    manifest,
    options: options.data,
    rows: input.rows ?? 'new',
    remakeChanged: input.remakeChanged ?? false,
    allowPartial: input.allowPartial ?? false,
  };
}
