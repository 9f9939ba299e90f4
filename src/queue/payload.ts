import { z } from 'zod';
import { OwnUserData, TalkWithFiles, type CreateTalkRequest } from '../did/schemas.js';
import { idPattern, ROW_ID_PATTERN } from '../manifest/schemas.js';
import { isWindowsReservedName, outputNameBytesProblem } from '../shared/file-names.js';

export const JOB_NAME = 'talk';
export const PAYLOAD_VERSION = 1;

/** Batch ids become part of job ids, Redis keys and folder names (see idPattern). */
export const BATCH_ID_PATTERN = idPattern(80);
export const ROW_KEY_PATTERN = ROW_ID_PATTERN;
const OUTPUT_NAME_PATTERN = /^(?!\.)[^/\\\0-\x1f]{1,150}\.(mp4|mov)$/;

export const BatchId = z
  .string()
  .regex(BATCH_ID_PATTERN, 'batch id: 1-80 letters, digits, "_", "." or "-", starting with a letter or digit')
  .refine((id) => !isWindowsReservedName(id), 'batch id: a Windows device name (CON, NUL, COM1, ...) cannot be a folder name');

/**
 * What the caller asks D-ID to make: any POST /talks body (scalars coerced to D-ID's types). The caller's own
 * `user_data` is sent with talkbatch's tag appended (see userDataFor); `webhook` is the row's own (see docs).
 */
export const TalkSpec = TalkWithFiles.safeExtend({ user_data: OwnUserData.optional() });

export const StepName = z.enum(['submitting', 'rendering', 'downloading']);
export type StepName = z.infer<typeof StepName>;

/**
 * Written by workers only: where a row stands. Each step is checkpointed before its side effect, so a
 * worker that dies anywhere leaves enough behind for the next one to go on without paying twice.
 */
export const WorkerState = z.object({
  step: StepName,
  /** When the current create was first attempted; bounds the reconcile search. */
  submitStartedAt: z.number().optional(),
  talkId: z.string().optional(),
  talkCreatedAt: z.string().optional(),
  renderStartedAt: z.number().optional(),
  polls: z.number().int().nonnegative().default(0),
  /** Creates proven not to have happened (rejected before D-ID accepted them). */
  creates: z.number().int().nonnegative().default(0),
  /** Why the row failed for good (D-ID's kind and description), for the report. */
  failure: z.object({ code: z.string(), kind: z.string(), description: z.string(), details: z.string().optional() }).optional(),
});
export type WorkerState = z.infer<typeof WorkerState>;

export const JobPayloadV1 = z.object({
  v: z.literal(PAYLOAD_VERSION),
  batchId: BatchId,
  rowKey: z.string().regex(ROW_KEY_PATTERN, 'row key: 1-100 letters, digits, "_", "." or "-"'),
  /** Manifest line the row came from, for reports. */
  line: z.number().int().positive().optional(),
  talk: TalkSpec,
  output: z.object({
    name: z
      .string()
      .regex(OUTPUT_NAME_PATTERN, 'output name: a plain file name ending in .mp4 or .mov')
      .refine((name) => !isWindowsReservedName(name), 'output name: a Windows device name (CON, NUL, COM1.txt.mp4, ...)')
      .refine((name) => outputNameBytesProblem(name) === undefined, 'output name: too long in bytes for a file name'),
  }),
  /** The row's original cells, echoed into the results report. */
  input: z.record(z.string(), z.string()).default({}),
  estimatedSeconds: z.number().nonnegative().nullable().optional(),
  /** Bumped by `talkbatch retry`: a retried row's talk gets a new user_data tag, so the failed one is never adopted. */
  generation: z.number().int().nonnegative().default(0),
  state: WorkerState.optional(),
});
export type JobPayload = z.infer<typeof JobPayloadV1>;
export type JobPayloadInput = z.input<typeof JobPayloadV1>;

/** The finished row, stored as the job's return value. */
export interface RowResult {
  status: 'done';
  talkId: string;
  file: string;
  bytes: number;
  sha256: string;
  videoSeconds: number | null;
  renderSeconds: number | null;
  finishedAt: string;
  /** Set when the video was copied from the render cache: the batch and talk that made it. */
  cachedFrom?: { batchId: string; talkId: string };
  /** What the talk cost: see queue/credits.ts rowCredits. */
  credits?: number;
  creditsSource?: 'd-id' | 'estimate';
}

/** The `user_data` tag that lets a lost create be found again (see DidClient.findTalkByUserData). */
export function talkTagFor(jobId: string, generation: number): string {
  return generation > 0 ? `${jobId}#${generation}` : jobId;
}

/**
 * The user_data sent to D-ID: the caller's own value first, as given, then talkbatch's tag. Deterministic, so the
 * talk of a lost create answer is found again by comparing the whole value.
 */
export function userDataFor(own: string | undefined, tag: string): string {
  return own === undefined ? tag : `${own} [talkbatch ${tag}]`;
}

/** D-ID's URLs for a talk's local files, once uploaded. */
export interface UploadedMedia {
  sourceUrl?: string;
  audioUrl?: string;
}

/**
 * The POST /talks body for a row: its talk with uploaded files' URLs in place of their paths, user_data carrying
 * talkbatch's tag, and the webhook D-ID should call.
 */
export function createTalkBody(talk: z.infer<typeof TalkSpec>, tag: string, webhook: string | undefined, uploaded: UploadedMedia = {}): CreateTalkRequest {
  const { webhook: _rowWebhook, source_file: sourceFile, source_link: sourceLink, script, ...rest } = talk;
  if ((sourceFile !== undefined || sourceLink !== undefined) && uploaded.sourceUrl === undefined) throw new Error('createTalkBody: the image is not uploaded yet');
  let sent: CreateTalkRequest['script'];
  if ('audio_file' in script) {
    if (uploaded.audioUrl === undefined) throw new Error('createTalkBody: the local audio is not uploaded yet');
    sent = { type: 'audio', audio_url: uploaded.audioUrl, ...(script.subtitles === undefined ? {} : { subtitles: script.subtitles }) };
  } else {
    sent = script;
  }
  return {
    ...rest,
    ...(uploaded.sourceUrl === undefined ? {} : { source_url: uploaded.sourceUrl }),
    script: sent,
    user_data: userDataFor(talk.user_data, tag),
    ...(webhook ? { webhook } : {}),
  };
}

export function jobIdFor(batchId: string, rowKey: string): string {
  return `${batchId}-${rowKey}`;
}

/** What a report shows as a row's script: the text, or the audio's URL or local file. */
export function scriptText(script: JobPayload['talk']['script'] | undefined): string | null {
  if (!script) return null;
  if (script.type === 'text') return script.input;
  return 'audio_file' in script ? script.audio_file : script.audio_url;
}
