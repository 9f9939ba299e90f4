import { z } from 'zod';

/*
 * D-ID's published request schema for POST /talks (a copy is fixtures/did/openapi-talks.json), as zod, plus the
 * deprecated fields D-ID still documents (fixtures/did/talks-deprecated-fields.json). Objects are strict because
 * D-ID's are `additionalProperties: false`: a body this accepts, D-ID's schema accepts (a contract test checks
 * every fixture row with ajv, without coercion).
 *
 * Scalars are coerced to the type D-ID declares, as D-ID itself does: its own examples send
 * `"subtitles": "false"` and `"pad_audio": "0.0"` and get 201. What this parses is always sent in the declared type.
 */

const BOOLEAN_TEXT = /^\s*(?:true|false)\s*$/i;
const NUMBER_TEXT = /^\s*[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:e[+-]?\d+)?\s*$/i;

/** A D-ID boolean: true/false, or "true"/"false" written as text (any case); always parsed to a boolean. */
export const didBoolean = z
  .union([z.boolean(), z.string().regex(BOOLEAN_TEXT, 'Invalid input: expected boolean (true or false)')])
  .transform((value) => (typeof value === 'boolean' ? value : value.trim().toLowerCase() === 'true'));

/** A D-ID number, or a decimal written as text ("0.0"); always parsed to a number, then checked by `schema`. */
function didNumber(schema: z.ZodNumber = z.number()) {
  return z
    .union([z.number(), z.string().regex(NUMBER_TEXT, 'Invalid input: expected number')])
    .transform((value) => Number(value))
    .pipe(schema);
}

