import { spawn } from 'node:child_process';
import { open, rename, rm, stat } from 'node:fs/promises';
import { setPriority } from 'node:os';
import { basename, dirname, extname, join } from 'node:path';
import { AppError } from '../shared/errors.js';
import { fixHint, type SystemProgram } from '../shared/system-package.js';

/** ffmpeg as Debian packages it (the demo and the tests install it like redis-server when missing). */
export const FFMPEG: SystemProgram = {
  purpose: 'previews (posters and GIFs)',
  candidates: ['ffmpeg'],
  debianPackage: 'ffmpeg',
  debianPath: '/usr/bin/ffmpeg',
  fixes: {
    debian: 'sudo apt-get install -y ffmpeg',
    macos: 'brew install ffmpeg',
    docker: 'add ffmpeg to the worker image (apt-get install -y ffmpeg)',
  },
};

/** What an email client shows inline without complaint: 320 px wide, under 1 MB. */
export const GIF_WIDTH = 320;
export const GIF_MAX_BYTES = 1_000_000;
/** The first seconds of the video the GIF loops over. */
export const GIF_SECONDS = 3;
/** Posters are the video's own size, but never wider than this. */
const POSTER_MAX_WIDTH = 1280;
/** Everything one ffmpeg run may take; a stuck encoder must not hold the preview queue. */
const ENCODE_TIMEOUT_MS = 60_000;
/** Lines of ffmpeg's stderr kept for the reason a preview is missing. */
const STDERR_TAIL_BYTES = 2_000;
/** Unix nice value for ffmpeg: below the worker's (0), still well above idle (19). */
const ENCODER_NICENESS = 10;

export type PreviewFailure = 'no-encoder' | 'encode' | 'too-large' | 'no-video';

export class PreviewError extends AppError {
  readonly code = 'PREVIEW_FAILED';
  constructor(
    readonly reason: PreviewFailure,
    message: string,
  ) {
    super(message);
  }
}

export interface PreviewOptions {
  /** ffmpeg: a command name on PATH or a path. */
  ffmpeg: string;
  /** Poster frame time in seconds; past the end, the first frame is used. */
  posterAtSeconds: number;
  signal?: AbortSignal;
}

export interface PreviewFiles {
  poster: string;
  gif: string;
  posterBytes: number;
  gifBytes: number;
}

/** `<dir>/<name>.jpg` and `<dir>/<name>.gif` for `<dir>/<name>.mp4`. */
export function previewPathsFor(videoPath: string): { poster: string; gif: string } {
  const stem = join(dirname(videoPath), basename(videoPath, extname(videoPath)));
  return { poster: `${stem}.jpg`, gif: `${stem}.gif` };
}

const encoderChecks = new Map<string, Promise<string | undefined>>();

/**
 * Whether `ffmpeg` runs here: undefined when it does, else the clear message to show (once per
 * process and path; the answer does not change while a worker runs).
 */
export function encoderProblem(ffmpeg: string): Promise<string | undefined> {
  let check = encoderChecks.get(ffmpeg);
  if (!check) {
    check = runFfmpeg(ffmpeg, ['-hide_banner', '-version'], 10_000).then(
      () => undefined,
      (error: unknown) =>
        `previews need ffmpeg, which could not be run as "${ffmpeg}" (${(error as Error).message}); ` +
        `install it (${fixHint(FFMPEG)}), set TALKBATCH_FFMPEG, or pass --no-previews`,
    );
    encoderChecks.set(ffmpeg, check);
  }
  return check;
}

/**
 * Makes the poster and the GIF of a verified video. Each is encoded to `<final>.part`, checked
 * (non-empty, the right magic bytes, the GIF under GIF_MAX_BYTES), fsynced and renamed, so a file under
 * its final name is always whole. A GIF too large at the first settings is encoded once more, smaller.
 */
export async function makePreviews(videoPath: string, options: PreviewOptions): Promise<PreviewFiles> {
  const problem = await encoderProblem(options.ffmpeg);
  if (problem) throw new PreviewError('no-encoder', problem);
  const paths = previewPathsFor(videoPath);
  const posterBytes = await encodeAtomically(paths.poster, async (part) => {
    await encodePoster(options, videoPath, part, options.posterAtSeconds);
    // A time past the video's end yields no frame: the first frame is the poster then.
    if ((await sizeOf(part)) === 0 && options.posterAtSeconds > 0) await encodePoster(options, videoPath, part, 0);
  }, JPEG_MAGIC);
  const gifBytes = await encodeAtomically(paths.gif, async (part) => {
    await encodeGif(options, videoPath, part, { fps: 10, colours: 128 });
    if ((await sizeOf(part)) > GIF_MAX_BYTES) await encodeGif(options, videoPath, part, { fps: 6, colours: 48 });
    if ((await sizeOf(part)) > GIF_MAX_BYTES) throw new PreviewError('too-large', `the GIF stays over ${GIF_MAX_BYTES} bytes even at 6 frames a second and 48 colours`);
  }, GIF_MAGIC);
  return { ...paths, posterBytes, gifBytes };
}

