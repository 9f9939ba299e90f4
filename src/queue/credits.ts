import { createHash } from 'node:crypto';
import { estimateCredits, estimateTalkCredits, type CreditReading } from '../did/billing.js';
import { talkTagFor, userDataFor, type JobPayload } from './payload.js';

/**
 * Where a row's credits come from: `d-id` when D-ID reported the talk's video length (`duration`) and the billing
 * rule (src/did/billing.ts) was applied to it; `estimate` when it did not, and the script's estimate was used.
 * D-ID itself never states a talk's credits.
 */
export type CreditsSource = 'd-id' | 'estimate';

export interface RowCredits {
  credits: number;
  creditsSource: CreditsSource;
}

/** A row's credits: from the `duration` D-ID reported for its talk when there is one, else the estimate. */
export function rowCredits(payload: Pick<JobPayload, 'estimatedSeconds' | 'talk'>, reportedSeconds?: unknown): RowCredits {
  if (typeof reportedSeconds === 'number' && Number.isFinite(reportedSeconds) && reportedSeconds >= 0) {
    return { credits: estimateCredits(reportedSeconds), creditsSource: 'd-id' };
  }
  return { credits: estimateTalkCredits(payload.estimatedSeconds, payload.talk), creditsSource: 'estimate' };
}

/**
 * A created (so paid) talk of a row that failed, as the ledger keeps it. `claim` marks the ones worth a refund
 * claim: D-ID ended the talk `error` or `rejected`, or it was done but its video never reached the disk.
 */
export interface ChargedTalk {
  talkId: string;
  rowKey: string;
  /** D-ID's created_at when it could be read at the failure, else when talkbatch recorded the create (ISO 8601). */
  createdAt: string | null;
  /** D-ID's error kind (FaceError, TextModerationError, ...), or talkbatch's for a failure on its side of the talk. */
  kind: string;
  description: string;
  /** D-ID's `details`, JSON, bounded. */
  details: string | null;
  /** See requestSha256. */
  requestSha256: string;
  credits: number;
  creditsSource: CreditsSource;
  claim: boolean;
  /** When the row failed for good (ISO 8601). */
  failedAt: string;
}

/** JSON with object keys sorted at every level and no whitespace: the same value always gives the same text. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map((item) => canonicalJson(item === undefined ? null : item)).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, item]) => item !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([key, item]) => `${JSON.stringify(key)}:${canonicalJson(item)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/**
 * SHA-256 (hex) of the POST /talks body a row's payload defines, as canonical JSON: its talk with the user_data
 * talkbatch sent (the row's own value plus its tag for this job and retry generation), without `webhook`. The worker
 * does not keep the bytes it sent, so this is rebuilt from the stored payload: it names the request, and is the hash
 * of the bytes on the wire only up to key order and the webhook URL (talkbatch's receiver URL carries a secret
 * token). A local image or audio file appears by its path (`source_file`, `audio_file`), not D-ID's upload URL.
 */
export function requestSha256(payload: Pick<JobPayload, 'talk' | 'generation'>, jobId: string): string {
  const { webhook: _webhook, ...talk } = payload.talk;
  const body = { ...talk, user_data: userDataFor(payload.talk.user_data, talkTagFor(jobId, payload.generation)) };
  return createHash('sha256').update(canonicalJson(body)).digest('hex');
}

/** The batch's credits as the ledger has them. */
export interface BatchCreditLedger {
  /** D-ID's balance just before the batch's first create (taken once, whichever worker gets there first). */
  before: CreditReading | null;
  /** D-ID's balance once the batch's last row had an outcome (taken again if the batch grows and finishes again). */
  after: CreditReading | null;
  /** Σ the credits of the batch's done rows and of the created talks of its failed rows (each talk once). */
  rows: number;
}

/** A batch's credits as the API, the library, `talkbatch status` and the review page show them. */
export interface BatchCredits {
  /** D-ID's remaining credits just before the batch's first create; null when unknown. */
  before: number | null;
  /** D-ID's remaining credits once its last row had an outcome; null until then, or when unknown. */
  after: number | null;
  /**
   * before − after: what the account spent while the batch ran, by D-ID's own balance. Other batches or Studio use on
   * the same account at the same time count in it too.
   */
  used: number | null;
  /**
   * Σ the credits talkbatch counts for the batch's talks (done rows, and the created talks of failed rows): the billing
   * rule on the length D-ID reported, or the estimate where it reported none (src/did/billing.ts).
   */
  estimated: number;
}

export function batchCredits(ledger: BatchCreditLedger): BatchCredits {
  const before = ledger.before?.remaining ?? null;
  const after = ledger.after?.remaining ?? null;
  return { before, after, used: before !== null && after !== null ? roundCredits(before - after) : null, estimated: roundCredits(ledger.rows) };
}

/** D-ID reports balances as doubles: keep sums free of float noise (0.1 + 0.2). */
function roundCredits(value: number): number {
  return Math.round(value * 1000) / 1000;
}
