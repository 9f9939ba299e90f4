import { z } from 'zod';

/** What the simulator does; every knob can be changed while it runs (`setKnobs`, `POST /__sim/knobs`). */
export interface SimulatorKnobs {
  /** Time from create to a final status; the talk is `created` for the first 20 % of it, then `started`. */
  renderMs: number;
  /** 0..1: each talk's render time is renderMs ± this fraction, at random. */
  renderJitter: number;
  /** Talks in `created`/`started` at once; a create above it gets 429. */
  maxConcurrentRenders: number;
  /** Requests per second per API key over all API endpoints (token bucket, burst of one second). */
  rateLimitPerSecond: number;
  /** Retry-After value on 429s; null sends no Retry-After header (D-ID documents none). */
  retryAfterSeconds: number | null;
  /** Credits left; each create costs what its video's length bills (talks.ts billedCredits); a create costing more than is left gets 402. */
  credits: number;
  /** Whether a talk that ends `error` or `rejected` is charged, as D-ID charges it (default true); off, only talks that end `done` cost credits. */
  billFailedTalks: boolean;
  /**
   * D-ID's answers show `duration` on talks created, started and done; whether a talk that ended `error` or `rejected`
   * carries it is not documented. On, such talks answer without it (default off: they carry it like the others).
   */
  omitDurationOnFailure: boolean;
  /** Probability that any API request answers 500 before doing anything. */
  failureRate5xx: number;
  /** Probability that any API request answers 429 before doing anything (chaos testing). */
  rateLimitRate: number;
  /** Probability that POST /talks creates the talk and then answers the API gateway's 504. */
  gateway504AfterCreateRate: number;
  /** Probability that a talk ends `error` (FaceError). */
  errorRate: number;
  /** Probability that a talk ends `rejected` (TextModerationError). */
  rejectRate: number;
  /** Lifetime of a presigned result_url. */
  resultUrlTtlMs: number;
  /** Probability that a result_url is already expired when issued. */
  expireBeforeDownloadRate: number;
  /** Probability that a download sends the full Content-Length, half the bytes, then drops the connection. */
  truncateDownloadRate: number;
  /** How long the result server takes before it answers a video download (S3's latency for a large MP4). */
  downloadDelayMs: number;
  /** Delay between a talk's final status and its webhook POST. */
  webhookDelayMs: number;
  /** D-ID accepts only https webhooks; tests receive them over http on localhost. */
  allowHttpWebhooks: boolean;
  /** Each MP4 ends with a top-level `free` box naming its talk (`talk_id=tlk_...`), so a test can tell whose file it is. */
  stampTalkId: boolean;
  /** "lite" lacks the plan-gated features: a create using `config.stitch` or script `subtitles` gets 403 PermissionError. */
  plan: 'full' | 'lite';
  /** Probability that a create is refused with 451 (TextModerationError / AudioModerationError) before anything is spent. */
  moderationRate: number;
  /**
   * Source check: a talk whose `source_url` is in this list, or whose path ends in a non-image extension (.mp4,
   * .mov, .webm, .html, .htm, .txt, .pdf, .json), ends `error` with SourceError. The simulator never fetches a
   * user's URL, so the list stands for "D-ID fetched it and found no image"; its own uploads are images by
   * construction (POST /images checks the bytes).
   */
  nonImageSources: readonly string[];
}

export const DEFAULT_KNOBS: Readonly<SimulatorKnobs> = Object.freeze({
  renderMs: 1500,
  renderJitter: 0,
  maxConcurrentRenders: Infinity,
  rateLimitPerSecond: Infinity,
  retryAfterSeconds: 1,
  credits: Infinity,
  billFailedTalks: true,
  omitDurationOnFailure: false,
  failureRate5xx: 0,
  rateLimitRate: 0,
  gateway504AfterCreateRate: 0,
  errorRate: 0,
  rejectRate: 0,
  resultUrlTtlMs: 24 * 60 * 60 * 1000,
  expireBeforeDownloadRate: 0,
  truncateDownloadRate: 0,
  downloadDelayMs: 0,
  webhookDelayMs: 0,
  allowHttpWebhooks: false,
  stampTalkId: false,
  plan: 'full',
  moderationRate: 0,
  nonImageSources: [],
});

/** JSON cannot carry Infinity, so the admin endpoint also takes null or "Infinity" for it. */
const infinity = z
  .union([z.null(), z.literal('Infinity'), z.custom<number>((value) => value === Infinity, 'must be Infinity')])
  .transform(() => Infinity);
const unboundedCount = z.union([z.number().int().min(0), infinity]);
const unboundedRate = z.union([z.number().min(0), infinity]);
const duration = z.number().min(0);
const probability = z.number().min(0).max(1);

const KnobsSchema = z.strictObject({
  renderMs: duration,
  renderJitter: probability,
  maxConcurrentRenders: unboundedCount,
  rateLimitPerSecond: unboundedRate,
  retryAfterSeconds: z.number().int().min(0).nullable(),
  credits: unboundedCount,
  billFailedTalks: z.boolean(),
  omitDurationOnFailure: z.boolean(),
  failureRate5xx: probability,
  rateLimitRate: probability,
  gateway504AfterCreateRate: probability,
  errorRate: probability,
  rejectRate: probability,
  resultUrlTtlMs: duration,
  expireBeforeDownloadRate: probability,
  truncateDownloadRate: probability,
  downloadDelayMs: duration,
  webhookDelayMs: duration,
  allowHttpWebhooks: z.boolean(),
  stampTalkId: z.boolean(),
  plan: z.enum(['full', 'lite']),
  moderationRate: probability,
  nonImageSources: z.array(z.string().max(4096)).max(10_000).readonly(),
});
const KnobsPatchSchema = KnobsSchema.partial();

export class InvalidKnobsError extends Error {
  constructor(readonly details: string) {
    super(`invalid simulator knobs: ${details}`);
    this.name = 'InvalidKnobsError';
  }
}

/** Applies a partial update (from code or from JSON) to `current`; throws InvalidKnobsError and changes nothing when any value is invalid. */
export function mergeKnobs(current: SimulatorKnobs, patch: unknown): SimulatorKnobs {
  const parsedPatch = KnobsPatchSchema.safeParse(patch);
  if (!parsedPatch.success) throw new InvalidKnobsError(z.prettifyError(parsedPatch.error));
  const givenValues = Object.fromEntries(Object.entries(parsedPatch.data).filter(([, value]) => value !== undefined));
  const merged = KnobsSchema.safeParse({ ...current, ...givenValues });
  if (!merged.success) throw new InvalidKnobsError(z.prettifyError(merged.error));
  if (merged.data.errorRate + merged.data.rejectRate > 1) throw new InvalidKnobsError('errorRate + rejectRate must not exceed 1');
  return merged.data;
}

/** Knobs as JSON, with Infinity spelled "Infinity" (JSON.stringify would turn it into null, which means "no header" for retryAfterSeconds). */
export function knobsToJson(knobs: SimulatorKnobs): Record<string, number | string | boolean | null | readonly string[]> {
  return Object.fromEntries(Object.entries(knobs).map(([name, value]) => [name, value === Infinity ? 'Infinity' : (value as number | string | boolean | null | readonly string[])]));
}
