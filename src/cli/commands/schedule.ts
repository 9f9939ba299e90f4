import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { Config } from '../../config/index.js';
import { formatIssue, openManifest, type ManifestIssue } from '../../manifest/index.js';
import { applyScheduleFiles, scheduleFilesAt } from '../../schedules/file.js';
import { checkCron, checkTimeZone, describeTiming, parseEvery, scheduleDefinition, zonedParts, type ScheduleTiming } from '../../schedules/spec.js';
import { openScheduleStore, type ScheduleInfo, type ScheduleRun, type ScheduleStore } from '../../schedules/store.js';
import { sleep } from '../../shared/clock.js';
import { UsageError } from '../../shared/errors.js';
import { configFromFlags, GLOBAL_HELP, GLOBAL_OPTIONS } from '../context.js';
import { MANIFEST_HELP, MANIFEST_OPTIONS, manifestArgs } from '../manifest-flags.js';

export const SCHEDULE_HELP = `Usage: talkbatch schedule <add|list|show|run|remove|apply> [options]

Schedules read a manifest again on a timetable (a cron expression, or an interval) and enqueue a batch
named <schedule>-<time> (e.g. welcome-20261125-0900) of the rows that earlier runs did not make. They
live in Redis (REDIS_URL), and "talkbatch worker" processes run them. A run whose sheet cannot be read
is recorded as failed and the next run tries again.

  schedule add NAME (--cron EXPR [--tz ZONE] | --every DURATION) --manifest PATH|URL [options]
      --cron "0 9 * * MON"     minute hour day-of-month month day-of-week (a sixth, leading field: seconds)
      --tz Europe/Berlin       time zone of the cron expression (default: UTC)
      --every 10s              an interval instead (ms, s, m, h, d; at least 1s), for tests and dev
      --manifest PATH|URL      a file (stored as an absolute path) or an https:// URL, read on every run
                               (default: the manifest of --job)
      --new-rows-only          make only rows earlier runs did not make (default; rows are matched by
                               row key: the id column, else a hash of the row)
      --all-rows               make every row on every run
      --remake-changed         with --new-rows-only: a row whose script, image, voice or config changed
                               counts as new
      --allow-partial          enqueue the valid rows of a sheet that also has invalid ones
      --skip-check             save even if the manifest cannot be read or has problems right now
      Template files and job files are read now and stored with the schedule: run "schedule add" (or
      "apply") again after changing them.
  schedule list                every schedule with its next run and the outcome of its last run
  schedule show NAME           one schedule and its recent runs
  schedule run NAME [--wait]   run it now (a worker picks it up); --wait prints the outcome
  schedule remove NAME         stop it; --forget also drops which rows it made (they would be made again)
  schedule apply PATH          add or update the schedules declared in PATH/*.schedule.json (or one file),
                               reporting what was added or changed; --prune removes schedules no file
                               declares; --dry-run only reports

Options:
  --json                 list, show: print JSON
  --timeout S            run --wait: give up after S seconds (default 60)
${MANIFEST_HELP}
${GLOBAL_HELP}`;

const OPTIONS = {
  ...GLOBAL_OPTIONS,
  ...MANIFEST_OPTIONS,
  cron: { type: 'string' },
  tz: { type: 'string' },
  every: { type: 'string' },
  manifest: { type: 'string' },
  'new-rows-only': { type: 'boolean' },
  'all-rows': { type: 'boolean' },
  'remake-changed': { type: 'boolean' },
  'allow-partial': { type: 'boolean' },
  'skip-check': { type: 'boolean' },
  forget: { type: 'boolean' },
  wait: { type: 'boolean' },
  timeout: { type: 'string' },
  prune: { type: 'boolean' },
  'dry-run': { type: 'boolean' },
  json: { type: 'boolean' },
} as const;

type Values = ReturnType<typeof parseArgs<{ args: string[]; allowPositionals: true; options: typeof OPTIONS }>>['values'];

/** `2026-11-30 09:00 Europe/Berlin`: a time as the schedule's zone sees it. */
export function formatWhen(date: Date, tz = 'UTC'): string {
  const p = zonedParts(date, tz);
  const seconds = p.second === '00' ? '' : `:${p.second}`;
  return `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute}${seconds} ${tz}`;
}

function zoneOf(timing: ScheduleTiming | undefined): string {
  return timing !== undefined && 'cron' in timing && timing.tz !== undefined ? timing.tz : 'UTC';
}

