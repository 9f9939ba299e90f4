import cliProgress from 'cli-progress';
import type { BatchCounts, BatchStore } from '../queue/batches.js';
import { sleep } from '../shared/clock.js';

export interface WatchOptions {
  batches: BatchStore;
  batchId: string;
  /** A live bar on a terminal; plain periodic lines otherwise (CI, pipes). */
  tty: boolean;
  quiet?: boolean;
  pollMs?: number;
  plainEveryMs?: number;
  signal?: AbortSignal;
  /** Checked each tick: e.g. the in-process worker died. */
  stopWhen?: () => boolean;
  write?: (line: string) => void;
  /** Called with the counts after every poll. */
  onTick?: (counts: BatchCounts) => void;
}

/**
 * Follows a batch until every row has an outcome, or every row but those a sample holds for approval (nothing
 * else will happen to them until someone approves); resolves with the final counts.
 */
export async function watchBatch(options: WatchOptions): Promise<BatchCounts> {
  const write = options.write ?? ((line: string) => process.stderr.write(`${line}\n`));
  const pollMs = options.pollMs ?? 250;
  const plainEveryMs = options.plainEveryMs ?? 5_000;
  const started = Date.now();
  const bar =
    options.tty && !options.quiet
      ? new cliProgress.SingleBar(
          {
            format: `${options.batchId} {bar} {percentage}% | {done} done, {failed} failed, {active} rendering, {queued} queued | {rate}/min | ETA {eta_formatted}`,
            hideCursor: true,
            etaBuffer: 20,
            stream: process.stderr,
          },
          cliProgress.Presets.shades_classic,
        )
      : undefined;
  let lastPlain = 0;
  let counts = await options.batches.counts(options.batchId);
  // Held rows wait for an approval, not for the workers: the bar runs to the rows that will be made.
  bar?.start(counts.total - counts.held, 0, fields(counts, started));
  try {
    for (;;) {
      counts = await options.batches.counts(options.batchId);
      const finished = counts.done + counts.failed;
      options.onTick?.(counts);
      if (bar) {
        bar.setTotal(counts.total - counts.held);
        bar.update(finished, fields(counts, started));
      } else if (!options.quiet && Date.now() - lastPlain >= plainEveryMs) {
        lastPlain = Date.now();
        write(describeCounts(options.batchId, counts, started));
      }
      if (counts.total > 0 && finished + counts.held >= counts.total) break;
      if (options.signal?.aborted || options.stopWhen?.()) break;
      await sleep(pollMs, options.signal).catch(() => undefined);
    }
  } finally {
    bar?.stop();
  }
  if (!bar && !options.quiet) write(describeCounts(options.batchId, counts, started));
  return counts;
}

function fields(counts: BatchCounts, started: number): Record<string, string | number> {
  return { ...counts, rate: ratePerMinute(counts, started) };
}

function ratePerMinute(counts: BatchCounts, started: number): string {
  const minutes = (Date.now() - started) / 60_000;
  return minutes > 0 ? ((counts.done + counts.failed) / minutes).toFixed(1) : '0';
}

export function describeCounts(batchId: string, counts: BatchCounts, started?: number): string {
  const finished = counts.done + counts.failed;
  const percent = counts.total > 0 ? Math.floor((finished / counts.total) * 100) : 0;
  const rate = started !== undefined ? ` | ${ratePerMinute(counts, started)}/min` : '';
  const held = counts.held > 0 ? `, ${counts.held} held for approval` : '';
  return `${batchId}: ${finished}/${counts.total} (${percent}%) | ${counts.done} done, ${counts.failed} failed, ${counts.active} rendering, ${counts.queued} queued${held}${rate}`;
}
