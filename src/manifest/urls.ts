import { AudioScript, CreateTalkRequest } from '../did/schemas.js';
import { quoteValue } from './cells.js';

/*
 * URL checks give a specific reason ("must use https://") before falling back to D-ID's own pattern, which is also
 * checked so that whatever passes here passes CreateTalkRequest.
 */

interface UrlKind {
  what: string;
  extensions: RegExp;
  extensionList: string;
  schema: { safeParse(value: unknown): { success: boolean; error?: { issues: { message: string }[] } } };
}

const IMAGE: UrlKind = {
  what: 'a .jpg, .jpeg or .png image',
  extensions: /\.(?:jpe?g|png)$/i,
  extensionList: '.jpg, .jpeg or .png',
  schema: CreateTalkRequest.shape.source_url,
};

const AUDIO: UrlKind = {
  what: 'an .m4a, .flac, .mp3, .mp4 or .wav file',
  extensions: /\.(?:m4a|flac|mp3|mp4|wav)$/i,
  extensionList: '.m4a, .flac, .mp3, .mp4 or .wav',
  schema: AudioScript.shape.audio_url,
};

function check(value: string, kind: UrlKind): string | undefined {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return `must be an https:// URL of ${kind.what} (got ${quoteValue(value)})`;
  }
  if (url.protocol === 'http:') return 'must use https:// (http:// is not allowed)';
  if (url.protocol !== 'https:' && url.protocol !== 's3:') return `must be an https:// or s3:// URL (got ${url.protocol})`;
  if (!/^(?:https|s3):\/\/[^/?#\s]/.test(value)) return `must be an https:// or s3:// URL of ${kind.what}`;
  if (/\s/.test(value)) return 'must not contain spaces (write them as %20)';
  if (!kind.extensions.test(url.pathname)) return `must end in ${kind.extensionList} (a query string after it is fine)`;
  const parsed = kind.schema.safeParse(value);
  if (!parsed.success) return parsed.error?.issues[0]?.message ?? `must be an https:// or s3:// URL of ${kind.what}`;
  return undefined;
}

/** An issue message for an image URL (D-ID `source_url`), or undefined when D-ID will accept it. */
export function imageUrlMessage(value: string): string | undefined {
  return check(value, IMAGE);
}

/** An issue message for an audio URL (D-ID `script.audio_url`), or undefined when D-ID will accept it. */
export function audioUrlMessage(value: string): string | undefined {
  return check(value, AUDIO);
}