export function describeRun(run: ScheduleRun, tz = 'UTC'): string {
  const when = `${formatWhen(new Date(run.at), tz)}${run.trigger === 'manual' ? ' (manual)' : ''}`;
  if (run.error !== null) return `${when}: failed: ${run.error}`;
  const skipped = run.skipped > 0 ? `, ${run.skipped} already made` : '';
  const invalid = run.invalid > 0 ? `, ${run.invalid} invalid left out` : '';
  if (run.batchId === null) return `${when}: nothing new${skipped}${invalid}`;
  const changed = run.changed > 0 ? ` (${run.changed} changed)` : '';
  return `${when}: ${run.added} row${run.added === 1 ? '' : 's'} enqueued${changed}${skipped}${invalid} -> batch ${run.batchId}`;
}

function describeSchedule(info: ScheduleInfo): string {
  const tz = zoneOf(info.timing);
  const lines = [
    `${info.name}: ${info.timing ? describeTiming(info.timing) : 'unknown timing'}`,
    `  manifest: ${info.definition?.manifest ?? '(unreadable definition: save it again)'}`,
    `  rows:     ${info.definition?.rows === 'all' ? 'all rows every run' : `new rows only${info.definition?.remakeChanged ? ', changed rows remade' : ''}`}`,
    `  next:     ${info.next ? formatWhen(info.next, tz) : 'none planned'}`,
    `  last run: ${info.lastRun ? describeRun(info.lastRun, tz) : 'none yet'}`,
  ];
  return lines.join('\n');
}

function needRedis(config: Config): string {
  if (!config.redisUrl) throw new UsageError('REDIS_URL is not set: schedules live in the Redis your workers use');
  return config.redisUrl;
}

function timingFrom(values: Values): ScheduleTiming {
  if ((values.cron === undefined) === (values.every === undefined)) throw new UsageError('give either --cron EXPR (with an optional --tz) or --every DURATION');
  if (values.every !== undefined) {
    if (values.tz !== undefined) throw new UsageError('--tz only applies to --cron');
    return { everyMs: parseEvery(values.every) };
  }
  const cron = values.cron ?? '';
  if (values.tz !== undefined) checkTimeZone(values.tz);
  checkCron(cron, values.tz);
  return { cron: cron.trim(), ...(values.tz !== undefined ? { tz: values.tz } : {}) };
}

async function addSchedule(store: ScheduleStore, name: string | undefined, values: Values): Promise<number> {
  if (name === undefined) throw new UsageError('schedule add needs a NAME (see talkbatch schedule --help)');
  if (values['new-rows-only'] === true && values['all-rows'] === true) throw new UsageError('give --new-rows-only or --all-rows, not both');
  if (values['remake-changed'] === true && values['all-rows'] === true) throw new UsageError('--remake-changed only applies with --new-rows-only');
  const timing = timingFrom(values);
  const { manifest, options } = manifestArgs(values, values.manifest === undefined ? [] : [values.manifest], 'schedule add');
  const definition = scheduleDefinition(
    {
      name,
      timing,
      manifest,
      options,
      rows: values['all-rows'] === true ? 'all' : 'new',
      remakeChanged: values['remake-changed'] === true,
      allowPartial: values['allow-partial'] === true,
    },
    (path) => resolve(path),
  );
  if (values['skip-check'] !== true) {
    const issues = await checkManifest(definition.manifest, options, definition.allowPartial);
    if (issues.length > 0) {
      for (const issue of issues.slice(0, 20)) process.stderr.write(`${formatIssue(issue)}\n`);
      if (issues.length > 20) process.stderr.write(`... and ${issues.length - 20} more (talkbatch validate lists them all)\n`);
      process.stderr.write(`schedule "${name}" not saved: its manifest has ${issues.length} problem${issues.length === 1 ? '' : 's'} (--skip-check saves it anyway)\n`);
      return 2;
    }
  }
  const outcome = await store.upsert(definition);
  const stored = definition.timing;
  const tz = zoneOf(stored);
  const upcoming = 'cron' in stored ? checkCron(stored.cron, stored.tz, 3).map((date) => formatWhen(date, tz)) : [];
  const info = await store.get(name);
  console.log(`schedule "${name}" ${outcome}: ${describeTiming(stored)}, manifest ${definition.manifest}`);
  console.log(`next runs: ${upcoming.length > 0 ? upcoming.join(', ') : info?.next ? formatWhen(info.next, tz) : 'none planned'}`);
  return 0;
}

/** Problems that would make the schedule's runs fail today (file-level issues and, without allowPartial, row issues). */
async function checkManifest(source: string, options: ReturnType<typeof manifestArgs>['options'], allowPartial: boolean): Promise<ManifestIssue[]> {
  try {
    const manifest = await openManifest(source, options);
    try {
      const report = await manifest.validate();
      return allowPartial && report.valid > 0 ? [] : report.issues;
    } finally {
      await manifest.close();
    }
  } catch (error) {
    const issues = (error as { issues?: unknown }).issues;
    if (Array.isArray(issues)) return issues as ManifestIssue[];
    throw error;
  }
}

