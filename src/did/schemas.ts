import { z } from 'zod';

/*
 * D-ID's published request schema for POST /talks (shared/reference/did-openapi-talks.json, copied to
 * fixtures/did/openapi-talks.json), as zod. Objects are strict because D-ID's are
 * `additionalProperties: false`: a body this accepts, D-ID's schema accepts (a test checks it with ajv).
 */

const IMAGE_URL = /(https|s3):.*\.(?:jpg|jpeg|png|JPG|JPEG|PNG)/;
const AUDIO_URL = /^(https|s3):\/\/[\S]+\.(?:m4a|M4A|flac|FLAC|mp3|MP3|mp4|MP4|wav|WAV)([?#][\w./=&#%-]+)?$/;
const SECURED_URL = /^(?:https):\/\/[\S]+$/;
const REMOTE_URL = /(https|s3):\/\/.+/;
const USER_DATA = /^(?!\s*$).+$/;

export const AMAZON_VOICES = [
  'Amy', 'Aria', 'Ayanda', 'Bianca', 'Brian', 'Camila', 'Emma', 'Gabrielle', 'Ivy', 'Joanna', 'Joey', 'Justin',
  'Kendra', 'Kevin', 'Kimberly', 'Léa', 'Lucia', 'Lupe', 'Matthew', 'Olivia', 'Salli', 'Seoyeon', 'Takumi', 'Vicki',
] as const;

export const MicrosoftVoiceConfig = z.strictObject({ style: z.string().optional(), rate: z.string().optional(), pitch: z.string().optional() });

export const ElevenLabsVoiceConfig = z.strictObject({
  stability: z.number().min(0).max(1).optional(),
  similarity_boost: z.number().min(0).max(1).optional(),
  rate: z.string().regex(/^(|0\.[7-9][0-9]*|1(\.[0-1][0-9]*|\.2|\.20*)?)$/, 'must be "0.7" to "1.2"').optional(),
  style: z.string().regex(/^(|0(\.[0-9]+)?|1(\.0+)?)$/, 'must be "0" to "1"').optional(),
  use_speaker_boost: z.boolean().optional(),
  apply_language_text_normalization: z.boolean().optional(),
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
  subtitles: z.boolean().optional(),
  provider: Provider.optional(),
  input: z.string().min(3, 'must be at least 3 characters').max(40_000, 'must be at most 40,000 characters'),
  ssml: z.boolean().optional(),
});
export const AudioScript = z.strictObject({
  type: z.literal('audio'),
  subtitles: z.boolean().optional(),
  audio_url: z.string().regex(AUDIO_URL, 'must be an https:// or s3:// URL of an .m4a, .flac, .mp3, .mp4 or .wav file'),
});
export const Script = z.discriminatedUnion('type', [TextScript, AudioScript]);
export type Script = z.infer<typeof Script>;

export const EXPRESSIONS = ['neutral', 'happy', 'serious', 'surprise'] as const;
export const TalkConfig = z.strictObject({
  logo: z.strictObject({ url: z.string().regex(REMOTE_URL), position: z.tuple([z.number().int(), z.number().int()]) }).optional(),
  stitch: z.boolean().optional(),
  result_format: z.enum(['mp4', 'mov']).optional(),
  fluent: z.boolean().optional(),
  pad_audio: z.number().min(0).max(60).optional(),
  driver_expressions: z
    .strictObject({
      expressions: z.array(z.strictObject({ start_frame: z.number().min(0), expression: z.enum(EXPRESSIONS), intensity: z.number().min(0).max(1) })),
      transition_frames: z.number().min(0).optional(),
    })
    .optional(),
});
export type TalkConfig = z.infer<typeof TalkConfig>;

export const CreateTalkRequest = z.strictObject({
  source_url: z.string().regex(IMAGE_URL, 'must be an https:// or s3:// URL of a .jpg, .jpeg or .png image').optional(),
  script: Script,
  config: TalkConfig.optional(),
  user_data: z.string().min(1).max(1000).regex(USER_DATA, 'must be one non-blank line').optional(),
  name: z.string().optional(),
  webhook: z.string().regex(SECURED_URL, 'must be an https:// URL').optional(),
  result_url: z.string().regex(REMOTE_URL, 'must be an https:// or s3:// URL').optional(),
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
  z.looseObject({ kind: z.string().optional(), description: z.string().optional() }),
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
