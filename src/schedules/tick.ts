import { createHash } from 'node:crypto';
import { ManifestError, formatIssue, type ManifestRow, type SourceOptions } from '../manifest/index.js';
import type { Logger } from '../shared/logger.js';
import { jobIdFor } from '../queue/payload.js';
import { enqueueRows, openValidatedManifest, type ValidatedManifest } from '../queue/producer.js';
import type { QueueHandle } from '../queue/talk-queue.js';
import { TickData, manifestOptionsOf, tickStamp, type ScheduleDefinition } from './spec.js';
import { stableJson, type ScheduleRun, type ScheduleStore } from './store.js';

/*
 * A schedule's tick: the rows of its manifest that earlier runs did not make become a new batch, through the same
 * validation and enqueue path as `talkbatch enqueue` (openValidatedManifest, then enqueueRows).
 */

/** What "the row changed" means: the D-ID body it would be made from (script, image, voice, config). */
export function talkHash(row: ManifestRow): string {
  return createHash('sha256').update(stableJson(row.talk)).digest('hex').slice(0, 16);
}

export interface TickDeps {
  /** Where the rows go: the talk queue and its batch ledger. */
  talks: QueueHandle;
  store: ScheduleStore;
  logger: Logger;
  /** Limits for URL sources (timeout, size). */
  sourceOptions?: SourceOptions;
  now?: () => Date;
  chunkSize?: number;
}

/** `<name>-20261125-0900`; a second batch within the same minute gets the seconds too, then a counter. */
async function chooseBatchId(talks: QueueHandle, definition: ScheduleDefinition, at: Date): Promise<string> {
  const tz = 'cron' in definition.timing ? definition.timing.tz : undefined;
  const minute = `${definition.name}-${tickStamp(at, tz)}`;
  if (!(await talks.batches.exists(minute))) return minute;
  const second = `${definition.name}-${tickStamp(at, tz, true)}`;
  if (!(await talks.batches.exists(second))) return second;
  for (let n = 2; ; n++) {
    const id = `${second}-${n}`;
    if (!(await talks.batches.exists(id))) return id;
  }
}

function describeFailure(error: unknown): string {
  if (error instanceof ManifestError) {
    const [first] = error.issues;
    const count = error.issues.length;
    if (first === undefined) return 'invalid manifest';
    return count === 1 ? formatIssue(first) : `${count} problems in the manifest, first: ${formatIssue(first)}`;
  }
  return error instanceof Error ? error.message : String(error);
}

/** Whether a row marked pending by a tick that died actually reached the queue. */
async function pendingWasEnqueued(talks: QueueHandle, batchId: string, rowKey: string): Promise<boolean> {
  if ((await talks.queue.getJob(jobIdFor(batchId, rowKey))) !== undefined) return true;
  const [done] = await talks.batches.areDone(batchId, [rowKey]);
  return done === true;
}

/**
 * One run of a schedule: read the manifest again, pick the rows earlier runs did not make (or all of them), enqueue
 * them as a new batch, and record the run. Never throws for a bad source or bad rows: those are recorded as a failed
 * run and the next tick tries again. `saveBatchId` checkpoints the chosen batch id in the tick job, so a tick
 * retried after a crash adds to the same batch.
 */
export async function runScheduleTick(deps: TickDeps, rawData: unknown, saveBatchId: (batchId: string) => Promise<void> = async () => {}): Promise<ScheduleRun> {
  const started = deps.now?.() ?? new Date();
  const run: ScheduleRun = { at: started.toISOString(), trigger: 'schedule', batchId: null, added: 0, changed: 0, skipped: 0, invalid: 0, error: null, durationMs: 0 };
  const parsed = TickData.safeParse(rawData);
  const rawName = (rawData as { name?: unknown } | null)?.name;
  const name = parsed.success ? parsed.data.name : typeof rawName === 'string' ? rawName : 'unknown';
  const finish = async (): Promise<ScheduleRun> => {
    run.durationMs = Date.now() - started.getTime();
    await deps.store.recordRun(name, run);
    if (run.error !== null) deps.logger.warn({ schedule: name, error: run.error }, 'schedule run failed; the next run tries again');
    else deps.logger.info({ schedule: name, batchId: run.batchId, added: run.added, skipped: run.skipped }, run.batchId ? 'schedule run enqueued a batch' : 'schedule run: nothing new');
    return run;
  };
  if (!parsed.success) {
    run.error = `the stored schedule cannot be read (${parsed.error.issues[0]?.message ?? 'invalid'}); save it again with talkbatch schedule add or apply`;
    return finish();
  }
  const data = parsed.data;
  run.trigger = data.trigger;

  const release = await deps.store.lock(data.name);
  if (release === undefined) {
    run.error = 'skipped: the previous run of this schedule is still going';
    return finish();
  }
  let manifest: ValidatedManifest['manifest'] | undefined;
  try {
    const validated = await openValidatedManifest(data.manifest, {
      ...manifestOptionsOf(data.options),
      ...(deps.sourceOptions ? { source: deps.sourceOptions } : {}),
      // Checked below, once the run has counted the invalid rows.
      allowPartial: true,
    });
    manifest = validated.manifest;
    const { report } = validated;
    run.invalid = report.rows - report.valid - report.skippedEmpty;
    if (validated.issues.length > 0 && !data.allowPartial) throw new ManifestError(validated.issues);

    let batchId = data.batchId;
    let chunk: ManifestRow[] = [];
    const flush = async (): Promise<void> => {
      const rows = chunk;
      chunk = [];
      if (rows.length === 0) return;
      const marks = await deps.store.marks(data.name, rows.map((row) => row.rowKey));
      const wanted: { row: ManifestRow; hash: string }[] = [];
      for (const [index, row] of rows.entries()) {
        const hash = talkHash(row);
        let mark = marks[index];
        if (mark?.state === 'pending' && !(await pendingWasEnqueued(deps.talks, mark.batchId, row.rowKey))) mark = undefined;
        if (data.rows === 'all' || mark === undefined) {
          wanted.push({ row, hash });
        } else if (data.remakeChanged && mark.hash !== hash) {
          wanted.push({ row, hash });
          run.changed++;
        } else {
          run.skipped++;
        }
      }
      if (wanted.length === 0) return;
      if (batchId === undefined) {
        batchId = await chooseBatchId(deps.talks, data, started);
        await saveBatchId(batchId);
      }
      if (run.batchId === null) {
        run.batchId = batchId;
        await deps.talks.batches.create(batchId, `schedule ${data.name}: ${manifest?.label ?? data.manifest}`);
      }
      const refs = wanted.map(({ row, hash }) => ({ rowKey: row.rowKey, hash }));
      await deps.store.markPending(data.name, batchId, refs);
      const result = await enqueueRows(deps.talks, batchId, wanted.map(({ row }) => row), deps.chunkSize);
      await deps.store.markMade(data.name, batchId, refs);
      run.added += result.added + result.alreadyPresent;
    };
    for await (const row of manifest.validRows()) {
      chunk.push(row);
      if (chunk.length >= (deps.chunkSize ?? 500)) await flush();
    }
    await flush();
  } catch (error) {
    run.error = describeFailure(error);
    if (!(error instanceof ManifestError)) deps.logger.debug({ schedule: data.name, err: String(error) }, 'schedule run error');
  } finally {
    await manifest?.close();
    await release().catch(() => undefined);
  }
  return finish();
}
