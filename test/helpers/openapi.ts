import { Ajv } from 'ajv';
import { publishedCreateTalkSchema } from '../../src/simulator/did-document.js';

/**
 * D-ID's published POST /talks request schema (fixtures/did/openapi-talks.json plus the deprecated fields D-ID still
 * documents, fixtures/did/talks-deprecated-fields.json), compiled with ajv. Strict: no type coercion, so a body
 * passes only when every value has the type D-ID declares.
 */
export function didCreateTalkValidator(): (body: unknown) => { ok: boolean; errors: string } {
  // The spec carries OpenAPI/ReadMe vocabulary (nullable, x-readme-ref-name, format int32) that plain JSON Schema lacks.
  const ajv = new Ajv({ strict: false, allErrors: true, validateFormats: false });
  const validate = ajv.compile(publishedCreateTalkSchema({ allowHttpWebhooks: false }));
  return (body) => {
    const ok = validate(body);
    return { ok, errors: ok ? '' : ajv.errorsText(validate.errors) };
  };
}
