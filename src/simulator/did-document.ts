import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';

/*
 * The simulator checks requests against D-ID's published OpenAPI document (fixtures/did/openapi-talks.json, a
 * verbatim copy), never against talkbatch's own schemas, so a mismatch between talkbatch and D-ID fails a test.
 * The published extraction strips deprecated properties that D-ID still documents and echoes (driver_url, face,
 * persist, the legacy config keys); fixtures/did/talks-deprecated-fields.json adds those back, with its sources.
 */

type JsonSchema = Record<string, unknown>;

interface OpenApiDocument {
  paths: Record<string, Record<string, { requestBody?: { content: Record<string, { schema: JsonSchema }> } }>>;
}

interface DeprecatedFields {
  top: Record<string, JsonSchema>;
  config: Record<string, JsonSchema>;
}

/** A talk request as the simulator sees it once D-ID's validation (and its coercion) has passed. */
export interface TalkRequestBody {
  source_url?: string;
  script: { type: 'text'; input: string; subtitles?: boolean; ssml?: boolean; provider?: Record<string, unknown> } | { type: 'audio'; audio_url: string; subtitles?: boolean };
  config?: Record<string, unknown> & { pad_audio?: number; result_format?: string; stitch?: boolean };
  user_data?: string;
  name?: string;
  webhook?: string;
  result_url?: string;
  driver_url?: string;
  face?: Record<string, unknown>;
  persist?: boolean;
}

export type RequestCheck = { ok: true; body: TalkRequestBody } | { ok: false; details: Record<string, { message: string }> };

/** Finds a fixtures file above this module, which sits at src/simulator/ under tsx and dist/src/simulator/ once built. */
export function findPackageFixture(...parts: string[]): string {
  let directory = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = join(directory, 'fixtures', ...parts);
    if (existsSync(candidate)) return candidate;
    const parent = resolve(directory, '..');
    if (parent === directory) throw new Error(`simulator: fixtures/${parts.join('/')} not found above the package`);
    directory = parent;
  }
}

function readJson(path: string): unknown {
  return JSON.parse(readFileSync(path, 'utf8'));
}

/** D-ID's POST /talks request schema plus the documented deprecated fields. */
export function publishedCreateTalkSchema(options: { allowHttpWebhooks: boolean }): JsonSchema {
  const document = readJson(findPackageFixture('did', 'openapi-talks.json')) as OpenApiDocument;
  const deprecated = readJson(findPackageFixture('did', 'talks-deprecated-fields.json')) as DeprecatedFields;
  const published = document.paths['/talks']?.post?.requestBody?.content['application/json']?.schema;
  if (published === undefined) throw new Error('simulator: fixtures/did/openapi-talks.json has no POST /talks request schema');
  const schema = structuredClone(published) as { properties: Record<string, JsonSchema & { properties?: Record<string, JsonSchema> }> };
  Object.assign(schema.properties, deprecated.top);
  const config = schema.properties.config;
  if (config?.properties === undefined) throw new Error('simulator: the published POST /talks schema has no config properties');
  Object.assign(config.properties, deprecated.config);
  // D-ID demands https webhooks; tests on localhost receive them over http.
  if (options.allowHttpWebhooks && schema.properties.webhook) schema.properties.webhook.pattern = '^https?:\\/\\/\\S+$';
  return schema;
}

/**
 * Validates like D-ID: its server coerces scalars to the declared type (its own docs send `"subtitles": "false"`
 * and `"pad_audio": "0.0"` and get 201), so the simulator does too; the answer carries the coerced body.
 */
export class CreateTalkValidator {
  readonly #strict: ValidateFunction;
  readonly #httpWebhooks: ValidateFunction;

  constructor() {
    // The document carries OpenAPI/ReadMe vocabulary (nullable, x-readme-ref-name, format int32) plain JSON Schema lacks.
    const ajv = new Ajv({ strict: false, allErrors: true, validateFormats: false, coerceTypes: true });
    this.#strict = ajv.compile(publishedCreateTalkSchema({ allowHttpWebhooks: false }));
    this.#httpWebhooks = ajv.compile(publishedCreateTalkSchema({ allowHttpWebhooks: true }));
  }

  check(json: unknown, options: { allowHttpWebhooks: boolean }): RequestCheck {
    const body = structuredClone(json);
    const validate = options.allowHttpWebhooks ? this.#httpWebhooks : this.#strict;
    if (validate(body)) return { ok: true, body: body as TalkRequestBody };
    return { ok: false, details: validationDetails(validate.errors ?? []) };
  }
}

/** ajv errors as D-ID's `details`: `{"body.script.input": {"message": ...}}`, with D-ID's wording for missing and unknown fields. */
export function validationDetails(errors: readonly ErrorObject[]): Record<string, { message: string }> {
  const details: Record<string, { message: string }> = {};
  // anyOf reports every branch; the branch-level "must match a schema in anyOf" says little on its own.
  const specific = errors.filter((error) => error.keyword !== 'anyOf');
  for (const error of specific.length > 0 ? specific : errors) {
    const path = ['body', ...error.instancePath.split('/').filter(Boolean)].join('.');
    if (error.keyword === 'additionalProperties') {
      const key = (error.params as { additionalProperty: string }).additionalProperty;
      details[`${path}.${key}`] ??= { message: `'${key}' is not allowed` };
    } else if (error.keyword === 'required') {
      const key = (error.params as { missingProperty: string }).missingProperty;
      details[`${path}.${key}`] ??= { message: `'${key}' is required` };
    } else {
      details[path] ??= { message: error.message ?? 'is invalid' };
    }
  }
  return details;
}
