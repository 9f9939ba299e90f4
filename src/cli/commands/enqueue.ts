import { parseArgs } from 'node:util';
import { enqueueManifest } from '../../queue/producer.js';
import { openQueue } from '../../queue/talk-queue.js';
import { UsageError } from '../../shared/errors.js';
import { configFromFlags, GLOBAL_HELP, GLOBAL_OPTIONS } from '../context.js';
import { sampleOf } from '../../app/sample.js';
import { BATCH_HELP, BATCH_OPTIONS, approveLaterLine, budgetFrom, creditPreflight, sampleFrom } from '../batch-flags.js';
import { MANIFEST_HELP, MANIFEST_OPTIONS, manifestArgs } from '../manifest-flags.js';
import { printIssues } from '../output.js';

export const ENQUEUE_HELP = `Usage: talkbatch enqueue <manifest> [options]

Validates the manifest and adds one job per row to the queue for "talkbatch worker" processes.
Prints the batch id. Needs REDIS_URL (workers must reach the same Redis).

Options:
  --json                 print the result as JSON
${BATCH_HELP}
${MANIFEST_HELP}
${GLOBAL_HELP}`;

export async function enqueueCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { ...GLOBAL_OPTIONS, ...MANIFEST_OPTIONS, ...BATCH_OPTIONS, json: { type: 'boolean' } },
  });
  if (values.help) {
    console.log(ENQUEUE_HELP);
    return 0;
  }
  const { manifest, options } = manifestArgs(values, positionals, 'enqueue');
  const config = configFromFlags(values);
  if (!config.redisUrl) throw new UsageError('REDIS_URL is not set: enqueue adds jobs for workers elsewhere, so it needs their Redis (or use "talkbatch run")');
  const budget = budgetFrom(values);
  const sample = sampleFrom(values);
  const handle = await openQueue(config, config.redisUrl);
  try {
    const result = await enqueueManifest(handle, manifest, {
      ...options,
      ...(values.batch ? { batchId: values.batch } : {}),
      allowPartial: values['allow-partial'] === true,
      ...(budget ? { budget } : {}),
      ...(sample !== undefined ? { sample: sampleOf(sample) } : {}),
      ...(values['no-cache'] ? { cache: false } : {}),
    });
    if (result.issues.length > 0) printIssues(result.issues);
    // Held rows cost nothing until approved: only what the workers will make now is checked against the credits.
    await creditPreflight(
      config,
      result.added - result.held,
      result.estimatedSeconds - result.heldSeconds,
      Math.max(0, result.report.estimatedCredits - result.heldCredits),
      (line) => process.stderr.write(`${line}\n`),
    );
    if (values.json) {
      const { report: _report, ...summary } = result;
      console.log(JSON.stringify(summary, null, 2));
    } else {
      console.log(result.batchId);
      process.stderr.write(
        `${result.added} rows enqueued, ${result.alreadyPresent} already present, ${result.invalid} invalid, ${result.skippedEmpty} empty (~${Math.round(result.estimatedSeconds)} s of video)\n`,
      );
      if (result.sample) {
        process.stderr.write(`sample: ${result.sample.map((pick) => `${pick.rowKey} (${pick.reason})`).join(', ')}\n`);
        if (result.held > 0) process.stderr.write(`${approveLaterLine(result.batchId, { rows: result.held, seconds: result.heldSeconds, credits: result.heldCredits })}\n`);
      }
    }
    return 0;
  } catch (error) {
    if (printIssues(error)) return 2;
    throw error;
  } finally {
    await handle.close();
  }
}
