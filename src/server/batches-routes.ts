import { createReadStream } from 'node:fs';
import { realpath, stat } from 'node:fs/promises';
import { basename, extname, sep } from 'node:path';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import secureJson from 'secure-json-parse';
import type { z } from 'zod';
import type { Config } from '../config/index.js';
import { batchDirFor, outputPathFor } from '../download/paths.js';
import { ManifestError, type ManifestIssue } from '../manifest/index.js';
import { jsonDepthProblem } from '../manifest/json-depth.js';
import { BATCH_ID_PATTERN } from '../queue/payload.js';
import type { ResultRecord, RowStatus } from '../report/results.js';
import { UsageError } from '../shared/errors.js';
import { Slots, type SlotLease } from '../shared/slots.js';
import { BatchQuerySchema, CreateBatchSchema, CsvQuerySchema, ListQuerySchema, defaultsFrom, withoutUndefined } from './api-schemas.js';
import { ApprovalRefusedError, PayloadTooLargeError, TooManyRowsError, type BatchInput, type BatchService, type BatchView, type SubmitBatchOptions, type SubmitBatchResult } from '../app/index.js';
import { HttpError, sendError } from './http-errors.js';


export interface BatchRoutesDeps {
  config: Pick<Config, 'outDir' | 'maxBodyBytes' | 'maxConcurrentUploads' | 'callbackSecret' | 'localMediaDirs'>;
  batches: BatchService;
  allowHttpCallbacks: boolean;
}

/** One manifest problem as the API reports it; `row` is the index into `rows` for JSON bodies. */
export interface ApiIssue {
  line: number;
  row?: number;
  column?: string;
  columnNumber?: number;
  message: string;
}

/** A row in `GET /v1/batches/:id`: the report's record, "cancelled" for rows a cancel removed, and a download link. */
export type ApiRow = Omit<ResultRecord, 'status'> & { status: RowStatus | 'cancelled'; links?: { file: string } };

type IdParams = { Params: { id: string } };

/** Seconds a client refused for too many uploads is told to wait before trying again. */
export const UPLOAD_RETRY_AFTER_SECONDS = 5;

declare module 'fastify' {
  interface FastifyRequest {
    /** The upload slot this `POST /v1/batches` holds, taken before its body is read. */
    uploadSlot?: SlotLease;
  }
}

const CSV_TYPES = ['text/csv', 'application/csv', 'text/tab-separated-values'];
const FILE_TYPES: Readonly<Record<string, string>> = {
  '.mp4': 'video/mp4',
  '.mov': 'video/quicktime',
  '.csv': 'text/csv; charset=utf-8',
  '.jsonl': 'application/x-ndjson; charset=utf-8',
  '.html': 'text/html; charset=utf-8',
};

export function batchLinks(id: string): Record<string, string> {
  const base = `/v1/batches/${encodeURIComponent(id)}`;
  return { self: base, results: `${base}/results.csv`, chargedFailures: `${base}/charged-failures.csv`, cancel: `${base}/cancel`, approve: `${base}/approve`, files: `${base}/files/` };
}

