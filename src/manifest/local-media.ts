import { closeSync, openSync, readSync, realpathSync, statSync } from 'node:fs';
import { isAbsolute, relative, resolve, sep } from 'node:path';
import { UPLOAD_MAX_BYTES } from '../did/schemas.js';
import { formatCount } from './cells.js';

/*
 * Local images and audio named in a manifest (`photos/ana.jpg`, relative to the manifest's folder). `validate`
 * checks each file here, spending nothing: it exists, it is what it claims by its first bytes (not its name), and
 * it is within D-ID's upload limits. The worker uploads it later (src/worker/uploads.ts).
 */

/** Where local files may come from. A manifest from a URL or the REST API gets `roots` from the operator, or none. */
export interface LocalMediaPolicy {
  /** Relative paths are resolved against this folder (the manifest's own, for a file). */
  baseDir: string;
  /** When set, a file must lie inside one of these folders (after symlinks); an empty list allows no local file. */
  roots?: readonly string[];
  /** Said in the refusal: why local files are not allowed here. */
  refusal?: string;
}

export type MediaKind = 'image' | 'audio';

/** A value with no URL scheme that ends in a file extension (`photos/ana.jpg`, `/data/ana.png`) names a local file. */
export function isLocalPath(value: string): boolean {
  return !/^[a-z][a-z0-9+.-]*:/i.test(value) && /\.[A-Za-z0-9]{2,5}$/.test(value.trim());
}

const HEAD_BYTES = 16;

/**
 * An image link D-ID cannot take as it is, which talkbatch fetches, checks and uploads instead: a Google Drive or
 * Dropbox share link (rewritten to its direct download), or any https URL whose path does not end in .jpg/.jpeg/.png
 * (http only for localhost, as for manifest URLs). Undefined for anything else.
 */
export function shareLink(value: string): string | undefined {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return undefined;
  }
  const local = url.hostname === 'localhost' || url.hostname === '127.0.0.1' || url.hostname === '[::1]';
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && local)) return undefined;
  const host = url.hostname.toLowerCase();
  if (host === 'drive.google.com' || host === 'docs.google.com') {
    const id = /\/d\/([\w-]+)/.exec(url.pathname)?.[1] ?? url.searchParams.get('id');
    return id ? `https://drive.google.com/uc?export=download&id=${encodeURIComponent(id)}` : undefined;
  }
  if (host === 'dropbox.com' || host.endsWith('.dropbox.com')) {
    url.searchParams.delete('dl');
    url.searchParams.set('dl', '1');
    return url.href;
  }
  return /\.(?:jpe?g|png)$/i.test(url.pathname) ? undefined : url.href;
}

/** Whether these first bytes start a JPEG or PNG image. */
export function isImageBytes(head: Uint8Array): boolean {
  return sniff(Buffer.from(head.buffer, head.byteOffset, Math.min(head.byteLength, HEAD_BYTES)), 'image');
}

function sniff(head: Buffer, kind: MediaKind): boolean {
  const ascii = (start: number, text: string): boolean => head.subarray(start, start + text.length).toString('latin1') === text;
  if (kind === 'image') {
    const jpeg = head[0] === 0xff && head[1] === 0xd8 && head[2] === 0xff;
    const png = head.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
    return jpeg || png;
  }
  const mp3 = ascii(0, 'ID3') || (head[0] === 0xff && ((head[1] ?? 0) & 0xe0) === 0xe0);
  const wav = ascii(0, 'RIFF') && ascii(8, 'WAVE');
  return mp3 || wav || ascii(0, 'fLaC') || ascii(4, 'ftyp');
}

function inside(path: string, root: string): boolean {
  const rel = relative(root, path);
  return rel === '' || (!rel.startsWith(`..${sep}`) && rel !== '..' && !isAbsolute(rel));
}

/** The file's absolute (real) path, or why it cannot be used. Reads at most 16 bytes. */
export function checkLocalMedia(value: string, kind: MediaKind, policy: LocalMediaPolicy | undefined): { path: string } | { message: string } {
  if (policy === undefined || (policy.roots !== undefined && policy.roots.length === 0)) {
    return { message: `names a local file, which ${policy?.refusal ?? 'this manifest may not do'}; use an https:// URL` };
  }
  const wanted = resolve(policy.baseDir, value);
  let real: string;
  try {
    real = realpathSync(wanted);
  } catch {
    return { message: `local file ${JSON.stringify(value)} not found (relative paths start at the manifest's folder)` };
  }
  if (policy.roots !== undefined && !policy.roots.some((root) => inside(real, safeRealpath(root)))) {
    return { message: `local file ${JSON.stringify(value)} is outside the folders the operator allows` };
  }
  const info = statSync(real);
  if (!info.isFile()) return { message: `${JSON.stringify(value)} is not a file` };
  const max = UPLOAD_MAX_BYTES[kind];
  if (info.size > max) return { message: `local ${kind} ${JSON.stringify(value)} has ${formatCount(info.size)} bytes; D-ID takes at most ${formatCount(max)}` };
  const head = Buffer.alloc(HEAD_BYTES);
  const fd = openSync(real, 'r');
  try {
    readSync(fd, head, 0, HEAD_BYTES, 0);
  } finally {
    closeSync(fd);
  }
  if (!sniff(head, kind)) {
    return { message: kind === 'image' ? `local file ${JSON.stringify(value)} is not a JPEG or PNG image (by its content)` : `local file ${JSON.stringify(value)} is not MP3, WAV, FLAC or M4A/MP4 audio (by its content)` };
  }
  return { path: real };
}

function safeRealpath(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return resolve(path);
  }
}
