import type { TalkRequestBody } from './did-document.js';

/** D-ID's talk statuses (GetTalkDto.status in the published document). */
export type TalkStatus = 'created' | 'started' | 'done' | 'error' | 'rejected';

/** Owner id of every simulated talk, shaped like D-ID's `<auth provider>|<user id>`. */
export const SIMULATED_OWNER = 'sim|user';
const DEFAULT_SOURCE_URL = 'https://d-id-public-bucket.s3.us-west-2.amazonaws.com/alice.jpg';
const DEFAULT_PROVIDER = { type: 'microsoft', voice_id: 'en-US-JennyNeural' } as const;
/** The share of the render time a talk spends `created` (D-ID's queue + TTS) before it is `started`. */
const QUEUED_SHARE = 0.2;
const AUDIO_SCRIPT_SECONDS = 2;
const FRAMES_PER_SECOND = 25;

/*
 * How long a voice takes to say a script: the simulator's stand-in for D-ID's text-to-speech, deterministic so a test
 * can predict it. 2.8 words a second (with the pauses, about 150 words a minute, a neural voice at its default rate),
 * 0.4 s after each sentence (. ! ? …), 0.15 s at each comma, semicolon or colon, SSML <break time="..."> as written,
 * 0.3 s of lead-in; at least 1 s; plus config.pad_audio. It knows nothing of how talkbatch estimates a script's length
 * (characters / 14), on purpose: a real voice and an estimate disagree too.
 */
const WORDS_PER_SECOND = 2.8;
const SENTENCE_PAUSE_SECONDS = 0.4;
const CLAUSE_PAUSE_SECONDS = 0.15;
const LEAD_IN_SECONDS = 0.3;

/*
 * What D-ID bills a talk, as the simulator bills it: one credit per started 15 s of the talk's video, at least one
 * (D-ID sells plans in minutes of video; its plans have counted 15 s of video per credit). Charged when the talk is
 * created; a talk that ends `error` or `rejected` is charged too unless the billFailedTalks knob is off.
 */
const SECONDS_PER_CREDIT = 15;

export function billedCredits(durationSeconds: number): number {
  return Math.max(1, Math.ceil(durationSeconds / SECONDS_PER_CREDIT));
}

export interface TalkFailure {
  readonly kind: string;
  readonly description: string;
  readonly details?: Record<string, unknown>;
}

export type TalkOutcome = Extract<TalkStatus, 'done' | 'error' | 'rejected'>;

/** A talk as the simulator stores it: its status is not stored but derived from the clock. */
export interface SimulatedTalk {
  readonly id: string;
  /** Creation order; list paging tokens point into it. */
  readonly sequence: number;
  readonly createdAtMs: number;
  readonly renderMs: number;
  /** Decided at create time so that every read of the talk agrees. */
  readonly outcome: TalkOutcome;
  /** D-ID's error for an `error` outcome decided by a check (the source check); random errors are FaceError. */
  readonly failure?: TalkFailure;
  /** The body after D-ID's validation and coercion. */
  readonly request: TalkRequestBody;
  /** The body as it arrived. */
  readonly received: unknown;
}

export function startedAtMs(talk: SimulatedTalk): number {
  return talk.createdAtMs + talk.renderMs * QUEUED_SHARE;
}

export function finishedAtMs(talk: SimulatedTalk): number {
  return talk.createdAtMs + talk.renderMs;
}

export function statusAt(talk: SimulatedTalk, nowMs: number): TalkStatus {
  if (nowMs < startedAtMs(talk)) return 'created';
  if (nowMs < finishedAtMs(talk)) return 'started';
  return talk.outcome;
}

export function isRendering(status: TalkStatus): boolean {
  return status === 'created' || status === 'started';
}

/** All talks, in creation order, with a cheap count of those still rendering. */
export class TalkStore {
  readonly #talks = new Map<string, SimulatedTalk>();
  /** Talks that may still be rendering; finished ones are dropped when counted. */
  readonly #maybeRendering = new Set<SimulatedTalk>();
  #lastSequence = 0;

