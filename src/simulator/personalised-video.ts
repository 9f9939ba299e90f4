import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TalkRequestBody } from './did-document.js';

/** Encodes at a time: the simulator shares the machine with the workers it serves. */
const MAX_ENCODES = 2;
const ENCODE_TIMEOUT_MS = 30_000;
const LINE_CHARS = 26;
const FONT = '/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf';

/**
 * Per-talk videos for the simulator, so the rows of a demo can be told apart: the fixture video
 * scaled to 320 px with the start of the talk's script drawn on every frame, made by ffmpeg when the
 * talk is created. Until a talk's video is ready, or when ffmpeg is missing or fails, the talk gets
 * the fixture video; once a talk's bytes were served they never change (a Range resume must match).
 */
export class PersonalisedVideos {
  readonly #ffmpeg: string;
  readonly #ready = new Map<string, Buffer>();
  /** Talks whose first byte went out: they keep what they were served. */
  readonly #pinned = new Map<string, Buffer | undefined>();
  readonly #waiting: (() => void)[] = [];
  /** Encodes under way or queued, by talk. */
  readonly #encoding = new Map<string, Promise<void>>();
  #running = 0;
  #unavailable = false;
  #folder: Promise<string> | undefined;
  #input: Promise<string> | undefined;

  constructor(options: { ffmpeg?: string } = {}) {
    this.#ffmpeg = options.ffmpeg ?? 'ffmpeg';
  }

  /** Starts making the talk's video in the background; never throws. */
  prepare(talkId: string, request: TalkRequestBody, fixture: Buffer): void {
    if (this.#unavailable) return;
    const text = captionOf(request);
    const encoding = this.#encode(talkId, text, fixture)
      .catch(() => undefined)
      .finally(() => this.#encoding.delete(talkId));
    this.#encoding.set(talkId, encoding);
  }

  /** Resolves once the talk's video is made (or failed), or after `timeoutMs`: a download waits for it rather than get the fixture. */
  async ready(talkId: string, timeoutMs: number): Promise<void> {
    const encoding = this.#encoding.get(talkId);
    if (!encoding) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([encoding, new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
    clearTimeout(timer);
  }

  /** The talk's own video when it was ready before its first byte was served, else undefined (use the fixture). */
  videoFor(talkId: string): Buffer | undefined {
    if (this.#pinned.has(talkId)) return this.#pinned.get(talkId);
    const video = this.#ready.get(talkId);
    this.#ready.delete(talkId);
    this.#pinned.set(talkId, video);
    return video;
  }

  forget(talkId: string): void {
    this.#ready.delete(talkId);
    this.#pinned.delete(talkId);
  }

  async close(): Promise<void> {
    const folder = await this.#folder?.catch(() => undefined);
    if (folder) await rm(folder, { recursive: true, force: true });
  }

  async #encode(talkId: string, text: string, fixture: Buffer): Promise<void> {
    await this.#slot();
    try {
      if (this.#pinned.has(talkId)) return;
      this.#folder ??= mkdtemp(join(tmpdir(), 'talkbatch-sim-video-'));
      const folder = await this.#folder;
      this.#input ??= writeFile(join(folder, 'fixture.mp4'), fixture).then(() => join(folder, 'fixture.mp4'));
      const input = await this.#input;
      const caption = join(folder, `${talkId}.txt`);
      const output = join(folder, `${talkId}.mp4`);
      await writeFile(caption, text);
      const font = existsSync(FONT) ? `fontfile=${FONT}:` : '';
      const filter =
        `scale=320:320:flags=bicubic,drawbox=y=ih-96:w=iw:h=96:color=black@0.6:t=fill,` +
        `drawtext=${font}textfile=${caption}:fontcolor=white:fontsize=20:line_spacing=6:x=12:y=h-84`;
      try {
        await run(this.#ffmpeg, ['-hide_banner', '-nostdin', '-loglevel', 'error', '-y', '-i', input, '-vf', filter, '-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p', '-c:a', 'copy', '-movflags', '+faststart', '-f', 'mp4', output]);
        if (!this.#pinned.has(talkId)) this.#ready.set(talkId, await readFile(output));
      } catch (error) {
        if ((error as { code?: string }).code === 'ENOENT') this.#unavailable = true;
      } finally {
        await rm(caption, { force: true });
        await rm(output, { force: true });
      }
    } finally {
      this.#running -= 1;
      this.#waiting.shift()?.();
    }
  }

  async #slot(): Promise<void> {
    if (this.#running >= MAX_ENCODES) await new Promise<void>((resolve) => this.#waiting.push(resolve));
    this.#running += 1;
  }
}

/** The first words of the script (or a note for audio scripts), broken into three short lines. */
export function captionOf(request: TalkRequestBody): string {
  const source = request.script.type === 'text' ? request.script.input.replace(/<[^>]*>/g, ' ') : 'audio script';
  const words = source.replace(/\s+/g, ' ').trim().split(' ');
  const lines: string[] = [];
  let line = '';
  for (const word of words) {
    if (line && `${line} ${word}`.length > LINE_CHARS) {
      lines.push(line);
      line = '';
      if (lines.length === 3) break;
    }
    line = line ? `${line} ${word}` : word.slice(0, LINE_CHARS);
  }
  if (line && lines.length < 3) lines.push(line);
  // drawtext treats % as the start of an expansion.
  return lines.join('\n').replace(/%/g, '%%');
}

function run(command: string, args: readonly string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: 'ignore' });
    const timer = setTimeout(() => child.kill('SIGKILL'), ENCODE_TIMEOUT_MS);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve();
      else reject(new Error(`ffmpeg exit ${code}`));
    });
  });
}
