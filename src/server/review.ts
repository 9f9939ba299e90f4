import { lstatSync, realpathSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join, resolve, sep } from 'node:path';
import fastifyStatic from '@fastify/static';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { QueueHandle } from '../queue/talk-queue.js';
import { BATCH_ID_PATTERN } from '../queue/payload.js';
import { REVIEW_PAGE_FILE, addApproveForm, renderBatchIndexPage } from '../report/review-page.js';
import { bearerToken, browserGuard, cookieValue, type ApiKeys } from './auth.js';
import { ApprovalRefusedError, type BatchService, type ReportWriter } from '../app/index.js';
import { HttpError, sendError } from './http-errors.js';

export const REVIEW_PATH = '/review';
const REVIEW_COOKIE = 'talkbatch_review';
const LIST_LIMIT = 200;
/** An approve form's body is one hidden field. */
const FORM_BODY_LIMIT = 4_096;

export interface ReviewDeps {
  handle: Pick<QueueHandle, 'batches'>;
  keys: ApiKeys;
  outDir: string;
  reports: ReportWriter;
  /** Approves a sample from its review page. */
  batches: Pick<BatchService, 'approve'>;
  /**
   * config.dashboardWrite: browser sessions may change things. The review page shows its approve button, and the
   * server takes the form, only then; the REST API approves for any key either way.
   */
  writable: boolean;
}

type IdParams = { Params: { id: string } };

/**
 * The review pages in a browser: `/review/` lists the batches, `/review/<batch>/` is the batch's
 * `index.html` (the same file `talkbatch run` writes beside the videos, refreshed on each visit), and
 * the videos are served with Range support so the players can seek. Behind the API keys. A sample under review
 * gets an approve button for a browser session when the server allows changes from browsers.
 */
export async function registerReview(app: FastifyInstance, deps: ReviewDeps): Promise<void> {
  await app.register(async (scope) => {
    scope.addHook('onRequest', browserGuard(deps.keys, REVIEW_COOKIE, REVIEW_PATH));
    scope.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit: FORM_BODY_LIMIT }, (_request, body, done) => {
      done(null, Object.fromEntries(new URLSearchParams(String(body))));
    });

    scope.get(REVIEW_PATH, async (_request, reply) => reply.redirect(`${REVIEW_PATH}/`, 301));
    scope.get(`${REVIEW_PATH}/`, async (_request, reply: FastifyReply) => {
      const ids = await deps.handle.batches.list(0, LIST_LIMIT);
      const batches = (await Promise.all(ids.map((id) => deps.handle.batches.get(id)))).filter((batch) => batch !== undefined);
      const html = renderBatchIndexPage(batches.map((batch) => ({ id: batch.id, createdAt: batch.createdAt, counts: batch.counts })));
      return reply.type('text/html; charset=utf-8').send(html);
    });

    // The page is rebuilt from Redis on each visit, so it shows rows that finished since the last report.
    scope.get(`${REVIEW_PATH}/:id/`, async (request: FastifyRequest<IdParams>, reply: FastifyReply) => {
      const { id } = request.params;
      if (!(await deps.handle.batches.exists(id))) throw new HttpError(404, 'not_found', `no batch "${id}"`);
      const report = await deps.reports.write(id);
      const csrfToken = deps.writable ? deps.keys.csrfToken(cookieValue(request.headers.cookie, REVIEW_COOKIE)) : undefined;
      if (report.counts.held === 0 || csrfToken === undefined) return reply.sendFile(`${id}/${REVIEW_PAGE_FILE}`);
      const page = await readFile(join(report.dir, REVIEW_PAGE_FILE), 'utf8');
      const html = addApproveForm(page, { action: `${REVIEW_PATH}/${encodeURIComponent(id)}/approve`, csrfToken, held: report.counts.held });
      // The page carries the session's CSRF token: no cache may keep it.
      return reply.type('text/html; charset=utf-8').header('cache-control', 'no-store').send(html);
    });

    // The approve button's form. A bearer key needs no token (a browser never sends one by itself); a session
    // cookie does: a form another site makes the browser post carries the cookie but cannot know the token.
    scope.post(`${REVIEW_PATH}/:id/approve`, async (request: FastifyRequest<IdParams & { Body: unknown }>, reply: FastifyReply) => {
      if (!deps.writable) return sendError(reply, 405, 'read_only', 'approving from the review page needs TALKBATCH_DASHBOARD_WRITE=true (or use POST /v1/batches/:id/approve)');
      const byKey = deps.keys.verify(bearerToken(request.headers.authorization));
      const body = request.body as Record<string, unknown> | undefined;
      const token = typeof body?.csrf === 'string' ? body.csrf : undefined;
      if (!byKey && !deps.keys.verifyCsrf(cookieValue(request.headers.cookie, REVIEW_COOKIE), token)) {
        return sendError(reply, 403, 'csrf', 'the form\'s token is missing or does not belong to this session; reload the review page and try again');
      }
      const { id } = request.params;
      if (!BATCH_ID_PATTERN.test(id) || !(await deps.handle.batches.exists(id))) throw new HttpError(404, 'not_found', 'no such batch');
      try {
        await deps.batches.approve(id);
      } catch (error) {
        if (error instanceof ApprovalRefusedError) return sendError(reply, 409, error.reason, error.message);
        throw error;
      }
      return reply.redirect(`${REVIEW_PATH}/${encodeURIComponent(id)}/`, 303);
    });

    await scope.register(fastifyStatic, {
      root: deps.outDir,
      prefix: `${REVIEW_PATH}/`,
      serve: true,
      index: false,
      list: false,
      dotfiles: 'deny',
      // Never hand out a download in progress.
      allowedPath: (pathName) => !/\.(part|tmp)$/i.test(pathName) && isRegularFileInBatch(deps.outDir, pathName),
    });
  });
}

/**
 * Only regular files that really live inside their batch folder: a symlink (or a folder link) pointing out of it,
 * say to /etc or another batch, is not served, whatever the static server would follow.
 */
export function isRegularFileInBatch(outDir: string, pathName: string): boolean {
  const segments = pathName.split('/').filter((segment) => segment !== '');
  if (segments.length < 2) return false;
  try {
    const batchDir = realpathSync(resolve(outDir, segments[0] as string));
    const target = resolve(outDir, ...segments);
    if (lstatSync(target).isSymbolicLink()) return false;
    const real = realpathSync(target);
    return real.startsWith(batchDir + sep) && lstatSync(real).isFile();
  } catch {
    return false;
  }
}
