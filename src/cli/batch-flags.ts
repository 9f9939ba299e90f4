import type { Config } from '../config/index.js';
import { BILLING_RULE } from '../did/billing.js';
import { DidClient } from '../did/index.js';
import type { HeldSummary } from '../app/index.js';
import type { BatchBudget } from '../queue/batches.js';
import { UsageError } from '../shared/errors.js';

export const BATCH_OPTIONS = {
  batch: { type: 'string' },
  'allow-partial': { type: 'boolean' },
  'max-talks': { type: 'string' },
  'max-video-seconds': { type: 'string' },
  sample: { type: 'string' },
  'no-cache': { type: 'boolean' },
} as const;

export const BATCH_HELP = `Batch options:
  --batch ID             batch id (default: generated, e.g. 20261125-071502-a1b2c3); the same manifest
                         and id add nothing twice
  --allow-partial        enqueue the valid rows even when some rows are invalid
  --max-talks N          never create more than N talks for this batch (counted in Redis, all workers)
  --max-video-seconds S  stop creating talks once the batch's estimated video seconds would pass S
  --sample N             make only N rows chosen to cover the sheet (the first, the longest script, one per
                         voice, then random ones, the same for the same --batch) and hold the rest, un-spent,
                         until "talkbatch approve <batch>" ("talkbatch cancel <batch>" drops them)
  --no-cache             render every row even when an identical request was rendered before (by default
                         such a row is copied from the render cache and nothing is paid; see talkbatch cache)`;

export interface BatchFlags {
  batch?: string;
  'allow-partial'?: boolean;
  'max-talks'?: string;
  'max-video-seconds'?: string;
  sample?: string;
  'no-cache'?: boolean;
}

/** --sample N: how many rows to make before the rest waits for approval. */
export function sampleFrom(flags: BatchFlags): number | undefined {
  return flags.sample === undefined ? undefined : positive(flags.sample, '--sample', true);
}

export function budgetFrom(flags: BatchFlags): BatchBudget | undefined {
  const budget: BatchBudget = {};
  if (flags['max-talks'] !== undefined) budget.maxTalks = positive(flags['max-talks'], '--max-talks', true);
  if (flags['max-video-seconds'] !== undefined) budget.maxVideoSeconds = positive(flags['max-video-seconds'], '--max-video-seconds', false);
  return Object.keys(budget).length > 0 ? budget : undefined;
}

function positive(value: string, flag: string, integer: boolean): number {
  const number = Number(value);
  if (!Number.isFinite(number) || number <= 0 || (integer && !Number.isInteger(number))) {
    throw new UsageError(`${flag} must be a positive ${integer ? 'whole number' : 'number'}`);
  }
  return number;
}

/** "the remaining 95 rows (~480 s of video, ~95 credits)": what approving a sample would spend. */
export function describeHeld(held: HeldSummary): string {
  return `the remaining ${held.rows} ${held.rows === 1 ? 'row' : 'rows'} (~${Math.round(held.seconds)} s of video, ~${held.credits} credits)`;
}

/** The line that says how a held batch goes on later. */
export function approveLaterLine(batchId: string, held: HeldSummary): string {
  return `held: ${describeHeld(held)} wait for "talkbatch approve ${batchId}" ("talkbatch cancel ${batchId}" drops them)`;
}

/**
 * Warns (never fails) when the account's credits look too few for the batch. Silent without a key. `needed` is the
 * batch's estimate by the one billing rule (src/did/billing.ts, summed per talk by the manifest reader).
 */
export async function creditPreflight(config: Config, rows: number, estimatedSeconds: number, needed: number, warn: (line: string) => void): Promise<void> {
  if (!config.didApiKey || rows === 0) return;
  const did = new DidClient({ apiKey: config.didApiKey, baseUrl: config.didApiUrl, timeoutMs: Math.min(config.httpTimeoutMs, 10_000) });
  try {
    const credits = await did.getCredits();
    if (credits.remaining < needed) {
      warn(
        `warning: D-ID reports ${credits.remaining} credits left; this batch needs about ${needed} (${rows} talks, ~${Math.round(estimatedSeconds)} s; ${BILLING_RULE}). ` +
          'Rows beyond that wait (the queue pauses on 402) until credits are added.',
      );
    }
  } catch (error) {
    warn(`warning: could not check D-ID credits (${did.redact((error as Error).message)})`);
  } finally {
    await did.close();
  }
}
