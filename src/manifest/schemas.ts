import { z } from 'zod';
import { didBoolean, PROVIDER_TYPES, TalkConfig } from '../did/schemas.js';

/*
 * The manifest's shapes that other surfaces take too: job and schedule files, the REST API, schedules stored in
 * Redis and the job payload derive theirs from these, so a default or a format is added in one place.
 */

export const MANIFEST_FORMATS = ['csv', 'json', 'jsonl', 'xlsx'] as const;
export const ManifestFormatSchema = z.enum(MANIFEST_FORMATS);
/** `csv, json, jsonl or xlsx`, for messages. */
export const MANIFEST_FORMAT_LIST = `${MANIFEST_FORMATS.slice(0, -1).join(', ')} or ${MANIFEST_FORMATS.at(-1) ?? ''}`;

/**
 * Ids that become part of BullMQ job ids, Redis keys and folder names (row ids, batch ids, schedule names): a letter
 * or digit, then letters, digits, "_", "." or "-". No ':' (BullMQ forbids it in job ids), no spaces.
 */
export function idPattern(maxLength: number): RegExp {
  return new RegExp(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,${maxLength - 1}}$`);
}

/** A row's `id` cell, and so every row key (generated keys are `r` + 16 hex characters). */
export const ROW_ID_PATTERN = idPattern(100);

/**
 * Batch-wide values used when a row leaves the cell empty; row cells always win. Keys are absent rather than
 * undefined (exactOptional), as everywhere under exactOptionalPropertyTypes.
 */
export const ManifestDefaultsSchema = z.strictObject({
  /** D-ID `source_url` for rows without `image_url`. */
  imageUrl: z.string().exactOptional().describe('D-ID source_url for rows without image_url'),
  voice: z.string().exactOptional().describe('voice id for rows without one, e.g. en-US-JennyNeural'),
  /** Provider for rows without a `provider` cell. Default: microsoft when a voice is known, else none (D-ID's default). */
  provider: z.enum(PROVIDER_TYPES).exactOptional(),
  language: z.string().exactOptional(),
  /** Merged under the row's `voice_config` cell and voice columns, for providers that take a voice_config. */
  voiceConfig: z.record(z.string(), z.unknown()).exactOptional(),
  /** Merged under the row's config columns. */
  config: TalkConfig.exactOptional().describe('D-ID talk config merged under each row'),
  subtitles: didBoolean.exactOptional(),
  ssml: didBoolean.exactOptional(),
});
export type ManifestDefaults = z.output<typeof ManifestDefaultsSchema>;

/** `voiceConfig` -> `voice_config`. */
export type SnakeCase<S extends string> = S extends `${infer Head}${infer Tail}`
  ? `${Head extends Lowercase<Head> ? Head : `_${Lowercase<Head>}`}${SnakeCase<Tail>}`
  : S;

function snakeCase(key: string): string {
  return key.replace(/[A-Z]/g, (letter) => `_${letter.toLowerCase()}`);
}

/** The defaults as job and schedule files spell them: snake_case, like the sheet's columns (`image_url`). */
export type FileDefaults = { [K in keyof ManifestDefaults as SnakeCase<K & string>]: ManifestDefaults[K] };

export const fileDefaultsShape = Object.fromEntries(Object.entries(ManifestDefaultsSchema.shape).map(([key, schema]) => [snakeCase(key), schema])) as {
  [K in keyof typeof ManifestDefaultsSchema.shape as SnakeCase<K>]: (typeof ManifestDefaultsSchema.shape)[K];
};

export function defaultsOfFile(given: FileDefaults): ManifestDefaults {
  const defaults: Record<string, unknown> = {};
  for (const key of Object.keys(ManifestDefaultsSchema.shape)) {
    const value = (given as Record<string, unknown>)[snakeCase(key)];
    if (value !== undefined) defaults[key] = value;
  }
  return defaults;
}
