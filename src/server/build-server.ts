import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Config } from '../config/index.js';
import type { DidClient } from '../did/index.js';
import type { QueueHandle } from '../queue/talk-queue.js';
import { silentLogger, type Logger } from '../shared/logger.js';
import { ApiKeys, bearerToken } from './auth.js';
import { registerBatchRoutes } from './batches-routes.js';
import { BatchService, type CallbackRetry } from '../app/index.js';
import { registerDashboard } from './dashboard.js';
import { registerHealth } from './health.js';
import { HttpError, codeForStatus, sendError } from './http-errors.js';
import { TalkbatchMetrics } from './metrics.js';
import { openApiDocument } from './openapi.js';
import { registerReview } from './review.js';
import { registerShareRoutes } from './share-routes.js';
import { registerWebhook } from './webhook.js';
import type { WorkerHealth } from '../worker/create-worker.js';

export interface ServerDeps {
  config: Config;
  handle: QueueHandle;
  logger?: Logger;
  /** Re-reads talks for the D-ID webhook; without it the webhook route answers 404. */
  did?: DidClient;
  metrics?: TalkbatchMetrics;
  /** Submits, views, cancels and finishes batches; default: one built from config (report + signed callback). */
  batches?: BatchService;
  /** Base of absolute links in callbacks (resultsUrl); default config.publicUrl. */
  publicUrl?: string;
  /** Accept http:// callback URLs. For tests and local receivers only. */
  allowHttpCallbacks?: boolean;
  callbackRetry?: Partial<CallbackRetry>;
  /** The worker running in this process, if any, for /readyz. */
  workerHealth?: () => WorkerHealth | undefined;
}

export interface TalkbatchServer {
  app: FastifyInstance;
  metrics: TalkbatchMetrics;
  batches: BatchService;
}

/**
 * The one HTTP server of `talkbatch serve`: D-ID webhook, REST API, dashboard, metrics and health. Not
 * listening yet: call `app.listen()` (tests use port 0). Closing the app stops the batch service it built.
 */
export async function buildServer(deps: ServerDeps): Promise<TalkbatchServer> {
  const { config, handle } = deps;
  const logger = deps.logger ?? silentLogger;
  const keys = new ApiKeys(config.apiKeys);
  const metrics = deps.metrics ?? new TalkbatchMetrics();
  const ownsBatches = deps.batches === undefined;
  const batches =
    deps.batches ??
    new BatchService({
      config,
      handle,
      logger,
      ...(deps.publicUrl !== undefined ? { publicUrl: deps.publicUrl } : {}),
      ...(deps.callbackRetry !== undefined ? { callbackRetry: deps.callbackRetry } : {}),
    });
  // One report writer per process: two writers of the same batch would share temp file names.
  const reports = batches.finisher.reports;

  // Fastify's own request logging would write raw URLs, and webhook URLs carry a token: we log route patterns instead.
  const app = Fastify({ logger: false, bodyLimit: config.maxBodyBytes, return503OnClosing: true, forceCloseConnections: 'idle' });

  app.addHook('onSend', async (_request, reply, payload) => {
    reply.header('x-content-type-options', 'nosniff');
    reply.header('referrer-policy', 'no-referrer');
    return payload;
  });
  app.addHook('onResponse', async (request, reply) => {
    logger.debug({ method: request.method, route: request.routeOptions.url ?? '(none)', status: reply.statusCode, ms: Math.round(reply.elapsedTime) }, 'http');
  });
  app.setErrorHandler((error: unknown, request: FastifyRequest, reply: FastifyReply) => {
    if (error instanceof HttpError) return reply.code(error.statusCode).send(error.body);
    const status = (error as { statusCode?: unknown }).statusCode;
    if (typeof status === 'number' && status >= 400 && status < 500) {
      return sendError(reply, status, codeForStatus(status), error instanceof Error ? error.message : 'bad request');
    }
    logger.error({ method: request.method, route: request.routeOptions.url ?? '(none)', err: error instanceof Error ? error.message : String(error) }, 'request failed');
    return sendError(reply, 500, 'internal', 'internal error (see the server log)');
  });
  app.setNotFoundHandler((_request, reply) => sendError(reply, 404, 'not_found', 'no such route'));
  if (ownsBatches) app.addHook('onClose', async () => batches.close());

  registerHealth(app, { config, redis: handle.redis, ...(deps.workerHealth ? { workerHealth: deps.workerHealth } : {}) });
  registerWebhook(app, { config, handle, logger, did: deps.did });

  const requireKey = async (request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply | undefined> => {
    if (!keys.configured) {
      return sendError(reply, 401, 'unauthorized', 'the API is off: no API keys are configured (set TALKBATCH_API_KEYS)');
    }
    if (!keys.verify(bearerToken(request.headers.authorization))) {
      reply.header('www-authenticate', 'Bearer');
      return sendError(reply, 401, 'unauthorized', 'send "Authorization: Bearer <key>" with one of TALKBATCH_API_KEYS');
    }
    return undefined;
  };

  // eslint-disable-next-line @typescript-eslint/require-await -- a Fastify plugin: async makes a throw here fail register().
  await app.register(async (api) => {
    // onRequest runs before the body is read: an unauthenticated upload is refused without being parsed.
    api.addHook('onRequest', requireKey);
    registerBatchRoutes(api, { config, batches, allowHttpCallbacks: deps.allowHttpCallbacks === true });
    api.get('/metrics', async (_request, reply) => reply.type(metrics.contentType).send(await metrics.render(handle.queue)));
    const document = openApiDocument();
    api.get('/openapi.json', () => document);
  });

  await registerDashboard(app, { queue: handle.queue, keys, writable: config.dashboardWrite });
  await registerReview(app, { handle, keys, outDir: config.outDir, reports, batches, writable: config.dashboardWrite });
  await registerShareRoutes(app, { config, redis: handle.redis });
  return { app, metrics, batches };
}
