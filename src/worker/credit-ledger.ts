import { readCreditBalance, type CreditReading } from '../did/billing.js';
import { parseDidTime, type DidClient, type Talk } from '../did/index.js';
import { DownloadError } from '../download/downloader.js';
import type { BatchStore } from '../queue/batches.js';
import { requestSha256, rowCredits, type ChargedTalk } from '../queue/credits.js';
import { jobIdFor, type JobPayload } from '../queue/payload.js';
import type { Logger } from '../shared/logger.js';

/**
 * Takes a batch's D-ID balance before its first create. Every worker asks before working a row of a batch it has not
 * seen; the first to record (HSETNX in the ledger) wins, and no row of the batch is worked until its worker's
 * attempt is over, so the winner's reading predates every create of the batch. A reading that failed is recorded
 * too: a later one would count creates already made.
 */
export class BatchCreditsBefore {
  readonly #known = new Map<string, Promise<void>>();
  readonly #settled = new Set<string>();

  constructor(
    private readonly options: {
      batches: Pick<BatchStore, 'hasCreditsBefore' | 'recordCreditsBefore'>;
      did: Pick<DidClient, 'getCredits' | 'redact'>;
      logger: Logger;
      onReading?: (reading: CreditReading) => void;
    },
  ) {}

  /** Whether this process knows the batch's balance before is recorded: no need to look again. */
  settled(batchId: string): boolean {
    return this.#settled.has(batchId);
  }

  /** Never throws: the ledger must not stop a row. */
  ensure(batchId: string): Promise<void> {
    let pending = this.#known.get(batchId);
    if (!pending) {
      pending = this.#record(batchId);
      this.#known.set(batchId, pending);
      // A failure (Redis away) is tried again by the next row rather than remembered.
      void pending.then(
        () => this.#settled.add(batchId),
        () => this.#known.delete(batchId),
      );
    }
    return pending.catch((error: unknown) => this.options.logger.warn({ batchId, err: String(error) }, 'could not record the credits before the batch'));
  }

  async #record(batchId: string): Promise<void> {
    const { batches, did, logger } = this.options;
    if (await batches.hasCreditsBefore(batchId)) return;
    const reading = await readCreditBalance(did);
    if (reading.remaining !== null) this.options.onReading?.(reading);
    if (await batches.recordCreditsBefore(batchId, reading)) {
      logger.debug({ batchId, remaining: reading.remaining, ...(reading.error ? { err: reading.error } : {}) }, 'D-ID credits before the batch');
    }
  }
}

const TALK_READ_TIMEOUT_MS = 5_000;

/** talkbatch's failure codes for a talk D-ID ended `error` or `rejected`: worth a refund claim. */
const CLAIMABLE_CODES = new Set(['TALK_ERROR', 'TALK_REJECTED']);

/**
 * The created talk of a row that failed for good, or undefined when the row never created one. D-ID is asked for the
 * talk once (its created_at and duration); when that fails the ledger's own times and the estimate stand in.
 */
export async function chargedTalkOf(
  data: JobPayload,
  jobId: string | undefined,
  error: Error,
  did: Pick<DidClient, 'getTalk'>,
): Promise<ChargedTalk | undefined> {
  const state = data.state;
  const talkId = state?.talkId;
  if (!talkId) return undefined;
  let talk: Talk | undefined;
  try {
    // Bounded: the row's outcome (and the batch's finish) waits on it.
    talk = await did.getTalk(talkId, { signal: AbortSignal.timeout(TALK_READ_TIMEOUT_MS) });
  } catch {
    talk = undefined;
  }
  const failure = state.failure;
  const downloadFailed = error instanceof DownloadError && error.reason !== 'file-name';
  const claim = (failure !== undefined && CLAIMABLE_CODES.has(failure.code)) || (failure === undefined && downloadFailed);
  const createdAt = talk?.created_at ? isoOrNull(parseDidTime(talk.created_at)) : (state.talkCreatedAt ?? (state.renderStartedAt ? isoOrNull(state.renderStartedAt) : null));
  return {
    talkId,
    rowKey: data.rowKey,
    createdAt,
    kind: failure?.kind ?? (downloadFailed ? 'ResultNotDownloaded' : 'Error'),
    description: failure?.description ?? error.message,
    details: failure?.details ?? (downloadFailed ? JSON.stringify({ reason: error.reason, ...(error.status !== undefined ? { status: error.status } : {}) }) : null),
    requestSha256: requestSha256(data, jobId ?? jobIdFor(data.batchId, data.rowKey)),
    ...rowCredits(data, talk?.duration),
    claim,
    failedAt: new Date().toISOString(),
  };
}

function isoOrNull(ms: number): string | null {
  return Number.isFinite(ms) ? new Date(ms).toISOString() : null;
}
