import { lstat } from 'node:fs/promises';
import { join } from 'node:path';
import fastifyStatic from '@fastify/static';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { RedisClient } from '../queue/connections.js';
import type { Config } from '../config/index.js';
import { batchDirFor, outputPathFor } from '../download/paths.js';
import { SHARE_PATH, ShareStore, shareUrlFor, type ShareRecord } from '../queue/previews.js';
import { escapeHtml } from '../report/preview-columns.js';

export interface ShareDeps {
  config: Pick<Config, 'outDir' | 'prefix' | 'queueName' | 'shareBaseUrl'>;
  redis: RedisClient;
}

type TokenRequest = FastifyRequest<{ Params: { token: string } }>;

/** The files a share page may hand out, by the name they have in its URLs. */
const ASSETS = {
  'video.mp4': { field: 'video', type: 'video/mp4' },
  'poster.jpg': { field: 'poster', type: 'image/jpeg' },
  'preview.gif': { field: 'gif', type: 'image/gif' },
} as const;

/**
 * Public share pages: `/s/<token>` (poster, player, title, message, Open Graph tags) and its files
 * `/s/<token>/video.mp4` (Range), `/poster.jpg`, `/preview.gif`. The token (256 random bits, kept in
 * Redis) is the only key: no API key is asked, and a revoked token answers 410 Gone at once.
 */
export async function registerShareRoutes(app: FastifyInstance, deps: ShareDeps): Promise<void> {
  const shares = new ShareStore(deps.redis, deps.config.prefix, deps.config.queueName);

  await app.register(async (scope) => {
    // Gives reply.sendFile (Range, ETag, HEAD) without exposing any folder as a route.
    await scope.register(fastifyStatic, { root: deps.config.outDir, serve: false, dotfiles: 'deny', index: false, list: false });

    const live = async (request: TokenRequest, reply: FastifyReply): Promise<ShareRecord | undefined> => {
      const share = await shares.get(request.params.token);
      reply.header('cache-control', 'no-store');
      if (!share) {
        await reply.code(404).type('text/html; charset=utf-8').send(notice('Not found', 'There is no video at this address.'));
        return undefined;
      }
      if (share.revokedAt) {
        await reply.code(410).type('text/html; charset=utf-8').send(notice('No longer shared', 'This video is no longer shared.'));
        return undefined;
      }
      return share;
    };

    scope.get(`${SHARE_PATH}/:token`, async (request: TokenRequest, reply) => {
      const share = await live(request, reply);
      if (!share) return reply;
      const base = deps.config.shareBaseUrl ?? `${request.protocol}://${request.host}`;
      reply.header('content-security-policy', "default-src 'none'; img-src 'self'; media-src 'self'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'");
      return reply.type('text/html; charset=utf-8').send(renderSharePage(share, shareUrlFor(base, share.token)));
    });

    scope.get(`${SHARE_PATH}/:token/:asset`, async (request: FastifyRequest<{ Params: { token: string; asset: string } }>, reply) => {
      const asset = ASSETS[request.params.asset as keyof typeof ASSETS] as (typeof ASSETS)[keyof typeof ASSETS] | undefined;
      if (!asset) return reply.code(404).type('text/plain; charset=utf-8').send('not found');
      const share = await live(request, reply);
      if (!share) return reply;
      const name = share[asset.field];
      const path = name ? safeFileOf(deps.config.outDir, share.batchId, name) : undefined;
      // Only a regular file written by talkbatch: never follow a link placed in the batch folder.
      const info = path ? await lstat(path).catch(() => undefined) : undefined;
      if (!path || !info?.isFile()) return reply.code(404).type('text/plain; charset=utf-8').send('not found');
      return reply.type(asset.type).sendFile(join(share.batchId, name as string), { cacheControl: false });
    });
  });
}

function safeFileOf(outDir: string, batchId: string, name: string): string | undefined {
  try {
    batchDirFor(outDir, batchId);
    return outputPathFor(outDir, batchId, name);
  } catch {
    return undefined;
  }
}

/** The share page: poster, player, title and message, and the tags a chat app or social site unfurls. */
export function renderSharePage(share: ShareRecord, pageUrl: string): string {
  const title = share.title ?? 'A video for you';
  const description = share.message ?? title;
  const video = `${pageUrl}/video.mp4`;
  const poster = share.poster ? `${pageUrl}/poster.jpg` : undefined;
  const meta = (property: string, content: string): string => `<meta property="${property}" content="${escapeHtml(content)}">`;
  const tags = [
    meta('og:type', 'video.other'),
    meta('og:title', title),
    meta('og:description', description),
    meta('og:url', pageUrl),
    meta('og:video', video),
    meta('og:video:secure_url', video),
    meta('og:video:type', 'video/mp4'),
    ...(poster ? [meta('og:image', poster), `<meta name="twitter:card" content="summary_large_image">`, `<meta name="twitter:image" content="${escapeHtml(poster)}">`] : []),
    `<meta name="twitter:title" content="${escapeHtml(title)}">`,
    `<meta name="robots" content="noindex">`,
  ];
  return [
    '<!doctype html>',
    '<html lang="en"><head><meta charset="utf-8">',
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    `<title>${escapeHtml(title)}</title>`,
    ...tags,
    '<style>body{margin:0;font-family:system-ui,sans-serif;background:#111;color:#eee;display:flex;flex-direction:column;align-items:center;padding:2rem 1rem}' +
      'main{max-width:720px;width:100%}video{width:100%;border-radius:8px;background:#000}h1{font-size:1.5rem;margin:0 0 1rem}p{line-height:1.5;white-space:pre-wrap}</style>',
    '</head><body><main>',
    `<h1>${escapeHtml(title)}</h1>`,
    `<video id="video" controls playsinline preload="metadata" src="${escapeHtml(video)}"${poster ? ` poster="${escapeHtml(poster)}"` : ''}></video>`,
    share.message ? `<p>${escapeHtml(share.message)}</p>` : '',
    '</main></body></html>',
    '',
  ].join('\n');
}

function notice(title: string, text: string): string {
  return `<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><meta name="robots" content="noindex"><title>${escapeHtml(title)}</title></head><body><h1>${escapeHtml(title)}</h1><p>${escapeHtml(text)}</p></body></html>\n`;
}
