import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { Config } from '../config/index.js';
import type { DidClient } from '../did/index.js';
import type { QueueHandle } from '../queue/talk-queue.js';
import type { Logger } from '../shared/logger.js';
import { verifyWebhookToken } from '../shared/webhook-token.js';
import { publishWake } from '../worker/wakeups.js';
import { sendError } from './http-errors.js';

/** D-ID posts the talk as JSON; a few KB. Anything much bigger is not D-ID. */
export const WEBHOOK_BODY_LIMIT = 64 * 1024;

/** All we take from the body is the talk id, and only as a hint: the talk is re-read from D-ID. */
const WebhookBody = z.object({ id: z.string().min(1).max(200) });
const TERMINAL_STATUSES: ReadonlySet<string> = new Set(['done', 'error', 'rejected']);

export interface WebhookDeps {
  config: Pick<Config, 'webhookSecret' | 'prefix' | 'queueName'>;
  handle: Pick<QueueHandle, 'queue' | 'redis'>;
  logger: Logger;
  /** Re-reads the talk with our key; without it (or without TALKBATCH_WEBHOOK_SECRET) the route answers 404. */
  did: DidClient | undefined;
}

type WebhookRequest = FastifyRequest<{ Params: { jobId: string; token: string } }>;

/**
 * `POST /webhooks/did/:jobId/:token`: D-ID's talk-finished webhook. D-ID does not sign webhooks, so the
 * URL carries an HMAC of the job id (src/shared/webhook-token.ts). The body is only a hint: the talk is
 * re-read with our API key, and only a finished talk wakes the job, which then polls D-ID itself. So a
 * forged, replayed or premature call can at worst cost one GET; it never changes a job.
 */
export function registerWebhook(app: FastifyInstance, deps: WebhookDeps): void {
  const { config, handle, did } = deps;
  const logger = deps.logger.child({ route: 'webhook' });

  // eslint-disable-next-line @typescript-eslint/require-await -- a Fastify plugin: async makes a throw here fail register().
  void app.register(async (scope) => {
    // Whatever the content type says, the body is taken as bytes and parsed here, so that a bad body
    // gets our answer, and only after the token was checked.
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: WEBHOOK_BODY_LIMIT }, (_request, body, done) => done(null, body));

    scope.post(
      '/webhooks/did/:jobId/:token',
      {
        bodyLimit: WEBHOOK_BODY_LIMIT,
        // Runs before the body is read: a wrong token learns nothing, not even whether its body was valid.
        onRequest: async (request: WebhookRequest, reply: FastifyReply) => {
          const { jobId, token } = request.params;
          const secret = config.webhookSecret;
          if (!secret || !did || !verifyWebhookToken(secret, jobId, token)) {
            return sendError(reply, 404, 'not_found', 'no such route');
          }
          return undefined;
        },
      },
      async (request: WebhookRequest, reply: FastifyReply) => {
        const { jobId } = request.params;
        const body = parseBody(request.body);
        if (!body) return sendError(reply, 400, 'bad_request', 'the body must be JSON with the talk "id"');
        const talkId = body.id;

        const job = await handle.queue.getJob(jobId);
        if (!job || job.data.state?.talkId !== talkId) {
          logger.warn({ jobId }, 'webhook for a talk this job does not wait for; ignored');
          return reply.code(202).send({ status: 'ignored' });
        }
        const jobState = await job.getState();
        if (jobState !== 'active' || job.data.state.step !== 'rendering') {
          // A duplicate or a replay: the row has moved on, and will poll anyway if it waits again.
          return reply.code(200).send({ status: 'ignored' });
        }

        if (!did) return sendError(reply, 404, 'not_found', 'no such route');
        let status: string;
        try {
          status = (await did.getTalk(talkId)).status;
        } catch (error) {
          logger.warn({ jobId, err: error instanceof Error ? error.message : String(error) }, 'could not re-read the talk of a webhook; the job keeps polling');
          return reply.code(202).send({ status: 'deferred' });
        }
        if (!TERMINAL_STATUSES.has(status)) return reply.code(202).send({ status: 'pending' });

        await publishWake(handle.redis, config.prefix, config.queueName, jobId);
        logger.debug({ jobId, talkStatus: status }, 'webhook woke the job');
        return reply.code(200).send({ status: 'woken' });
      },
    );
  });
}

function parseBody(raw: unknown): z.infer<typeof WebhookBody> | undefined {
  if (!Buffer.isBuffer(raw)) return undefined;
  let json: unknown;
  try {
    json = JSON.parse(raw.toString('utf8'));
  } catch {
    return undefined;
  }
  const parsed = WebhookBody.safeParse(json);
  return parsed.success ? parsed.data : undefined;
}