const IMAGE_URL = /(https|s3):.*\.(?:jpg|jpeg|png|JPG|JPEG|PNG)/;
const AUDIO_URL = /^(https|s3):\/\/[\S]+\.(?:m4a|M4A|flac|FLAC|mp3|MP3|mp4|MP4|wav|WAV)([?#][\w./=&#%-]+)?$/;
const SECURED_URL = /^(?:https):\/\/[\S]+$/;
const REMOTE_URL = /(https|s3):\/\/.+/;
const USER_DATA = /^(?!\s*$).+$/;
/** D-ID's maxLength for user_data. */
export const USER_DATA_MAX = 1000;
/**
 * The most of user_data a user's own value may take: talkbatch appends its tag (` [talkbatch <job id>#<retry>]`,
 * at most 200 characters) so that a talk whose create answer was lost is found again.
 */
export const OWN_USER_DATA_MAX = 750;
/** A user's own user_data: D-ID's pattern (one non-blank line), within OWN_USER_DATA_MAX. */
export const OwnUserData = z
  .string()
  .min(1)
  .max(OWN_USER_DATA_MAX, `must be at most ${OWN_USER_DATA_MAX} characters (talkbatch adds its tag to find a talk again)`)
  .regex(/^(?!\s*$).+$/, 'must be one non-blank line');

export const AMAZON_VOICES = [
  'Amy', 'Aria', 'Ayanda', 'Bianca', 'Brian', 'Camila', 'Emma', 'Gabrielle', 'Ivy', 'Joanna', 'Joey', 'Justin',
  'Kendra', 'Kevin', 'Kimberly', 'Léa', 'Lucia', 'Lupe', 'Matthew', 'Olivia', 'Salli', 'Seoyeon', 'Takumi', 'Vicki',
] as const;

export const MicrosoftVoiceConfig = z.strictObject({ style: z.string().optional(), rate: z.string().optional(), pitch: z.string().optional() });

export const ElevenLabsVoiceConfig = z.strictObject({
  stability: didNumber(z.number().min(0).max(1)).optional(),
  similarity_boost: didNumber(z.number().min(0).max(1)).optional(),
  rate: z.string().regex(/^(|0\.[7-9][0-9]*|1(\.[0-1][0-9]*|\.2|\.20*)?)$/, 'must be "0.7" to "1.2"').optional(),
  style: z.string().regex(/^(|0(\.[0-9]+)?|1(\.0+)?)$/, 'must be "0" to "1"').optional(),
  use_speaker_boost: didBoolean.optional(),
  apply_language_text_normalization: didBoolean.optional(),
});

export const MicrosoftProvider = z.strictObject({
  type: z.literal('microsoft'),
  voice_id: z.string(),
  voice_config: MicrosoftVoiceConfig.optional(),
  language: z.string().optional(),
});
export const AzureOpenAiProvider = z.strictObject({
  type: z.literal('azure-openai'),
  voice_id: z.string(),
  voice_config: MicrosoftVoiceConfig.optional(),
  language: z.string().optional(),
});
export const ElevenLabsProvider = z.strictObject({
  type: z.literal('elevenlabs'),
  voice_id: z.string().optional(),
  voice_config: ElevenLabsVoiceConfig.optional(),
  model_id: z.string().optional(),
  language: z.string().optional(),
});
export const AmazonProvider = z.strictObject({
  type: z.literal('amazon'),
  voice_id: z.enum(AMAZON_VOICES),
  language: z.string().optional(),
});
export const GoogleProvider = z.strictObject({ type: z.literal('google'), voice_id: z.string().optional() });

export const Provider = z.discriminatedUnion('type', [MicrosoftProvider, ElevenLabsProvider, AmazonProvider, GoogleProvider, AzureOpenAiProvider]);
export type Provider = z.infer<typeof Provider>;
export const PROVIDER_TYPES = ['microsoft', 'elevenlabs', 'amazon', 'google', 'azure-openai'] as const;
export type ProviderType = (typeof PROVIDER_TYPES)[number];

export const TextScript = z.strictObject({
  type: z.literal('text'),
  subtitles: didBoolean.optional(),
  provider: Provider.optional(),
  input: z.string().min(3, 'must be at least 3 characters').max(40_000, 'must be at most 40,000 characters'),
  ssml: didBoolean.optional(),
});
export const AudioScript = z.strictObject({
  type: z.literal('audio'),
  subtitles: didBoolean.optional(),
  audio_url: z.string().regex(AUDIO_URL, 'must be an https:// or s3:// URL of an .m4a, .flac, .mp3, .mp4 or .wav file'),
});
export const Script = z.discriminatedUnion('type', [TextScript, AudioScript]);
export type Script = z.infer<typeof Script>;

export const EXPRESSIONS = ['neutral', 'happy', 'serious', 'surprise'] as const;
export const Logo = z.strictObject({ url: z.string().regex(REMOTE_URL, 'must be an https:// or s3:// URL'), position: z.tuple([didNumber(z.number().int()), didNumber(z.number().int())]) });
export const DriverExpressions = z.strictObject({
  expressions: z.array(
    z.strictObject({ start_frame: didNumber(z.number().min(0)), expression: z.enum(EXPRESSIONS), intensity: didNumber(z.number().min(0).max(1)) }),
  ),
  transition_frames: didNumber(z.number().min(0)).optional(),
});
export const TalkConfig = z.strictObject({
  logo: Logo.optional(),
  stitch: didBoolean.optional(),
  result_format: z.enum(['mp4', 'mov']).optional(),
  fluent: didBoolean.optional(),
  pad_audio: didNumber(z.number().min(0).max(60)).optional(),
  driver_expressions: DriverExpressions.optional(),
  // Deprecated, still documented and echoed by D-ID in every GET (no published ranges beyond these).
  align_driver: didBoolean.optional(),
  align_expand_factor: didNumber(z.number().min(0)).optional(),
  auto_match: didBoolean.optional(),
  motion_factor: didNumber(z.number().min(0)).optional(),
  normalization_factor: didNumber(z.number().min(0)).optional(),
  sharpen: didBoolean.optional(),
  output_resolution: didNumber(z.number().int().min(1)).optional(),
});
/** Every config key D-ID documents, the deprecated ones included. */
export const TALK_CONFIG_KEYS: readonly string[] = Object.keys(TalkConfig.shape);

/** D-ID's FaceSquare: the face to animate instead of the one it would detect (deprecated on talks, still documented). */
export const Face = z.strictObject({
  size: didNumber(z.number().min(0)),
  top_left: z.tuple([didNumber(z.number().max(8000)), didNumber(z.number().max(8000))]),
  overlap: z.enum(['NO', 'PARTIAL', 'YES', 'UNKNOWN', 'no', 'partial', 'yes', 'unknown']).optional(),
  face_id: z.union([z.string(), z.number()]).optional(),
  detect_confidence: didNumber().optional(),
  mask_confidence: didNumber().optional(),
  detection: z
    .union([
      z.strictObject({ top: didNumber(), left: didNumber(), bottom: didNumber(), right: didNumber() }),
      z.tuple([didNumber(), didNumber(), didNumber(), didNumber()]),
    ])
    .optional(),
});
export type TalkConfig = z.infer<typeof TalkConfig>;

export const CreateTalkRequest = z.strictObject({
  source_url: z.string().regex(IMAGE_URL, 'must be an https:// or s3:// URL of a .jpg, .jpeg or .png image').optional(),
  script: Script,
  config: TalkConfig.optional(),
  user_data: z.string().min(1).max(USER_DATA_MAX).regex(USER_DATA, 'must be one non-blank line').optional(),
  name: z.string().optional(),
  webhook: z.string().regex(SECURED_URL, 'must be an https:// URL').optional(),
  result_url: z.string().regex(REMOTE_URL, 'must be an https:// or s3:// URL').optional(),
  // Deprecated, still documented by D-ID.
  driver_url: z.string().min(1).optional(),
  face: Face.optional(),
  persist: didBoolean.optional(),
});
export type CreateTalkRequest = z.infer<typeof CreateTalkRequest>;

export const TALK_STATUSES = ['created', 'started', 'done', 'error', 'rejected'] as const;
export const TalkStatus = z.enum(TALK_STATUSES);
export type TalkStatus = z.infer<typeof TalkStatus>;
export const TERMINAL_STATUSES: ReadonlySet<TalkStatus> = new Set(['done', 'error', 'rejected']);

export const CreateTalkResponse = z.looseObject({
  id: z.string().min(1),
  object: z.string().optional(),
  created_by: z.string().optional(),
  created_at: z.string().optional(),
  status: TalkStatus,
});
export type CreateTalkResponse = z.infer<typeof CreateTalkResponse>;

/** D-ID's error on a failed talk is documented for animations only, so accept an object or a bare string. */
export const TalkError = z.union([
  z.looseObject({ kind: z.string().optional(), description: z.string().optional(), details: z.unknown().optional() }),
  z.string().transform((description) => ({ kind: 'UnknownError', description })),
]);

export const Talk = z.looseObject({
  id: z.string().min(1),
  status: TalkStatus,
  created_at: z.string().optional(),
  modified_at: z.string().optional(),
  started_at: z.string().optional(),
  source_url: z.string().optional(),
  result_url: z.string().optional(),
  pending_url: z.string().optional(),
  user_data: z.string().optional(),
  duration: z.number().optional(),
  error: TalkError.optional(),
  webhook: z.string().optional(),
});
export type Talk = z.infer<typeof Talk>;

export const TalkList = z.looseObject({ talks: z.array(Talk), token: z.string().optional() });
export type TalkList = z.infer<typeof TalkList>;

export const Credits = z.looseObject({
  remaining: z.number(),
  total: z.number(),
  credits: z.array(z.looseObject({ remaining: z.number(), total: z.number(), expire_at: z.string().optional() })).optional(),
});
export type Credits = z.infer<typeof Credits>;

/** D-ID's JSON error body, or an API gateway's `{ message }` (a 504 on POST /talks, a malformed auth header). */
export const ErrorBody = z.union([
  z.looseObject({ kind: z.string(), description: z.string().optional(), details: z.unknown().optional() }),
  z.looseObject({ message: z.string() }),
]);

/*
 * talkbatch's side of D-ID's uploads: a talk may name local files (absolute paths) for its image and audio. Before
 * the create, the worker uploads them through POST /images and POST /audios and puts D-ID's URLs in their place;
 * a body sent to POST /talks never carries these fields (createTalkBody in src/queue/payload.ts).
 */
export const LocalAudioScript = z.strictObject({
  type: z.literal('audio'),
  subtitles: didBoolean.optional(),
  /** Absolute path of a local audio file, uploaded through POST /audios. */
  audio_file: z.string().min(1),
});
export const TalkWithFiles = CreateTalkRequest.extend({
  /** Absolute path of a local image, uploaded through POST /images and sent as `source_url`. */
  source_file: z.string().min(1).optional(),
  /** A share link (Google Drive, Dropbox, an image URL without .jpg/.png): fetched, checked to be an image, uploaded. */
  source_link: z.url({ protocol: /^https?$/ }).optional(),
  script: z.union([Script, LocalAudioScript]),
}).refine((talk) => [talk.source_url, talk.source_file, talk.source_link].filter((value) => value !== undefined).length <= 1, {
  message: 'give one of source_url, source_file and source_link',
  path: ['source_file'],
});
export type TalkWithFiles = z.infer<typeof TalkWithFiles>;

/** D-ID's limits for uploads: images (FAQ: at most 10 MB) and audio (POST /audios: at most 6 MB). */
export const UPLOAD_MAX_BYTES = { image: 10 * 1024 * 1024, audio: 6 * 1024 * 1024 } as const;

export const UploadResponse = z.looseObject({ url: z.string().min(1), id: z.string().optional() });
export type UploadResponse = z.infer<typeof UploadResponse>;
