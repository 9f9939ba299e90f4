import { lstatSync, realpathSync } from 'node:fs';
import { resolve, sep } from 'node:path';
import fastifyStatic from '@fastify/static';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { QueueHandle } from '../queue/talk-queue.js';
import { renderBatchIndexPage } from '../report/review-page.js';
import { browserGuard, type ApiKeys } from './auth.js';
import type { ReportWriter } from '../app/finisher.js';
import { HttpError } from './http-errors.js';

export const REVIEW_PATH = '/review';
const REVIEW_COOKIE = 'talkbatch_review';
const LIST_LIMIT = 200;

export interface ReviewDeps {
  handle: Pick<QueueHandle, 'batches'>;
  keys: ApiKeys;
  outDir: string;
  reports: ReportWriter;
}

/**
 * The review pages in a browser: `/review/` lists the batches, `/review/<batch>/` is the batch's
 * `index.html` (the same file `talkbatch run` writes beside the videos, refreshed on each visit), and
 * the videos are served with Range support so the players can seek. Behind the API keys.
 */
export async function registerReview(app: FastifyInstance, deps: ReviewDeps): Promise<void> {
  await app.register(async (scope) => {
    scope.addHook('onRequest', browserGuard(deps.keys, REVIEW_COOKIE, REVIEW_PATH));

    scope.get(REVIEW_PATH, async (_request, reply) => reply.redirect(`${REVIEW_PATH}/`, 301));
    scope.get(`${REVIEW_PATH}/`, async (_request, reply: FastifyReply) => {
      const ids = await deps.handle.batches.list(0, LIST_LIMIT);
      const batches = (await Promise.all(ids.map((id) => deps.handle.batches.get(id)))).filter((batch) => batch !== undefined);
      const html = renderBatchIndexPage(batches.map((batch) => ({ id: batch.id, createdAt: batch.createdAt, counts: batch.counts })));
      return reply.type('text/html; charset=utf-8').send(html);
    });

    // The page is rebuilt from Redis on each visit, so it shows rows that finished since the last report.
    scope.get(`${REVIEW_PATH}/:id/`, async (request: FastifyRequest<{ Params: { id: string } }>, reply: FastifyReply) => {
      const { id } = request.params;
      if (!(await deps.handle.batches.exists(id))) throw new HttpError(404, 'not_found', `no batch "${id}"`);
      await deps.reports.write(id);
      return reply.sendFile(`${id}/index.html`);
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
