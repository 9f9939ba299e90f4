import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { FastifyAdapter } from '@bull-board/fastify';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { TalkQueue } from '../queue/talk-queue.js';
import { browserGuard, type ApiKeys } from './auth.js';
import { sendError } from './http-errors.js';

export const DASHBOARD_PATH = '/admin';
export const SESSION_COOKIE = 'talkbatch_admin';

export interface DashboardDeps {
  queue: TalkQueue;
  keys: ApiKeys;
  /** config.dashboardWrite: let the dashboard retry, promote and remove jobs. */
  writable: boolean;
}

/**
 * bull-board at /admin. Behind the API keys like the REST API; a browser, which cannot send a bearer
 * header, opens `/admin?key=<key>` once: that sets an HttpOnly cookie derived from the key (never the
 * key itself) and redirects to a URL without it, so the key does not stay in the address bar.
 * Read-only unless TALKBATCH_DASHBOARD_WRITE: bull-board refuses changes itself, and so do we.
 */
export async function registerDashboard(app: FastifyInstance, deps: DashboardDeps): Promise<void> {
  const serverAdapter = new FastifyAdapter();
  serverAdapter.setBasePath(DASHBOARD_PATH);
  createBullBoard({
    queues: [new BullMQAdapter(deps.queue, { readOnlyMode: !deps.writable, allowRetries: deps.writable, displayName: 'talkbatch' })],
    serverAdapter,
    options: { uiConfig: { boardTitle: 'talkbatch' } },
  });

  await app.register(async (scope) => {
    scope.addHook('onRequest', browserGuard(deps.keys, SESSION_COOKIE, DASHBOARD_PATH));
    if (!deps.writable) {
      scope.addHook('onRequest', async (request: FastifyRequest, reply: FastifyReply) => {
        if (request.method !== 'GET' && request.method !== 'HEAD') {
          return sendError(reply, 405, 'read_only', 'the dashboard is read-only (set TALKBATCH_DASHBOARD_WRITE=true to allow changes)');
        }
        return undefined;
      });
    }
    await scope.register(serverAdapter.registerPlugin(), { prefix: DASHBOARD_PATH });
  });
}