async function runSchedule(store: ScheduleStore, name: string | undefined, values: Values): Promise<number> {
  if (name === undefined) throw new UsageError('schedule run needs a NAME');
  const timeoutSeconds = values.timeout === undefined ? 60 : Number(values.timeout);
  if (!Number.isFinite(timeoutSeconds) || timeoutSeconds <= 0) throw new UsageError('--timeout must be a positive number of seconds');
  const requestedAt = Date.now();
  const jobId = await store.runNow(name);
  if (jobId === undefined) {
    process.stderr.write(`no schedule "${name}"\n`);
    return 1;
  }
  if (values.wait !== true) {
    console.log(`schedule "${name}": run requested (job ${jobId}); a talkbatch worker runs it`);
    return 0;
  }
  const info = await store.get(name);
  const deadline = requestedAt + timeoutSeconds * 1000;
  while (Date.now() < deadline) {
    const [latest] = await store.runs(name, 1);
    // Runs are recorded when they end, stamped with when they started: the wanted one started after the request.
    if (latest !== undefined && latest.trigger === 'manual' && Date.parse(latest.at) >= requestedAt - 1_000) {
      console.log(describeRun(latest, zoneOf(info?.timing)));
      return latest.error === null ? 0 : 1;
    }
    await sleep(250);
  }
  process.stderr.write(`schedule "${name}": no worker ran it within ${timeoutSeconds} s (is "talkbatch worker" running?); it stays queued\n`);
  return 1;
}

export async function scheduleCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: OPTIONS });
  const [action, target, ...extra] = positionals;
  if (values.help || action === undefined || action === 'help') {
    console.log(SCHEDULE_HELP);
    return values.help || action === 'help' ? 0 : 2;
  }
  if (extra.length > 0) throw new UsageError(`unexpected arguments: ${extra.join(' ')}`);
  const known = ['add', 'list', 'show', 'run', 'remove', 'apply'];
  if (!known.includes(action)) throw new UsageError(`unknown schedule action "${action}" (${known.join(', ')})`);
  const config = configFromFlags(values);
  const { store, close } = await openScheduleStore(config, needRedis(config));
  try {
    switch (action) {
      case 'add':
        return await addSchedule(store, target, values);
      case 'list': {
        const schedules = await store.list();
        if (values.json) console.log(JSON.stringify(schedules, null, 2));
        else if (schedules.length === 0) console.log('no schedules (talkbatch schedule add or apply creates them)');
        else console.log(schedules.map(describeSchedule).join('\n\n'));
        return 0;
      }
      case 'show': {
        if (target === undefined) throw new UsageError('schedule show needs a NAME');
        const info = await store.get(target);
        if (info === undefined) {
          process.stderr.write(`no schedule "${target}"\n`);
          return 1;
        }
        const runs = await store.runs(target, 10);
        if (values.json) {
          console.log(JSON.stringify({ ...info, runs, rowsMade: await store.madeCount(target) }, null, 2));
        } else {
          console.log(describeSchedule(info));
          console.log(`  rows made so far: ${await store.madeCount(target)}`);
          if (runs.length > 0) console.log(`recent runs:\n${runs.map((run) => `  ${describeRun(run, zoneOf(info.timing))}`).join('\n')}`);
        }
        return 0;
      }
      case 'run':
        return await runSchedule(store, target, values);
      case 'remove': {
        if (target === undefined) throw new UsageError('schedule remove needs a NAME');
        const removed = await store.remove(target, values.forget === true);
        if (!removed) {
          process.stderr.write(`no schedule "${target}"\n`);
          return 1;
        }
        console.log(`schedule "${target}" removed${values.forget ? ', and the rows it made forgotten' : ''}`);
        return 0;
      }
      case 'apply': {
        if (target === undefined) throw new UsageError('schedule apply needs a folder or a *.schedule.json file');
        const results = await applyScheduleFiles(store, scheduleFilesAt(target), { prune: values.prune === true, dryRun: values['dry-run'] === true });
        for (const result of results) console.log(`${result.outcome.padEnd(9)} ${result.name}${result.file ? `  (${result.file})` : result.outcome === 'kept' ? '  (in Redis, in no file; --prune removes it)' : ''}`);
        const count = (outcome: string): number => results.filter((result) => result.outcome === outcome).length;
        const summary = `${count('added')} added, ${count('changed')} changed, ${count('unchanged')} unchanged` + (values.prune ? `, ${count('removed')} removed` : '');
        console.log(values['dry-run'] ? `dry run, nothing saved; it would be: ${summary}` : summary);
        return 0;
      }
    }
    return 2;
  } finally {
    await close();
  }
}
