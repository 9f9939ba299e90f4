import { z } from 'zod';
import { BATCH_ID_PATTERN } from '../queue/payload.js';
import { BatchOptionsSchema, CreateBatchSchema, CsvQuerySchema } from './api-schemas.js';

/*
 * The OpenAPI 3.1 description of `talkbatch serve`. Request bodies are generated from the same zod
 * schemas the routes use; responses are written out by hand (they are plain objects built in code).
 */

const json = (schema: object) => ({ 'application/json': { schema } });
const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const error = (description: string) => ({ description, content: json(ref('Error')) });
const idParam = { name: 'id', in: 'path', required: true, schema: { type: 'string', pattern: BATCH_ID_PATTERN.source } };
const UNAUTHORIZED = error('No or wrong API key (also when no keys are configured)');

function schemaOf(schema: z.ZodType): Record<string, unknown> {
  const { $schema: _dialect, ...rest } = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
  return rest;
}

export function openApiDocument(): Record<string, unknown> {
  const counts = {
    type: 'object',
    required: ['total', 'done', 'failed', 'active', 'queued', 'held'],
    properties: {
      ...Object.fromEntries(['total', 'done', 'failed', 'active', 'queued'].map((name) => [name, { type: 'integer', minimum: 0 }])),
      held: { type: 'integer', minimum: 0, description: 'rows a sample holds back, un-spent, until the batch is approved' },
    },
  };
  const samplePick = {
    type: 'object',
    required: ['rowKey', 'reason'],
    properties: { rowKey: { type: 'string' }, reason: { type: 'string', description: '"first", "longest script", "voice <voice>" or "random"' } },
  };
  const links = { type: 'object', additionalProperties: { type: 'string' } };
  const callbackAttempt = {
    type: 'object',
    required: ['attempt', 'at', 'ok'],
    properties: {
      attempt: { type: 'integer' },
      at: { type: 'string', format: 'date-time' },
      ok: { type: 'boolean' },
      status: { type: 'integer' },
      error: { type: 'string', description: '`HTTP <status>`, `not delivered`, or `not sent: ...` (details are in the server log only)' },
    },
  };
  const batch = {
    type: 'object',
    required: ['id', 'createdAt', 'source', 'counts', 'progress'],
    properties: {
      id: { type: 'string' },
      createdAt: { type: 'string', format: 'date-time' },
      source: { type: 'string' },
      finishedAt: { type: ['string', 'null'], format: 'date-time' },
      cancelledAt: { type: ['string', 'null'], format: 'date-time' },
      callbackUrl: { type: ['string', 'null'] },
      counts: ref('BatchCounts'),
      progress: { type: 'number', minimum: 0, maximum: 1, description: '(done + failed) / total' },
      sample: {
        description: 'For a batch enqueued with "sample": its size, and when the rest was approved (null while held)',
        oneOf: [
          { type: 'null' },
          { type: 'object', required: ['size', 'approvedAt'], properties: { size: { type: 'integer', minimum: 1 }, approvedAt: { type: ['string', 'null'], format: 'date-time' } } },
        ],
      },
      credits: {
        type: 'object',
        description: 'D-ID\'s balance before the batch\'s first create and after its last outcome, and what its talks cost (docs/operations.md "Credits")',
        required: ['before', 'after', 'used', 'estimated'],
        properties: {
          before: { type: ['number', 'null'], description: 'remaining credits before the first create; null when unknown' },
          after: { type: ['number', 'null'], description: 'remaining credits once every row had an outcome; null until then or when unknown' },
          used: { type: ['number', 'null'], description: 'before − after (the whole account\'s spending meanwhile)' },
          estimated: { type: 'number', description: 'Σ the credits of the batch\'s talks: the billing rule on D-ID\'s reported length, else the estimate' },
        },
      },
      callback: {
        oneOf: [
          { type: 'null' },
          { type: 'object', properties: { attempts: { type: 'array', items: callbackAttempt }, deliveredAt: { type: ['string', 'null'], format: 'date-time' } } },
        ],
      },
      links,
    },
  };
  const row = {
    type: 'object',
    description: 'One row of the batch, as in results.jsonl',
    properties: {
      line: { type: 'integer' },
      rowKey: { type: 'string' },
      jobId: { type: 'string' },
      status: { enum: ['done', 'failed', 'active', 'queued', 'held', 'missing', 'cancelled'], description: 'held: kept back by a sample until the batch is approved' },
      talkId: { type: ['string', 'null'] },
      file: { type: ['string', 'null'] },
      bytes: { type: ['integer', 'null'] },
      sha256: { type: ['string', 'null'] },
      cachedFromBatch: { type: ['string', 'null'], description: 'set when the video was copied from the render cache: the batch that made it' },
      cachedFromTalk: { type: ['string', 'null'], description: 'the talk that made the copied video' },
      videoSeconds: { type: ['number', 'null'] },
      renderSeconds: { type: ['number', 'null'] },
      attempts: { type: 'integer' },
      errorKind: { type: ['string', 'null'] },
      errorDescription: { type: ['string', 'null'] },
      errorDetails: { type: ['string', 'null'] },
      credits: { type: ['number', 'null'], description: 'what the row\'s talk cost; null when it created none' },
      creditsSource: { enum: ['d-id', 'estimate', null], description: 'd-id: the billing rule on the length D-ID reported; estimate: from the script' },
      input: { type: 'object', additionalProperties: { type: 'string' } },
      sampleReason: { type: 'string', description: 'why the row is in the batch\'s sample ("first", "longest script", "voice <voice>", "random"); absent for other rows' },
      links: { type: 'object', properties: { file: { type: 'string' } } },
    },
  };

  return {
    openapi: '3.1.0',
    info: {
      title: 'talkbatch',
      version: '1',
      description:
        'Batches of personalised D-ID talking-head videos. Every route except /healthz, /readyz and the D-ID webhook needs ' +
        '"Authorization: Bearer <key>" with one of TALKBATCH_API_KEYS. See docs/api.md.',
    },
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
      schemas: {
        Error: {
          type: 'object',
          required: ['error', 'message'],
          properties: { error: { type: 'string', description: 'stable code, e.g. invalid_rows' }, message: { type: 'string' } },
        },
        Issue: {
          type: 'object',
          required: ['line', 'message'],
          properties: {
            line: { type: 'integer', description: 'physical line of the manifest (CSV: the header is line 1; rows: line N is rows[N-1]); 0 = the whole input' },
            row: { type: 'integer', description: 'index into "rows" (JSON bodies only)' },
            column: { type: 'string', description: 'canonical column, e.g. image_url' },
            columnNumber: { type: 'integer' },
            message: { type: 'string' },
          },
        },
        BatchCounts: counts,
        Batch: batch,
        CreateBatch: schemaOf(CreateBatchSchema),
        BatchOptions: schemaOf(BatchOptionsSchema),
      },
    },
    security: [{ bearer: [] }],
    paths: {
      '/v1/batches': {
        post: {
          summary: 'Validate rows and enqueue them as a batch',
          description:
            'JSON body with "rows" or "csv", or a text/csv body with the options as query parameters. Any invalid row: 422 and nothing is enqueued.',
          parameters: Object.keys(CsvQuerySchema.shape).map((name) => ({
            name,
            in: 'query',
            required: false,
            description: 'text/csv bodies only',
            schema: name === 'maxTalks' || name === 'sample' ? { type: 'integer' } : name === 'cache' ? { enum: ['true', 'false'] } : { type: 'string' },
          })),
          requestBody: {
            required: true,
            content: { ...json(ref('CreateBatch')), 'text/csv': { schema: { type: 'string' } } },
          },
          responses: {
            '201': {
              description: 'Enqueued (200 when every row was already in the batch)',
              content: json({
                type: 'object',
                required: ['batchId', 'added', 'alreadyPresent', 'links'],
                properties: {
                  batchId: { type: 'string' },
                  added: { type: 'integer' },
                  alreadyPresent: { type: 'integer' },
                  skippedEmpty: { type: 'integer' },
                  estimatedSeconds: { type: 'number' },
                  held: { type: 'integer', description: 'of the rows added, those held until the batch is approved (0 without "sample")' },
                  heldSeconds: { type: 'number', description: 'estimated seconds of video of the held rows' },
                  sample: { type: 'array', items: samplePick, description: 'with "sample": the rows chosen and why' },
                  links,
                },
              }),
            },
            '400': error('Malformed request (bad JSON, unknown option, invalid batch id or callbackUrl)'),
            '401': UNAUTHORIZED,
            '413': error('Body larger than TALKBATCH_MAX_BODY_BYTES'),
            '422': {
              description: 'invalid_rows (with "issues") or too_many_rows; nothing was enqueued',
              content: json({ allOf: [ref('Error'), { type: 'object', properties: { issues: { type: 'array', items: ref('Issue') } } }] }),
            },
            '503': {
              ...error('too_many_uploads: TALKBATCH_API_MAX_CONCURRENT_UPLOADS uploads are in progress; nothing was read or enqueued'),
              headers: { 'Retry-After': { description: 'Seconds to wait before trying again', schema: { type: 'integer' } } },
            },
          },
        },
        get: {
          summary: 'List batches, newest first',
          parameters: [
            { name: 'offset', in: 'query', schema: { type: 'integer', minimum: 0, default: 0 } },
            { name: 'limit', in: 'query', schema: { type: 'integer', minimum: 1, maximum: 200, default: 50 } },
          ],
          responses: {
            '200': {
              description: 'A page of batches',
              content: json({
                type: 'object',
                properties: { batches: { type: 'array', items: ref('Batch') }, offset: { type: 'integer' }, limit: { type: 'integer' }, nextOffset: { type: ['integer', 'null'] } },
              }),
            },
            '401': UNAUTHORIZED,
          },
        },
      },
      '/v1/batches/{id}': {
        get: {
          summary: 'A batch: counts, progress, callback attempts and per-row results',
          parameters: [
            idParam,
            { name: 'rowOffset', in: 'query', schema: { type: 'integer', minimum: 0, default: 0 } },
            { name: 'rowLimit', in: 'query', schema: { type: 'integer', minimum: 0, maximum: 10000, default: 1000 } },
          ],
          responses: {
            '200': {
              description: 'The batch',
              content: json({
                allOf: [ref('Batch'), { type: 'object', properties: { rows: { type: 'array', items: row }, rowsNextOffset: { type: ['integer', 'null'] } } }],
              }),
            },
            '401': UNAUTHORIZED,
            '404': error('No such batch'),
          },
        },
      },
      '/v1/batches/{id}/results.csv': {
        get: {
          summary: 'The results report (rebuilt on each request)',
          parameters: [idParam],
          responses: { '200': { description: 'CSV, one line per row', content: { 'text/csv': { schema: { type: 'string' } } } }, '401': UNAUTHORIZED, '404': error('No such batch') },
        },
      },
      '/v1/batches/{id}/charged-failures.csv': {
        get: {
          summary: 'Talks paid for that came to nothing, for a refund claim (rebuilt on each request)',
          description:
            'One line per talk that was created and then ended error or rejected at D-ID, or was done but could not be downloaded ' +
            '(retried rows\' earlier talks included). Columns: talk_id, created_at, kind, description, details (D-ID\'s), request_sha256, ' +
            'credits, credits_before, credits_after, row_key, credits_source. A batch with none gets the header alone. See docs/operations.md "Credits".',
          parameters: [idParam],
          responses: { '200': { description: 'CSV, one line per talk', content: { 'text/csv': { schema: { type: 'string' } } } }, '401': UNAUTHORIZED, '404': error('No such batch') },
        },
      },
      '/v1/batches/{id}/files/{name}': {
        get: {
          summary: 'A file of the batch: a video (rows[].links.file), results.csv or results.jsonl',
          parameters: [idParam, { name: 'name', in: 'path', required: true, schema: { type: 'string' } }],
          responses: {
            '200': { description: 'The file', content: { 'video/mp4': { schema: { type: 'string', contentEncoding: 'binary' } } } },
            '401': UNAUTHORIZED,
            '404': error('No such batch or file'),
          },
        },
      },
      '/v1/batches/{id}/cancel': {
        post: {
          summary: 'Remove the batch\'s jobs that have not started; active rows finish',
          parameters: [idParam],
          responses: {
            '200': {
              description: 'What was removed and what was kept',
              content: json({
                type: 'object',
                properties: {
                  batchId: { type: 'string' },
                  cancelledAt: { type: 'string', format: 'date-time' },
                  removed: { type: 'array', items: { type: 'string' } },
                  kept: { type: 'array', items: { type: 'object', properties: { jobId: { type: 'string' }, reason: { enum: ['active', 'talk_created'] } } } },
                  heldDropped: { type: 'integer', description: 'rows a sample held back, dropped unmade (they count as failed)' },
                  finished: { type: 'boolean' },
                },
              }),
            },
            '401': UNAUTHORIZED,
            '404': error('No such batch'),
          },
        },
      },
      '/v1/batches/{id}/approve': {
        post: {
          summary: 'Approve a sample: the rows it held back go into the queue',
          description: 'For a batch enqueued with "sample". Idempotent: a second call adds nothing (released: 0).',
          parameters: [idParam],
          responses: {
            '200': {
              description: 'Approved',
              content: json({
                type: 'object',
                required: ['batchId', 'approvedAt', 'released'],
                properties: {
                  batchId: { type: 'string' },
                  approvedAt: { type: 'string', format: 'date-time', description: 'when the sample was first approved' },
                  released: { type: 'integer', description: 'held rows this call put in the queue' },
                  links,
                },
              }),
            },
            '401': UNAUTHORIZED,
            '404': error('No such batch'),
            '409': error('cancelled (its held rows were dropped) or not_sampled (the batch was enqueued without a sample); nothing changed'),
          },
        },
      },
      '/webhooks/did/{jobId}/{token}': {
        post: {
          summary: 'D-ID\'s talk webhook (the token in the URL authenticates it; no bearer key)',
          security: [],
          parameters: [
            { name: 'jobId', in: 'path', required: true, schema: { type: 'string' } },
            { name: 'token', in: 'path', required: true, schema: { type: 'string' } },
          ],
          requestBody: { content: json({ type: 'object', required: ['id'], properties: { id: { type: 'string' } } }) },
          responses: {
            '200': { description: 'The job was woken, or the call was a duplicate' },
            '202': { description: 'Accepted, nothing to do (unknown talk, or D-ID says the talk is not finished)' },
            '400': error('Body is not JSON with an "id"'),
            '404': error('Wrong token'),
          },
        },
      },
      '/metrics': {
        get: { summary: 'Prometheus metrics (ours and BullMQ\'s)', responses: { '200': { description: 'Prometheus text format', content: { 'text/plain': { schema: { type: 'string' } } } }, '401': UNAUTHORIZED } },
      },
      '/healthz': { get: { summary: 'The process is up', security: [], responses: { '200': { description: 'ok' } } } },
      '/readyz': {
        get: {
          summary: 'Redis answers; lists live workers',
          security: [],
          responses: { '200': { description: 'ready' }, '503': { description: 'Redis does not answer, or the worker in this process has lost Redis' } },
        },
      },
      '/admin': { get: { summary: 'bull-board dashboard (bearer key, or ?key= once to set a cookie)', responses: { '200': { description: 'HTML' }, '401': UNAUTHORIZED } } },
      '/openapi.json': { get: { summary: 'This document', responses: { '200': { description: 'OpenAPI 3.1' }, '401': UNAUTHORIZED } } },
    },
  };
}
