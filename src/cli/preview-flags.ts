import type { EnvName } from '../config/index.js';

/** Flags of the commands that make videos (run, demo, worker, serve --with-worker). */
export const PREVIEW_OPTIONS = {
  'no-previews': { type: 'boolean' },
  'poster-at': { type: 'string' },
} as const;

export const PREVIEW_HELP = `Preview options (a poster <name>.jpg and a GIF <name>.gif next to each video, made with ffmpeg):
  --no-previews          make no posters or GIFs (default: made when ffmpeg is there; $TALKBATCH_PREVIEWS)
  --poster-at SECONDS    where in the video the poster frame is taken (default: $TALKBATCH_POSTER_AT or 1)`;

export function previewOverrides(values: { 'no-previews'?: boolean | undefined; 'poster-at'?: string | undefined }): Partial<Record<EnvName, string | undefined>> {
  return {
    ...(values['no-previews'] ? { TALKBATCH_PREVIEWS: 'false' } : {}),
    TALKBATCH_POSTER_AT: values['poster-at'],
  };
}
