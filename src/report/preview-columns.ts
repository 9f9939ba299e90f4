import type { Queue } from 'bullmq';
import type { RedisClient } from '../queue/connections.js';
import { PreviewStore, ShareStore, shareUrlFor, type PreviewOutcome } from '../queue/previews.js';

/** The results columns about a done row's poster, GIF and share page. */
export interface PreviewColumns {
  /** File names next to the video, when made. */
  poster: string | null;
  gif: string | null;
  /** Why there is no poster/GIF for a done row (still being made, failed, turned off). */
  previewNote: string | null;
  shareUrl: string | null;
  /** The GIF (or poster) linking to the share page, for a mail-merge template. */
  emailHtml: string | null;
}

export const NO_PREVIEW: PreviewColumns = { poster: null, gif: null, previewNote: null, shareUrl: null, emailHtml: null };

/** Reads the preview outcomes and share tokens of one page of rows (two HMGETs). */
export async function previewColumnsFor(
  queue: Pick<Queue, 'backend' | 'name' | 'opts'>,
  batchId: string,
  rows: readonly { rowKey: string; done: boolean; title?: string | undefined }[],
  shareBaseUrl: string | undefined,
): Promise<PreviewColumns[]> {
  if (rows.length === 0) return [];
  const redis = (await queue.backend.client) as unknown as RedisClient;
  const prefix = queue.opts.prefix ?? 'bull';
  const keys = rows.map((row) => row.rowKey);
  const [outcomes, tokens] = await Promise.all([
    new PreviewStore(redis, prefix, queue.name).outcomes(batchId, keys),
    shareBaseUrl ? new ShareStore(redis, prefix, queue.name).tokens(batchId, keys) : Promise.resolve(keys.map(() => undefined)),
  ]);
  return rows.map((row, index) => (row.done ? columnsFor(outcomes[index], tokens[index], shareBaseUrl, row.title) : NO_PREVIEW));
}

function columnsFor(outcome: PreviewOutcome | undefined, token: string | undefined, shareBaseUrl: string | undefined, title: string | undefined): PreviewColumns {
  const poster = outcome?.status === 'done' ? outcome.poster : null;
  const gif = outcome?.status === 'done' ? outcome.gif : null;
  const previewNote = outcome === undefined ? 'previews not made yet' : outcome.status === 'done' ? null : outcome.reason;
  const shareUrl = token && shareBaseUrl ? shareUrlFor(shareBaseUrl, token) : null;
  return { poster, gif, previewNote, shareUrl, emailHtml: shareUrl ? emailHtmlFor(shareUrl, { gif: gif !== null, poster: poster !== null, title }) : null };
}

/** An image that links to the share page: the GIF when there is one, else the poster, else a text link. */
export function emailHtmlFor(shareUrl: string, has: { gif: boolean; poster: boolean; title?: string | undefined }): string {
  const label = escapeHtml(has.title ? `Play: ${has.title}` : 'Play the video');
  const href = escapeHtml(shareUrl);
  if (!has.gif && !has.poster) return `<a href="${href}">${label}</a>`;
  const image = `${shareUrl}/${has.gif ? 'preview.gif' : 'poster.jpg'}`;
  return `<a href="${href}"><img src="${escapeHtml(image)}" width="320" alt="${label}" style="display:block;border:0;max-width:100%"></a>`;
}

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (char) => `&#${char.charCodeAt(0)};`);
}