  add(talk: Omit<SimulatedTalk, 'sequence'>): SimulatedTalk {
    const stored: SimulatedTalk = { ...talk, sequence: ++this.#lastSequence };
    this.#talks.set(stored.id, stored);
    this.#maybeRendering.add(stored);
    return stored;
  }

  get(id: string): SimulatedTalk | undefined {
    return this.#talks.get(id);
  }

  delete(id: string): void {
    const talk = this.#talks.get(id);
    if (!talk) return;
    this.#talks.delete(id);
    this.#maybeRendering.delete(talk);
  }

  renderingCount(nowMs: number): number {
    for (const talk of this.#maybeRendering) {
      if (!isRendering(statusAt(talk, nowMs))) this.#maybeRendering.delete(talk);
    }
    return this.#maybeRendering.size;
  }

  /** Newest first, starting after the talk with sequence `beforeSequence` (exclusive), plus whether more remain. */
  page(limit: number, beforeSequence: number): { talks: SimulatedTalk[]; hasMore: boolean } {
    const older = [...this.#talks.values()].filter((talk) => talk.sequence < beforeSequence).reverse();
    return { talks: older.slice(0, limit), hasMore: older.length > limit };
  }
}

export interface TalkViewContext {
  nowMs: number;
  /** A freshly signed result_url; only called for talks that are done. */
  resultUrl: (talk: SimulatedTalk) => string;
  videoSizeBytes: number;
  /** The omitDurationOnFailure knob. */
  omitDurationOnFailure?: boolean;
}

/** The body D-ID returns for GET /talks/{id} (and in lists, DELETE responses and webhooks). */
export function describeTalk(talk: SimulatedTalk, context: TalkViewContext): Record<string, unknown> {
  const { request } = talk;
  const status = statusAt(talk, context.nowMs);
  const duration = talkDurationSeconds(request);
  const view: Record<string, unknown> = {
    id: talk.id,
    user_id: SIMULATED_OWNER,
    source_url: request.source_url ?? DEFAULT_SOURCE_URL,
    driver_url: 'bank://natural/',
    created_at: new Date(talk.createdAtMs).toISOString(),
    created_by: SIMULATED_OWNER,
    modified_at: new Date(modifiedAtMs(talk, status)).toISOString(),
    status,
    config: echoedConfig(request),
    script: echoedScript(request),
  };
  if (!(context.omitDurationOnFailure === true && (status === 'error' || status === 'rejected'))) view.duration = duration;
  if (status !== 'created') view.started_at = withoutZone(startedAtMs(talk));
  if (request.user_data !== undefined) view.user_data = request.user_data;
  if (request.webhook !== undefined) view.webhook = request.webhook;
  if (request.name !== undefined) view.name = request.name;
  if (request.script.type === 'audio') view.audio_url = request.script.audio_url;
  // Fields real D-ID returns in GET and list answers (the GET /talks example), beyond the published GetTalkDto.
  view.subtitles = request.script.subtitles ?? false;
  view.face = request.face ?? { mask_confidence: -1, detection: [224, 198, 484, 552], overlap: 'no', size: 512, top_left: [98, 119], face_id: 0, detect_confidence: 0.9998 };
  if (request.driver_url !== undefined) view.driver_url = request.driver_url;
  if (isRendering(status)) view.pending_url = `s3://d-id-talks-prod/${encodeURIComponent(SIMULATED_OWNER)}/${talk.id}/${talk.id}.mp4`;
  if (status === 'done') {
    view.result_url = context.resultUrl(talk);
    view.metadata = {
      driver_url: 'bank://natural/driver-4/original',
      mouth_open: false,
      num_faces: 1,
      num_frames: Math.round(duration * FRAMES_PER_SECOND),
      processing_fps: 42.5,
      resolution: [512, 512],
      size_kib: context.videoSizeBytes / 1024,
    };
  }
  if (status === 'error') view.error = talk.failure ?? { kind: 'FaceError', description: 'face not detected' };
  if (status === 'rejected') {
    view.error = { kind: 'TextModerationError', description: 'Automatic content moderation - contact support if you would like to submit for manual review' };
  }
  return view;
}

function modifiedAtMs(talk: SimulatedTalk, status: TalkStatus): number {
  if (status === 'created') return talk.createdAtMs;
  if (status === 'started') return startedAtMs(talk);
  return finishedAtMs(talk);
}

/** D-ID sends some timestamps (started_at) as UTC without the trailing Z; reproduce it so clients learn to cope. */
function withoutZone(ms: number): string {
  return new Date(ms).toISOString().slice(0, -1);
}

/** The video's length in seconds: the voice's time for the script (see WORDS_PER_SECOND) plus pad_audio. */
export function talkDurationSeconds(request: TalkRequestBody): number {
  const padding = request.config?.pad_audio ?? 0;
  if (request.script.type === 'audio') return AUDIO_SCRIPT_SECONDS + padding;
  return Math.round((spokenSeconds(request.script.input, request.script.ssml === true) + padding) * 1000) / 1000;
}

function spokenSeconds(input: string, ssml: boolean): number {
  let breaks = 0;
  let text = input;
  if (ssml) {
    for (const match of input.matchAll(/<break\b[^>]*\btime\s*=\s*["']?\s*(\d+(?:\.\d+)?)\s*(ms|s)\b/gi)) {
      breaks += Number(match[1]) / (match[2]?.toLowerCase() === 'ms' ? 1000 : 1);
    }
    text = input.replace(/<[^>]*>/g, ' ');
  }
  const words = text.match(/[\p{L}\p{N}]+(?:['’-][\p{L}\p{N}]+)*/gu)?.length ?? 0;
  const sentences = text.match(/[.!?…]+(?=\s|$)/g)?.length ?? 0;
  const clauses = text.match(/[,;:](?=\s|$)/g)?.length ?? 0;
  const seconds = LEAD_IN_SECONDS + words / WORDS_PER_SECOND + sentences * SENTENCE_PAUSE_SECONDS + clauses * CLAUSE_PAUSE_SECONDS + breaks;
  return Math.max(1, seconds);
}

/** D-ID echoes the config with its defaults filled in and result_format as an extension (".mp4"). */
function echoedConfig(request: TalkRequestBody): Record<string, unknown> {
  const { result_format: resultFormat = 'mp4', ...requested } = request.config ?? {};
  return { stitch: false, fluent: false, pad_audio: 0, ...requested, result_format: `.${resultFormat}` };
}

/** D-ID echoes the script without its text, giving its length instead. */
function echoedScript(request: TalkRequestBody): Record<string, unknown> {
  const { script } = request;
  if (script.type === 'audio') return { type: 'audio', subtitles: script.subtitles ?? false };
  return { type: 'text', length: script.input.length, subtitles: script.subtitles ?? false, provider: script.provider ?? DEFAULT_PROVIDER };
}
