import { readFileSync } from 'node:fs';
import { Ajv } from 'ajv';

/** D-ID's published POST /talks request schema (fixtures/did/openapi-talks.json), compiled with ajv. */
export function didCreateTalkValidator(): (body: unknown) => { ok: boolean; errors: string } {
  const spec = JSON.parse(readFileSync(new URL('../../fixtures/did/openapi-talks.json', import.meta.url), 'utf8')) as {
    paths: Record<string, Record<string, { requestBody: { content: Record<string, { schema: object }> } }>>;
  };
  const schema = spec.paths['/talks']?.post?.requestBody.content['application/json']?.schema;
  if (!schema) throw new Error('no POST /talks schema in the fixture');
  // The spec carries OpenAPI/ReadMe vocabulary (nullable, x-readme-ref-name, format int32) that plain JSON Schema lacks.
  const ajv = new Ajv({ strict: false, allErrors: true, validateFormats: false });
  const validate = ajv.compile(schema);
  return (body) => {
    const ok = validate(body) as boolean;
    return { ok, errors: ok ? '' : ajv.errorsText(validate.errors) };
  };
}
