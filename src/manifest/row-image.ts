import { checkLocalMedia, isLocalPath, shareLink } from './local-media.js';
import type { RowContext, RowFields } from './row-fields.js';
import { imageUrlMessage } from './urls.js';

/** Where the talk's picture comes from, as the D-ID body (or the worker, for a file or a share link) names it. */
export type ImageSource = { source_url: string } | { source_file: string } | { source_link: string };

/** The image_url cell, else the default image; undefined (with an issue) when there is no usable one. */
export function imageSource(fields: RowFields, ctx: RowContext): ImageSource | undefined {
  const image = fields.get('image_url') ?? (fields.given('image_url') ? undefined : ctx.defaults.imageUrl);
  if (image === undefined) {
    if (!fields.given('image_url')) fields.add('image_url', 'is empty (every row needs an image, or set a default image)');
    return undefined;
  }
  // A share link is fetched, checked and uploaded by the worker (src/worker/uploads.ts).
  const link = shareLink(image);
  if (link !== undefined) return { source_link: link };
  if (isLocalPath(image)) {
    const local = checkLocalMedia(image, 'image', ctx.localMedia);
    if (!('message' in local)) return { source_file: local.path };
    fields.add('image_url', local.message);
    return undefined;
  }
  const message = imageUrlMessage(image);
  if (message === undefined) return { source_url: image };
  fields.add('image_url', message);
  return undefined;
}
