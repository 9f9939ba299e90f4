import { readdirSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { z } from 'zod';
import { JOB_FILE_SHAPE, jobOptions, loadJobFile, mergeManifestOptions, parseSpecFile, resolveManifestPath } from '../manifest/job-file.js';
import type { ManifestOptions } from '../manifest/index.js';
import { UsageError } from '../shared/errors.js';
import { parseEvery, scheduleDefinition, type ScheduleDefinition, type ScheduleTiming } from './spec.js';
import { stableJson, type ScheduleStore, type UpsertOutcome } from './store.js';

/*
 * Schedules declared in files (`jobs/welcome.schedule.json`), applied with `talkbatch schedule apply jobs/`. A
 * schedule file is a job file (same keys: manifest, template, map, defaults, ...) plus when to run; `job` may point
 * at a job file to share its options, and keys in the schedule file win over it. Paths are relative to the file.
 */

const SCHEDULE_FILE = /\.schedule\.(?:json|ya?ml)$/i;
const text = z.string().trim().min(1, 'must not be empty');

export const ScheduleFileSchema = z
  .strictObject({
    name: text.optional(),
    cron: text.optional(),
    tz: text.optional(),
    every: z.union([text, z.number().int().positive()]).optional(),
    job: text.optional(),
    newRowsOnly: z.boolean().optional(),
    remakeChanged: z.boolean().optional(),
    allowPartial: z.boolean().optional(),
    ...JOB_FILE_SHAPE,
  })
  .superRefine((spec, context) => {
    if ((spec.cron === undefined) === (spec.every === undefined)) {
      context.addIssue({ code: 'custom', path: spec.cron === undefined ? [] : ['every'], message: 'give either cron (with an optional tz) or every' });
    }
    if (spec.tz !== undefined && spec.cron === undefined) context.addIssue({ code: 'custom', path: ['tz'], message: 'tz only applies to cron' });
    if (spec.remakeChanged === true && spec.newRowsOnly === false) {
      context.addIssue({ code: 'custom', path: ['remakeChanged'], message: 'remakeChanged only applies with newRowsOnly (every run makes every row already)' });
    }
  });

/** The schedule a file declares, checked as `schedule add` checks its flags. Throws UsageError naming the file. */
export function loadScheduleFile(path: string): ScheduleDefinition {
  const spec = parseSpecFile(path, ScheduleFileSchema, 'schedule file');
  const baseDir = dirname(resolve(path));
  try {
    const job = spec.job === undefined ? undefined : loadJobFile(resolve(baseDir, spec.job));
    const options: ManifestOptions = mergeManifestOptions(job?.options ?? {}, jobOptions(spec, baseDir));
    const manifest = spec.manifest !== undefined ? resolveManifestPath(spec.manifest, baseDir) : job?.manifest;
    if (manifest === undefined) throw new UsageError('manifest: required (here or in the job file)');
    const timing: ScheduleTiming =
      spec.cron !== undefined ? { cron: spec.cron, ...(spec.tz !== undefined ? { tz: spec.tz } : {}) } : { everyMs: parseEvery(spec.every ?? '') };
    return scheduleDefinition(
      {
        name: spec.name ?? basename(path).replace(SCHEDULE_FILE, ''),
        timing,
        manifest,
        options,
        rows: spec.newRowsOnly === false ? 'all' : 'new',
        remakeChanged: spec.remakeChanged === true,
        allowPartial: spec.allowPartial === true,
      },
      (relative) => resolve(baseDir, relative),
    );
  } catch (error) {
    if (error instanceof UsageError) throw new UsageError(`invalid schedule file ${path}: ${error.message}`);
    throw error;
  }
}

/** The schedule files a path names: a folder's `*.schedule.json` (or .yaml), or one file. */
export function scheduleFilesAt(path: string): string[] {
  let isFolder: boolean;
  try {
    isFolder = statSync(path).isDirectory();
  } catch {
    throw new UsageError(`${path}: no such file or folder`);
  }
  if (!isFolder) return [path];
  const files = readdirSync(path)
    .filter((name) => SCHEDULE_FILE.test(name))
    .sort()
    .map((name) => join(path, name));
  if (files.length === 0) throw new UsageError(`${path} has no *.schedule.json files`);
  return files;
}

export interface AppliedSchedule {
  name: string;
  /** The file that declares it; undefined for a pruned schedule. */
  file: string | undefined;
  outcome: UpsertOutcome | 'removed' | 'kept';
}

/**
 * Makes Redis hold the schedules the files declare: each is upserted (added, changed or unchanged). With `prune`,
 * schedules no file declares are removed; without it they are reported as kept. Every file is checked before
 * anything changes, so one bad file changes nothing.
 */
export async function applyScheduleFiles(store: ScheduleStore, files: readonly string[], options: { prune?: boolean; dryRun?: boolean } = {}): Promise<AppliedSchedule[]> {
  const declared = new Map<string, { file: string; definition: ScheduleDefinition }>();
  const problems: string[] = [];
  for (const file of files) {
    try {
      const definition = loadScheduleFile(file);
      const earlier = declared.get(definition.name);
      if (earlier !== undefined) problems.push(`${file}: schedule "${definition.name}" is also declared in ${earlier.file}`);
      else declared.set(definition.name, { file, definition });
    } catch (error) {
      if (!(error instanceof UsageError)) throw error;
      problems.push(error.message);
    }
  }
  if (problems.length > 0) throw new UsageError(`nothing applied:\n${problems.join('\n')}`);

  const results: AppliedSchedule[] = [];
  const existing = await store.list();
  const existingNames = new Set(existing.map((info) => info.name));
  for (const [name, { file, definition }] of declared) {
    if (options.dryRun === true) {
      const current = existing.find((info) => info.name === name);
      const outcome: UpsertOutcome = current === undefined ? 'added' : stableJson(current.definition) === stableJson(definition) ? 'unchanged' : 'changed';
      results.push({ name, file, outcome });
    } else {
      results.push({ name, file, outcome: await store.upsert(definition) });
    }
  }
  for (const name of existingNames) {
    if (declared.has(name)) continue;
    if (options.prune === true && options.dryRun !== true) await store.remove(name);
    results.push({ name, file: undefined, outcome: options.prune === true ? 'removed' : 'kept' });
  }
  return results;
}