/** The `/v1/batches` routes; the caller puts them behind the API keys. */
export function registerBatchRoutes(scope: FastifyInstance, deps: BatchRoutesDeps): void {
  const { batches, config } = deps;
  const { logger } = batches;
  // Every upload holds memory or a temp file and CPU until its rows are in: past the cap, refuse before reading.
  const uploads = new Slots(config.maxConcurrentUploads);
  const takeUploadSlot = async (request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply | undefined> => {
    const slot = uploads.tryTake();
    if (!slot) {
      logger.warn({ inUse: uploads.inUse, cap: uploads.capacity }, 'upload refused: too many at once');
      // `connection: close` makes Node drop the socket after the answer instead of reading the body to reuse it.
      reply.header('retry-after', String(UPLOAD_RETRY_AFTER_SECONDS)).header('connection', 'close');
      return sendError(reply, 503, 'too_many_uploads', `the server is taking in ${uploads.capacity} manifests already; nothing was read or enqueued, try again in ${UPLOAD_RETRY_AFTER_SECONDS} s`, {
        retryAfterSeconds: UPLOAD_RETRY_AFTER_SECONDS,
      });
    }
    request.uploadSlot = slot;
    // 'close' comes after the answer is sent and also when the client goes away mid-upload (the handler never runs then).
    reply.raw.once('close', slot.release);
    return undefined;
  };

  // A CSV body is taken as bytes (the manifest module checks its encoding), up to the body limit.
  scope.addContentTypeParser(CSV_TYPES, { parseAs: 'buffer', bodyLimit: config.maxBodyBytes }, (_request, body, done) => done(null, body));
  // JSON nesting is checked on the text before parsing: a body nested 100,000 deep would overflow the stack in
  // every recursive step after JSON.parse. Prototype keys are refused as by Fastify's own parser.
  scope.addContentTypeParser('application/json', { parseAs: 'string', bodyLimit: config.maxBodyBytes }, (_request, body, done) => {
    const text = String(body);
    const tooDeep = jsonDepthProblem(text);
    if (tooDeep !== undefined) return done(new HttpError(422, 'too_deep', `${tooDeep}; rows are flat objects`), undefined);
    try {
      done(null, secureJson.parse(text, undefined, { protoAction: 'error', constructorAction: 'error' }));
    } catch (error) {
      done(new HttpError(400, 'bad_request', `invalid JSON body: ${error instanceof Error ? error.message : String(error)}`), undefined);
    }
  });

  scope.post<{ Querystring: Record<string, string> }>('/v1/batches', { onRequest: takeUploadSlot }, async (request, reply) => {
    // A client that leaves while its rows are being taken in must not free the slot before that work ends.
    const letGo = request.uploadSlot?.hold() ?? (() => {});
    try {
      return await createBatch(request, reply);
    } finally {
      letGo();
    }
  });

  async function createBatch(request: FastifyRequest<{ Querystring: Record<string, string> }>, reply: FastifyReply): Promise<FastifyReply> {
    let input: BatchInput;
    let options: SubmitBatchOptions;
    if (Buffer.isBuffer(request.body)) {
      const query = parse(CsvQuerySchema, request.query, 'query');
      const { imageUrl, voice, provider, language, encoding, ...rest } = query;
      const defaults = defaultsFrom({ imageUrl, voice, provider, language });
      const charset = /;\s*charset="?([^";\s]+)/i.exec(request.headers['content-type'] ?? '')?.[1];
      const textEncoding = encoding ?? charset;
      input = { csv: request.body };
      options = { ...withoutUndefined(rest), ...(defaults ? { defaults } : {}), ...(textEncoding !== undefined ? { encoding: textEncoding } : {}) };
    } else {
      const body = parse(CreateBatchSchema, request.body, 'body');
      const { defaults: givenDefaults, ...rest } = body.options ?? {};
      const defaults = defaultsFrom(givenDefaults);
      input = body.rows !== undefined ? { rows: body.rows } : { csv: body.csv ?? '' };
      options = { ...withoutUndefined(rest), ...(defaults ? { defaults } : {}) };
    }
    if (options.callbackUrl !== undefined && !config.callbackSecret) {
      throw new HttpError(400, 'callbacks_disabled', 'callbackUrl needs TALKBATCH_CALLBACK_SECRET (or TALKBATCH_WEBHOOK_SECRET) on the server to sign callbacks');
    }
    let result: SubmitBatchResult;
    try {
      const localMedia = {
        baseDir: config.localMediaDirs[0] ?? process.cwd(),
        roots: config.localMediaDirs,
        refusal: 'a manifest sent through the REST API may not do unless the file is in a folder the operator allows (TALKBATCH_LOCAL_MEDIA_DIRS)',
      };
      result = await batches.submit(input, { ...options, source: 'api', maxBytes: config.maxBodyBytes, allowHttpCallbacks: deps.allowHttpCallbacks, localMedia });
    } catch (error) {
      if (error instanceof ManifestError) {
        const rowsInput = 'rows' in input;
        return sendError(reply, 422, 'invalid_rows', `${error.issues.length} problem${error.issues.length === 1 ? '' : 's'} found; nothing was enqueued`, {
          issues: error.issues.map((issue) => apiIssue(issue, rowsInput)),
        });
      }
      if (error instanceof TooManyRowsError) return sendError(reply, 422, 'too_many_rows', error.message, { rows: error.rows, maxTalks: error.maxTalks });
      if (error instanceof UsageError) return sendError(reply, 400, 'bad_request', error.message);
      if (error instanceof PayloadTooLargeError) return sendError(reply, 413, 'payload_too_large', error.message);
      throw error;
    }
    logger.info({ batchId: result.batchId, added: result.added, alreadyPresent: result.alreadyPresent }, 'batch submitted');
    return reply.code(result.added > 0 ? 201 : 200).send({
      batchId: result.batchId,
      added: result.added,
      alreadyPresent: result.alreadyPresent,
      skippedEmpty: result.skippedEmpty,
      estimatedSeconds: result.estimatedSeconds,
      held: result.held,
      heldSeconds: result.heldSeconds,
      ...(result.sample ? { sample: result.sample } : {}),
      links: batchLinks(result.batchId),
    });
  }

  scope.get('/v1/batches', async (request: FastifyRequest<{ Querystring: Record<string, string> }>) => {
    const { offset, limit } = parse(ListQuerySchema, request.query, 'query');
    const ids = await batches.list(offset, limit + 1);
    const page = ids.slice(0, limit);
    const views = await Promise.all(page.map((id) => batches.view(id)));
    return {
      batches: views.filter((view): view is BatchView => view !== undefined).map((view) => ({ ...view, links: batchLinks(view.id) })),
      offset,
      limit,
      nextOffset: ids.length > limit ? offset + limit : null,
    };
  });

  scope.get('/v1/batches/:id', async (request: FastifyRequest<IdParams & { Querystring: Record<string, string> }>) => {
    const view = await existingBatch(request.params.id);
    const { rowOffset, rowLimit } = parse(BatchQuerySchema, request.query, 'query');
    const rows: ApiRow[] = [];
    let index = 0;
    let more = false;
    for await (const record of batches.results(view.id)) {
      if (index++ < rowOffset) continue;
      if (rows.length >= rowLimit) {
        more = true;
        break;
      }
      rows.push(rowView(view, record));
    }
    return { ...view, rows, rowsNextOffset: more ? rowOffset + rowLimit : null, links: batchLinks(view.id) };
  });

  scope.get('/v1/batches/:id/results.csv', async (request: FastifyRequest<IdParams>, reply: FastifyReply) => {
    const view = await existingBatch(request.params.id);
    const report = await batches.writeReport(view.id);
    return reply
      .type('text/csv; charset=utf-8')
      .header('content-disposition', `attachment; filename="${view.id}-results.csv"`)
      .send(createReadStream(report.csv));
  });

  scope.get('/v1/batches/:id/charged-failures.csv', async (request: FastifyRequest<IdParams>, reply: FastifyReply) => {
    const view = await existingBatch(request.params.id);
    const charged = await batches.chargedFailures(view.id);
    return reply
      .type('text/csv; charset=utf-8')
      .header('content-disposition', `attachment; filename="${view.id}-charged-failures.csv"`)
      .send(createReadStream(charged.path));
  });

  scope.get('/v1/batches/:id/files/:name', async (request: FastifyRequest<{ Params: { id: string; name: string } }>, reply: FastifyReply) => {
    const view = await existingBatch(request.params.id);
    const { name } = request.params;
    const notFound = new HttpError(404, 'not_found', 'no such file in this batch');
    if (/\.(part|tmp)$/i.test(name)) throw notFound;
    let path: string;
    let real: string;
    try {
      path = outputPathFor(config.outDir, view.id, name);
      // outputPathFor checks the name; realpath also refuses a link pointing out of the batch folder.
      real = await realpath(path);
      const folder = await realpath(batchDirFor(config.outDir, view.id));
      if (!real.startsWith(folder + sep)) throw notFound;
    } catch {
      throw notFound;
    }
    const info = await stat(real).catch(() => undefined);
    if (!info?.isFile()) throw notFound;
    return reply
      .type(FILE_TYPES[extname(name).toLowerCase()] ?? 'application/octet-stream')
      .header('content-length', String(info.size))
      .header('content-disposition', `attachment; filename="${name.replace(/[^\x20-\x7e]|["\\]/g, '_')}"; filename*=UTF-8''${encodeURIComponent(name)}`)
      .send(createReadStream(real));
  });

  scope.post('/v1/batches/:id/cancel', async (request: FastifyRequest<IdParams>) => {
    const view = await existingBatch(request.params.id);
    const result = await batches.cancel(view.id);
    return { ...result, links: batchLinks(view.id) };
  });

  scope.post('/v1/batches/:id/approve', async (request: FastifyRequest<IdParams>, reply: FastifyReply) => {
    const view = await existingBatch(request.params.id);
    try {
      const result = await batches.approve(view.id);
      return { ...result, links: batchLinks(view.id) };
    } catch (error) {
      if (error instanceof ApprovalRefusedError) return sendError(reply, 409, error.reason, error.message);
      throw error;
    }
  });

  async function existingBatch(id: string): Promise<BatchView> {
    const view = BATCH_ID_PATTERN.test(id) ? await batches.view(id) : undefined;
    if (!view) throw new HttpError(404, 'not_found', `no batch "${BATCH_ID_PATTERN.test(id) ? id : '(invalid id)'}"`);
    return view;
  }
}