const JPEG_MAGIC = Buffer.from([0xff, 0xd8, 0xff]);
const GIF_MAGIC = Buffer.from('GIF89a', 'latin1');

async function encodeAtomically(finalPath: string, encode: (partPath: string) => Promise<void>, magic: Buffer): Promise<number> {
  const part = `${finalPath}.part`;
  try {
    await rm(part, { force: true });
    await encode(part);
    const size = await sizeOf(part);
    if (size === 0) throw new PreviewError('no-video', `ffmpeg wrote no ${extname(finalPath)} frame (is the video empty?)`);
    const handle = await open(part, 'r+');
    try {
      const head = Buffer.alloc(magic.length);
      await handle.read(head, 0, magic.length, 0);
      if (!head.equals(magic)) throw new PreviewError('encode', `ffmpeg wrote something that is not a ${extname(finalPath)} file`);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(part, finalPath);
    return size;
  } finally {
    await rm(part, { force: true });
  }
}

function encodePoster(options: PreviewOptions, input: string, output: string, atSeconds: number): Promise<void> {
  return runFfmpeg(
    options.ffmpeg,
    [
      '-hide_banner', '-nostdin', '-loglevel', 'error', '-y',
      '-ss', atSeconds.toFixed(3), '-i', input,
      '-frames:v', '1', '-an',
      '-vf', `scale='min(${POSTER_MAX_WIDTH},iw)':-2`,
      '-q:v', '3', '-f', 'image2', '-c:v', 'mjpeg', output,
    ],
    ENCODE_TIMEOUT_MS,
    options.signal,
  );
}

/** Two-pass palette in one graph: far smaller and cleaner GIFs than ffmpeg's default palette. */
function encodeGif(options: PreviewOptions, input: string, output: string, settings: { fps: number; colours: number }): Promise<void> {
  return runFfmpeg(
    options.ffmpeg,
    [
      '-hide_banner', '-nostdin', '-loglevel', 'error', '-y',
      '-t', String(GIF_SECONDS), '-i', input, '-an',
      '-filter_complex',
      `fps=${settings.fps},scale=${GIF_WIDTH}:-2:flags=lanczos,split[a][b];[a]palettegen=max_colors=${settings.colours}:stats_mode=diff[p];[b][p]paletteuse=dither=bayer:bayer_scale=5`,
      '-loop', '0', '-f', 'gif', output,
    ],
    ENCODE_TIMEOUT_MS,
    options.signal,
  );
}

/** Runs ffmpeg without a shell; rejects with the tail of its stderr on a non-zero exit or a timeout. */
export function runFfmpeg(ffmpeg: string, args: readonly string[], timeoutMs: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(ffmpeg, args, { stdio: ['ignore', 'ignore', 'pipe'], ...(signal ? { signal } : {}) });
    // No row waits on a preview, but rows do wait on the worker's hand-over (a finished talk's download,
    // the next create): the encoder yields the CPU to it, and to the other workers on the host.
    if (child.pid !== undefined) {
      try {
        setPriority(child.pid, ENCODER_NICENESS);
      } catch {
        // Not permitted here (some containers): it encodes at normal priority.
      }
    }
    let stderr = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => {
      stderr = (stderr + chunk).slice(-STDERR_TAIL_BYTES);
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once('close', (code, killedBy) => {
      clearTimeout(timer);
      if (code === 0) return resolve();
      const why = killedBy ? `stopped by ${killedBy}${killedBy === 'SIGKILL' ? ` (over ${timeoutMs / 1000} s?)` : ''}` : `exit ${code}`;
      const detail = stderr.trim().split('\n').slice(-2).join(' / ');
      reject(new PreviewError('encode', `ffmpeg failed (${why})${detail ? `: ${detail}` : ''}`));
    });
  });
}

async function sizeOf(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch {
    return 0;
  }
}
