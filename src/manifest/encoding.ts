import { Transform, type TransformCallback } from 'node:stream';
import iconv from 'iconv-lite';
import { Utf8Guard, checkUtf8, type EncodingProblem } from './utf8.js';

/*
 * Text encodings of manifests. UTF-8 is the default and is checked strictly (Utf8Guard: the line and byte of the
 * first invalid sequence). A byte-order mark wins over everything else: Excel's "Unicode Text" export is UTF-16 LE
 * with a BOM. Any other encoding is asked for by name (`encoding: windows-1252`, Excel's "CSV" on Windows) and
 * converted to UTF-8 in a stream by iconv-lite, chunk by chunk, so memory stays as flat as for UTF-8. iconv-lite
 * rather than TextDecoder: Node 20's one-shot TextDecoder decodes windows-1252 as ISO-8859-1 (0x80 is not €).
 */

export const DEFAULT_ENCODING = 'utf-8';

export interface ResolvedEncoding {
  /** The canonical name used to decode, e.g. `utf-8`, `utf-16le`, `windows-1252`. */
  encoding: string;
  /** Where it came from: the file's byte-order mark, the caller's option, or the default. */
  from: 'bom' | 'option' | 'default';
}

const ALIASES: Readonly<Record<string, string>> = {
  utf8: 'utf-8',
  utf16le: 'utf-16le',
  utf16be: 'utf-16be',
  utf16: 'utf-16le',
  ucs2: 'utf-16le',
  windows1252: 'windows-1252',
  cp1252: 'windows-1252',
};

/** The canonical name of an encoding label (case, dashes and underscores do not matter), or undefined if unknown. */
export function encodingName(label: string): string | undefined {
  const compact = label.trim().toLowerCase().replace(/[^a-z0-9]/g, '');
  if (compact === '') return undefined;
  const alias = ALIASES[compact];
  if (alias !== undefined) return alias;
  return iconv.encodingExists(compact) ? label.trim().toLowerCase() : undefined;
}

export function unknownEncodingMessage(label: string): string {
  return `unknown encoding "${label}" (use utf-8, utf-16le, utf-16be, windows-1252, iso-8859-15, ...)`;
}

/** The encoding a byte-order mark at the start of `head` announces. */
export function bomEncoding(head: Uint8Array): 'utf-8' | 'utf-16le' | 'utf-16be' | undefined {
  if (head[0] === 0xef && head[1] === 0xbb && head[2] === 0xbf) return 'utf-8';
  if (head[0] === 0xff && head[1] === 0xfe) return 'utf-16le';
  if (head[0] === 0xfe && head[1] === 0xff) return 'utf-16be';
  return undefined;
}

/**
 * UTF-16 without a byte-order mark, recognised by its zero bytes: text that is mostly Latin letters, digits and
 * punctuation has a 0 in every other byte (the second of each pair in little-endian, the first in big-endian),
 * which neither UTF-8 nor any single-byte encoding of a spreadsheet ever has.
 */
export function utf16WithoutBom(head: Uint8Array): 'utf-16le' | 'utf-16be' | undefined {
  const pairs = Math.min(256, Math.floor(head.length / 2));
  if (pairs < 2) return undefined;
  let zeroFirst = 0;
  let zeroSecond = 0;
  for (let pair = 0; pair < pairs; pair++) {
    if (head[2 * pair] === 0) zeroFirst++;
    if (head[2 * pair + 1] === 0) zeroSecond++;
  }
  if (zeroSecond >= pairs / 2 && zeroFirst === 0) return 'utf-16le';
  if (zeroFirst >= pairs / 2 && zeroSecond === 0) return 'utf-16be';
  return undefined;
}

export function utf16WithoutBomMessage(encoding: 'utf-16le' | 'utf-16be'): string {
  return `file looks like ${encoding.toUpperCase()} without a byte-order mark (every other byte is 0); pass --encoding ${encoding}, or save it as UTF-8 (in Excel: "CSV UTF-8")`;
}

/**
 * How to decode a file from its first bytes and the caller's `encoding` option (already checked by encodingName):
 * a BOM wins; otherwise the option, else UTF-8. Returns a message instead when the bytes are UTF-16 without a BOM
 * and the option does not say UTF-16.
 */
export function resolveEncoding(head: Uint8Array, option: string | undefined): ResolvedEncoding | { problem: string } {
  const bom = bomEncoding(head);
  if (bom !== undefined) return { encoding: bom, from: 'bom' };
  const chosen = option === undefined ? undefined : encodingName(option);
  if (chosen !== 'utf-16le' && chosen !== 'utf-16be') {
    const utf16 = utf16WithoutBom(head);
    if (utf16 !== undefined) return { problem: utf16WithoutBomMessage(utf16) };
  }
  return chosen === undefined ? { encoding: DEFAULT_ENCODING, from: 'default' } : { encoding: chosen, from: 'option' };
}

/** A stream stage that turns the file's bytes into UTF-8; `problem` is set when UTF-8 input was invalid. */
export interface DecodingStage extends Transform {
  readonly problem: EncodingProblem | undefined;
}

/** Any encoding but UTF-8, to UTF-8. Its decoder keeps a partial character across chunks; nothing else is held. */
class ToUtf8 extends Transform implements DecodingStage {
  readonly problem = undefined;
  private readonly decoder: ReturnType<typeof iconv.getDecoder>;

  constructor(encoding: string) {
    super();
    this.decoder = iconv.getDecoder(encoding, { stripBOM: true });
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    const text = this.decoder.write(chunk);
    callback(null, text === '' ? undefined : Buffer.from(text, 'utf8'));
  }

  override _flush(callback: TransformCallback): void {
    const rest = this.decoder.end();
    callback(null, rest === undefined || rest === '' ? undefined : Buffer.from(rest, 'utf8'));
  }
}

/** The stage for `encoding`: UTF-8 is only checked (its bytes pass through), anything else is converted. */
export function decodingStage(encoding: string): DecodingStage {
  return encoding === DEFAULT_ENCODING ? new Utf8Guard() : new ToUtf8(encoding);
}

/** A whole (size-limited) buffer as text, without a BOM; UTF-8 is checked strictly. */
export function decodeWhole(bytes: Uint8Array, encoding: string): { text: string } | { problem: EncodingProblem } {
  if (encoding === DEFAULT_ENCODING) {
    const problem = checkUtf8(bytes);
    if (problem !== undefined) return { problem };
    const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8');
    return { text: text.charCodeAt(0) === 0xfeff ? text.slice(1) : text };
  }
  return { text: iconv.decode(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), encoding, { stripBOM: true }) };
}

/** The first bytes as text, for format and delimiter detection (a character cut at the end is harmless there). */
export function decodeHead(head: Uint8Array, encoding: string): string {
  return iconv.decode(Buffer.from(head.buffer, head.byteOffset, head.byteLength), encoding === DEFAULT_ENCODING ? 'utf8' : encoding, { stripBOM: true });
}
