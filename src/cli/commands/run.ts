import { once } from 'node:events';
import { createInterface } from 'node:readline/promises';
import { parseArgs } from 'node:util';
import { BatchService } from '../../app/batch-service.js';
import { sampleOf } from '../../app/sample.js';
import type { Config } from '../../config/index.js';
import type { DidClient } from '../../did/index.js';
import { enqueueManifest } from '../../queue/producer.js';
import { openQueue } from '../../queue/talk-queue.js';
import { LiveReport } from '../../report/results.js';
import type { ManifestOptions } from '../../manifest/index.js';
import type { Logger } from '../../shared/logger.js';
import { UsageError } from '../../shared/errors.js';
import { startTalkWorker } from '../../worker/create-worker.js';
import { waitForPreviews } from '../../worker/preview-worker.js';
import { PREVIEW_HELP, PREVIEW_OPTIONS, previewOverrides } from '../preview-flags.js';
import { configFromFlags, GLOBAL_HELP, GLOBAL_OPTIONS, loggerFor, onStopSignals, redisFor, stderrIsTty } from '../context.js';
import { BATCH_HELP, BATCH_OPTIONS, approveLaterLine, budgetFrom, creditPreflight, describeHeld, sampleFrom } from '../batch-flags.js';
import type { BatchBudget, BatchCounts } from '../../queue/batches.js';
import { MANIFEST_HELP, MANIFEST_OPTIONS, manifestArgs } from '../manifest-flags.js';
import { printIssues } from '../output.js';
import { watchBatch } from '../progress.js';

const REPORT_REFRESH_MS = 5_000;
/** How long `run` waits for the last rows' previews after the last video is in. */
const PREVIEW_WAIT_MS = 120_000;

export const RUN_HELP = `Usage: talkbatch run <manifest> [options]

Validates the manifest, enqueues one job per row, runs workers in this process until every row is
done or failed, then writes out/<batch>/results.csv, results.jsonl and index.html (a page that plays
every video, in pages of 1,000 rows above 2,000). While rows finish, results.jsonl gets their lines
appended (a later line for a row supersedes an earlier one); the CSV and the page are rebuilt now and
then. Rerunning the same manifest with the same --batch adds nothing and makes nothing twice.

With --sample N only N rows are made first and their review page written; on a terminal, run then asks
whether to approve the rest (y goes on with the batch); otherwise, or on any other answer, the rest stays
held, un-spent, for "talkbatch approve <batch>" later, and run exits. Held rows need a Redis that outlives
the run: set REDIS_URL (without it, --sample only works on a terminal, and what is not approved is dropped).

${BATCH_HELP}
${MANIFEST_HELP}
${PREVIEW_HELP}
${GLOBAL_HELP}

Exit codes: 0 all rows done, 1 some rows failed or a runtime error, 2 usage, config or manifest error.`;

export async function runCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { ...GLOBAL_OPTIONS, ...MANIFEST_OPTIONS, ...BATCH_OPTIONS, ...PREVIEW_OPTIONS },
  });
  if (values.help) {
    console.log(RUN_HELP);
    return 0;
  }
  const { manifest, options: manifestOptions } = manifestArgs(values, positionals, 'run');
  const config = configFromFlags(values, previewOverrides(values));
  if (!config.didApiKey) {
    throw new UsageError('DID_API_KEY is not set. Put your D-ID key in the environment or .env, or try "npm run demo" to use the built-in simulator.');
  }
  return runBatch({
    config,
    logger: loggerFor(config),
    manifest,
    manifestOptions,
    ...(values.batch ? { batchId: values.batch } : {}),
    allowPartial: values['allow-partial'] === true,
    quiet: values.quiet === true,
    budget: budgetFrom(values),
    sample: sampleFrom(values),
    ...(values['no-cache'] ? { cache: false } : {}),
  });
}

