import { z } from 'zod';
import { didBoolean, PROVIDER_TYPES, TalkConfig } from '../did/schemas.js';
import type { ManifestDefaults } from '../manifest/index.js';

/*
 * Request shapes of the REST API. Only the envelope is checked here; the rows themselves go through the
 * manifest module, which reports every problem by line and column (422 invalid_rows).
 */

export const DefaultsSchema = z.strictObject({
  imageUrl: z.string().optional().describe('D-ID source_url for rows without image_url'),
  voice: z.string().optional().describe('voice id for rows without one, e.g. en-US-JennyNeural'),
  provider: z.enum(PROVIDER_TYPES).optional(),
  language: z.string().optional(),
  config: TalkConfig.optional().describe('D-ID talk config merged under each row'),
  subtitles: didBoolean.optional(),
  ssml: didBoolean.optional(),
});

export const BatchOptionsSchema = z.strictObject({
  template: z.string().min(1).max(20_000).optional().describe('script template for rows without a script cell, e.g. "Hi {{first_name|there}}!"'),
  nameTemplate: z.string().min(1).max(500).optional().describe('output file name template'),
  batchId: z.string().optional().describe('default: generated; the same id and rows add nothing twice'),
  callbackUrl: z.string().optional().describe('https URL POSTed a signed summary when the batch finishes'),
  maxTalks: z.number().int().min(1).optional().describe('refuse the batch when it has more valid rows than this'),
  cache: z.boolean().optional().describe('false: render every row even when an identical request was rendered before (default true: copied from the render cache)'),
  defaults: DefaultsSchema.optional(),
});

export const CreateBatchSchema = z
  .strictObject({
    rows: z.array(z.record(z.string(), z.unknown())).min(1).optional().describe('row objects keyed by column name'),
    csv: z.string().min(1).optional().describe('a whole CSV document, header first'),
    options: BatchOptionsSchema.optional(),
  })
  .refine((body) => (body.rows === undefined) !== (body.csv === undefined), { message: 'give either "rows" or "csv"' });

/** For `Content-Type: text/csv` bodies: the options as query parameters (defaults flattened). */
export const CsvQuerySchema = z.strictObject({
  template: z.string().min(1).optional(),
  nameTemplate: z.string().min(1).optional(),
  batchId: z.string().optional(),
  callbackUrl: z.string().optional(),
  maxTalks: z.coerce.number().int().min(1).optional(),
  cache: z.enum(['true', 'false']).transform((value) => value === 'true').optional(),
  imageUrl: z.string().optional(),
  voice: z.string().optional(),
  provider: z.enum(PROVIDER_TYPES).optional(),
  language: z.string().optional(),
  encoding: z.string().optional().describe('the body\'s text encoding when it has no byte-order mark, e.g. windows-1252 (default: the Content-Type charset, else utf-8)'),
});

export const ListQuerySchema = z.object({
  offset: z.coerce.number().int().min(0).default(0),
  limit: z.coerce.number().int().min(1).max(200).default(50),
});

export const BatchQuerySchema = z.object({
  rowOffset: z.coerce.number().int().min(0).default(0),
  rowLimit: z.coerce.number().int().min(0).max(10_000).default(1_000),
});

type Defined<T> = { [K in keyof T]: Exclude<T[K], undefined> };

/** Drops keys whose value is undefined, which is what an optional property means under exactOptionalPropertyTypes. */
export function withoutUndefined<T extends object>(value: T): Defined<T> {
  return Object.fromEntries(Object.entries(value).filter(([, entry]) => entry !== undefined)) as Defined<T>;
}

export function defaultsFrom(value: z.infer<typeof DefaultsSchema> | undefined): ManifestDefaults | undefined {
  if (value === undefined) return undefined;
  const defaults = withoutUndefined(value) as ManifestDefaults;
  return Object.keys(defaults).length > 0 ? defaults : undefined;
}
