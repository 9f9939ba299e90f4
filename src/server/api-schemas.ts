import { z } from 'zod';
import type { ManifestDefaults } from '../manifest/index.js';
import { ManifestDefaultsSchema } from '../manifest/schemas.js';

/*
 * Request shapes of the REST API. Only the envelope is checked here; the rows themselves go through the
 * manifest module, which reports every problem by line and column (422 invalid_rows).
 */

/** The manifest defaults, less voiceConfig (not offered over the API). */
export const DefaultsSchema = ManifestDefaultsSchema.omit({ voiceConfig: true });

export const BatchOptionsSchema = z.strictObject({
  template: z.string().min(1).max(20_000).optional().describe('script template for rows without a script cell, e.g. "Hi {{first_name|there}}!"'),
  nameTemplate: z.string().min(1).max(500).optional().describe('output file name template'),
  batchId: z.string().optional().describe('default: generated; the same id and rows add nothing twice'),
  callbackUrl: z.string().optional().describe('https URL POSTed a signed summary when the batch finishes'),
  maxTalks: z.number().int().min(1).optional().describe('refuse the batch when it has more valid rows than this'),
  sample: z
    .number()
    .int()
    .min(1)
    .optional()
    .describe('make only this many rows, chosen to cover the sheet, and hold the rest un-spent until POST /v1/batches/{id}/approve'),
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
  sample: z.coerce.number().int().min(1).optional(),
  cache: z.enum(['true', 'false']).transform((value) => value === 'true').optional(),
  ...DefaultsSchema.pick({ imageUrl: true, voice: true, provider: true, language: true }).shape,
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

/** The defaults given, or undefined when none is (a query's flattened defaults arrive as undefined one by one). */
export function defaultsFrom(value: { [K in keyof ManifestDefaults]?: ManifestDefaults[K] | undefined } | undefined): ManifestDefaults | undefined {
  if (value === undefined) return undefined;
  const defaults = withoutUndefined(value) as ManifestDefaults;
  return Object.keys(defaults).length > 0 ? defaults : undefined;
}