/** Asks on the terminal; true for y or yes. Ctrl-C or the end of input is a no. */
export async function askOnTerminal(question: string): Promise<boolean> {
  const terminal = createInterface({ input: process.stdin, output: process.stderr });
  const closed = once(terminal, 'close').then(() => false);
  terminal.on('SIGINT', () => terminal.close());
  try {
    return await Promise.race([terminal.question(question).then((answer) => /^y(es)?$/i.test(answer.trim())), closed]);
  } finally {
    terminal.close();
  }
}

export interface RunBatchOptions {
  config: Config;
  logger: Logger;
  manifest: string;
  manifestOptions: ManifestOptions;
  batchId?: string;
  allowPartial?: boolean;
  quiet?: boolean;
  did?: DidClient;
  budget?: BatchBudget | undefined;
  /** Make this many rows first; the rest is held until approved. */
  sample?: number | undefined;
  /**
   * Asks whether to approve a sample's held rows once the sample is made (true: go on with the batch). Default:
   * askOnTerminal when standard input is a terminal; without either, run stops after the sample.
   */
  confirm?: ((question: string) => Promise<boolean>) | undefined;
  /** false: render every row even when the render cache has its request (--no-cache). */
  cache?: boolean;
}

/** enqueue + in-process workers + progress + report: the whole job for one manifest. */
export async function runBatch(options: RunBatchOptions): Promise<number> {
  const { config, logger } = options;
  const confirm = options.confirm ?? (process.stdin.isTTY ? askOnTerminal : undefined);
  const redis = await redisFor(config);
  const handle = await openQueue(config, redis.url).catch(async (error: unknown) => {
    await redis.stop();
    throw error;
  });
  let worker: Awaited<ReturnType<typeof startTalkWorker>> | undefined;
  const stopWatching = new AbortController();
  const removeSignals = onStopSignals(() => stopWatching.abort());
  try {
    // A private Redis goes when run exits: held rows could never be approved later, so the question must be asked.
    const heldOutlivesRun = redis.source === 'external';
    if (options.sample !== undefined && !heldOutlivesRun && !confirm) {
      throw new UsageError('--sample holds rows for "talkbatch approve" later, which needs a Redis that outlives this run: set REDIS_URL (or run on a terminal to approve right away)');
    }
    let enqueued;
    try {
      enqueued = await enqueueManifest(handle, options.manifest, {
        ...options.manifestOptions,
        ...(options.batchId ? { batchId: options.batchId } : {}),
        allowPartial: options.allowPartial === true,
        ...(options.budget ? { budget: options.budget } : {}),
        ...(options.sample !== undefined ? { sample: sampleOf(options.sample) } : {}),
        ...(options.cache === false ? { cache: false } : {}),
      });
    } catch (error) {
      if (printIssues(error)) return 2;
      throw error;
    }
    if (enqueued.issues.length > 0) printIssues(enqueued.issues);
    // Held rows cost nothing until approved: only the rows made now are checked against the credits.
    const toMake = enqueued.added - enqueued.held;
    if (toMake > 0) {
      const needed = Math.max(0, enqueued.report.estimatedCredits - enqueued.heldCredits);
      await creditPreflight(config, toMake, enqueued.estimatedSeconds - enqueued.heldSeconds, needed, (line) => process.stderr.write(`${line}\n`));
    }
    const say = (line: string): void => {
      if (!options.quiet) process.stderr.write(`${line}\n`);
    };
    say(
      `batch ${enqueued.batchId}: ${enqueued.added} rows enqueued` +
        (enqueued.alreadyPresent ? `, ${enqueued.alreadyPresent} already in the batch` : '') +
        (enqueued.skippedEmpty ? `, ${enqueued.skippedEmpty} empty rows skipped` : '') +
        ` (~${Math.round(enqueued.estimatedSeconds)} s of video)`,
    );
    if (enqueued.sample) say(`sample: ${enqueued.sample.map((pick) => `${pick.rowKey} (${pick.reason})`).join(', ')}`);

    // The report is kept current while rows finish at a cost in proportion to what changed (LiveReport).
    const live = new LiveReport(handle, enqueued.batchId, config.outDir, { shareBaseUrl: config.shareBaseUrl });
    worker = await startTalkWorker({
      config,
      redisUrl: redis.url,
      logger,
      ...(options.did ? { did: options.did } : {}),
      onRowFinished: (batchId, rowKey) => {
        if (batchId === enqueued.batchId) live.rowFinished(rowKey);
      },
    });
    const activeWorker = worker;
    let lastReportAt = Date.now();
    let reporting = false;
    const refreshReport = (): void => {
      if (reporting || Date.now() - lastReportAt < REPORT_REFRESH_MS) return;
      reporting = true;
      void live
        .refresh()
        .catch((error: unknown) => logger.warn({ err: (error as Error).message }, 'could not refresh the report'))
        .finally(() => {
          lastReportAt = Date.now();
          reporting = false;
        });
    };
    const follow = (): Promise<BatchCounts> =>
      watchBatch({
        onTick: () => refreshReport(),
        batches: handle.batches,
        batchId: enqueued.batchId,
        tty: stderrIsTty(),
        quiet: options.quiet === true,
        signal: stopWatching.signal,
        stopWhen: () => activeWorker.fatal !== undefined,
      });
    const going = (): boolean => !stopWatching.signal.aborted && !activeWorker.fatal;
    // Posters and GIFs are made on their own queue after each row's slot is free: let them finish.
    const previewsDone = async (): Promise<void> => {
      if (!going()) return;
      const pending = await waitForPreviews(activeWorker.previews, enqueued.batchId, { timeoutMs: PREVIEW_WAIT_MS, signal: stopWatching.signal });
      if (pending > 0) say(`${pending} previews still being made; "talkbatch report ${enqueued.batchId}" lists them once a worker made them`);
    };
    let counts = await follow();
    // Only held rows are left: the sample is made. Its review page comes first, then the question.
    if (counts.held > 0 && going()) {
      await previewsDone();
      const review = await live.final();
      const service = new BatchService({ config, handle, logger });
      const held = await service.held(enqueued.batchId);
      console.log(`sample made: ${counts.done} done, ${counts.failed} failed\nreview:  ${review.html}`);
      const approved = confirm ? await confirm(`approve ${describeHeld(held)}? [y/N] `) : false;
      if (!approved) {
        await service.close();
        await worker.close();
        console.log(
          heldOutlivesRun
            ? approveLaterLine(enqueued.batchId, held)
            : `not approved: ${describeHeld(held)} were not made; this run's private Redis goes with it (set REDIS_URL to keep a sample for "talkbatch approve" later)`,
        );
        return counts.failed > 0 ? 1 : 0;
      }
      const { released } = await service.approve(enqueued.batchId);
      await service.close();
      say(`approved: ${released} rows enqueued`);
      counts = await follow();
    }
    await previewsDone();
    await worker.close();
    const report = await live.final();
    if (worker.fatal) {
      process.stderr.write(`error: ${worker.fatal.message}\n`);
      return 1;
    }
    const finished = counts.done + counts.failed >= counts.total;
    console.log(
      `${finished ? 'finished' : 'stopped'}: ${counts.done} done, ${counts.failed} failed` +
        (finished ? '' : `, ${counts.total - counts.done - counts.failed - counts.held} not finished (run "talkbatch worker" to go on)`) +
        (counts.held > 0 ? `, ${counts.held} held for "talkbatch approve ${enqueued.batchId}"` : '') +
        `\nvideos:  ${report.dir}\nreview:  ${report.html}\nresults: ${report.csv}\n         ${report.jsonl}`,
    );
    return counts.failed > 0 || !finished ? 1 : 0;
  } finally {
    removeSignals();
    await worker?.close();
    await handle.close();
    await redis.stop();
  }
}