function rowView(batch: BatchView, record: ResultRecord): ApiRow {
  // A row whose job was removed by a cancel has no job left to describe it.
  const status: ApiRow['status'] = record.status === 'missing' && batch.cancelledAt !== null ? 'cancelled' : record.status;
  if (!record.file) return { ...record, status };
  return { ...record, status, links: { file: `${batchLinks(batch.id).files}${encodeURIComponent(basename(record.file))}` } };
}

function apiIssue(issue: ManifestIssue, rowsInput: boolean): ApiIssue {
  return {
    line: issue.line,
    ...(rowsInput && issue.line > 0 ? { row: issue.line - 1 } : {}),
    ...(issue.column !== undefined ? { column: issue.column } : {}),
    ...(issue.columnNumber !== undefined ? { columnNumber: issue.columnNumber } : {}),
    message: issue.message,
  };
}

function parse<T extends z.ZodType>(schema: T, value: unknown, where: 'body' | 'query'): z.infer<T> {
  const parsed = schema.safeParse(value ?? (where === 'body' ? undefined : {}));
  if (parsed.success) return parsed.data;
  const issues = parsed.error.issues.map((issue) => ({ path: issue.path.join('.'), message: issue.message }));
  const first = issues[0];
  throw new HttpError(400, 'bad_request', `invalid ${where}${first ? `: ${first.path ? `${first.path}: ` : ''}${first.message}` : ''}`, { issues });
}
