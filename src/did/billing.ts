import type { DidClient } from './client.js';
import { DidRateLimitError } from './errors.js';

/*
 * D-ID's billing as best known: the one place talkbatch's credit estimates come from.
 *
 * D-ID's API does not say what a talk cost: GET /talks/{id} has no credits field (its published GetTalkDto has
 * none; real answers add `duration`, the video's length in seconds), and GET /credits gives only the account's
 * balance. D-ID sells plans in minutes of video and bills by video length (the talk schema's pad_audio "will increase
 * the video duration & the credits it consumes"); its plans have counted one credit per 15 seconds of video (Lite:
 * 10 minutes = 40 credits). So: one credit per started 15 s of a talk's video, at least one per talk. Unverified
 * against a live account: compare GET /credits before and after a batch (talkbatch records both) to check yours.
 */

export const SECONDS_PER_CREDIT = 15;

/** The rule in words, for `talkbatch validate` and the docs. */
export const BILLING_RULE = `1 credit per started ${SECONDS_PER_CREDIT} s of video, at least 1 per talk`;

/** Credits for a talk whose video lasts `seconds`; a talk of unknown length (null) counts as the minimum, 1. */
export function estimateCredits(seconds: number | null | undefined): number {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds) || seconds <= 0) return 1;
  return Math.max(1, Math.ceil(seconds / SECONDS_PER_CREDIT));
}

/**
 * Seconds of video a talk should make before D-ID says: the script's estimate (characters / 14, see the manifest
 * reader) plus `config.pad_audio`; null for an audio script (its length is known once D-ID has it).
 */
export function expectedTalkSeconds(estimatedSeconds: number | null | undefined, talk: { config?: { pad_audio?: number | undefined } | undefined }): number | null {
  if (estimatedSeconds === null || estimatedSeconds === undefined) return null;
  return estimatedSeconds + (talk.config?.pad_audio ?? 0);
}

/** The estimate for one talk before D-ID has made it. */
export function estimateTalkCredits(estimatedSeconds: number | null | undefined, talk: { config?: { pad_audio?: number | undefined } | undefined }): number {
  return estimateCredits(expectedTalkSeconds(estimatedSeconds, talk));
}

/** D-ID's balance at one moment; `remaining` is null when GET /credits did not answer (and `error` says why). */
export interface CreditReading {
  remaining: number | null;
  total: number | null;
  /** ISO 8601. */
  at: string;
  error?: string;
}

const RATE_LIMITED_TRIES = 3;
const MAX_RATE_LIMIT_WAIT_MS = 2_000;
/** A reading holds up a batch's first rows (or its report): past this, the balance is recorded as unknown. */
const READING_TIMEOUT_MS = 15_000;

/** GET /credits, never throwing: a 429 is waited out a few times (the client retries 5xx itself), anything else is recorded. */
export async function readCreditBalance(did: Pick<DidClient, 'getCredits' | 'redact'>, timeoutMs = READING_TIMEOUT_MS): Promise<CreditReading> {
  const signal = AbortSignal.timeout(timeoutMs);
  for (let attempt = 1; ; attempt += 1) {
    try {
      const credits = await did.getCredits({ signal });
      return { remaining: credits.remaining, total: credits.total, at: new Date().toISOString() };
    } catch (error) {
      if (error instanceof DidRateLimitError && attempt < RATE_LIMITED_TRIES) {
        await new Promise((resolve) => setTimeout(resolve, Math.min(error.retryAfterMs ?? 500, MAX_RATE_LIMIT_WAIT_MS)));
        continue;
      }
      const message = signal.aborted ? `no answer within ${timeoutMs} ms` : error instanceof Error ? error.message : String(error);
      return { remaining: null, total: null, at: new Date().toISOString(), error: did.redact(message) };
    }
  }
}
