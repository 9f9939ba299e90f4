import { Transform, type TransformCallback } from 'node:stream';

/*
 * UTF-8 guard for streamed manifests. Each chunk goes through a fatal, streaming TextDecoder; on the first invalid
 * sequence the guard passes on everything up to the end of the last complete line before it, then ends its output
 * (so rows before the bad line are still read) and records where the bad byte is. Lines are counted by LF.
 */

export interface EncodingProblem {
  line: number;
  byte: number;
}

/** Index of the first byte that starts an invalid UTF-8 sequence, or -1; an incomplete sequence at the end is fine. */
export function firstInvalidUtf8(bytes: Uint8Array): number {
  const n = bytes.length;
  let i = 0;
  while (i < n) {
    const lead = bytes[i] ?? 0;
    if (lead < 0x80) {
      i++;
      continue;
    }
    let need: number;
    let low = 0x80;
    let high = 0xbf;
    if (lead >= 0xc2 && lead <= 0xdf) need = 1;
    else if (lead >= 0xe0 && lead <= 0xef) {
      need = 2;
      if (lead === 0xe0) low = 0xa0;
      if (lead === 0xed) high = 0x9f;
    } else if (lead >= 0xf0 && lead <= 0xf4) {
      need = 3;
      if (lead === 0xf0) low = 0x90;
      if (lead === 0xf4) high = 0x8f;
    } else return i;
    for (let k = 1; k <= need; k++) {
      if (i + k >= n) return -1;
      const next = bytes[i + k] ?? 0;
      const min = k === 1 ? low : 0x80;
      const max = k === 1 ? high : 0xbf;
      if (next < min || next > max) return i;
    }
    i += need + 1;
  }
  return -1;
}

/** The bytes at the end of `bytes` that begin a multi-byte sequence not yet complete (at most 3). */
function incompleteTail(bytes: Uint8Array): Uint8Array {
  for (let back = 1; back <= Math.min(3, bytes.length); back++) {
    const byte = bytes[bytes.length - back] ?? 0;
    if ((byte & 0xc0) === 0x80) continue; // continuation byte: keep looking for the lead
    const length = byte >= 0xf0 ? 4 : byte >= 0xe0 ? 3 : byte >= 0xc0 ? 2 : 1;
    return length > back ? bytes.subarray(bytes.length - back) : new Uint8Array(0);
  }
  return new Uint8Array(0);
}

function countNewlines(bytes: Uint8Array, end = bytes.length): number {
  let count = 0;
  let at = bytes.indexOf(10);
  while (at !== -1 && at < end) {
    count++;
    at = bytes.indexOf(10, at + 1);
  }
  return count;
}

export class Utf8Guard extends Transform {
  /** Set when invalid UTF-8 was found; the output ended at the line before it. */
  problem: EncodingProblem | undefined;
  private readonly decoder = new TextDecoder('utf-8', { fatal: true });
  private line = 1;
  private carry: Uint8Array = new Uint8Array(0);

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    if (this.problem !== undefined) {
      callback();
      return;
    }
    try {
      this.decoder.decode(chunk, { stream: true });
    } catch {
      this.stop(chunk);
      callback();
      return;
    }
    this.carry = incompleteTail(Buffer.concat([this.carry, chunk.subarray(Math.max(0, chunk.length - 3))]));
    this.line += countNewlines(chunk);
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    if (this.problem === undefined) {
      try {
        this.decoder.decode();
      } catch {
        // The file ends inside a multi-byte sequence.
        this.problem = { line: this.line, byte: this.carry[0] ?? 0 };
      }
    }
    callback();
  }

  private stop(chunk: Buffer): void {
    const joined = Buffer.concat([this.carry, chunk]);
    const found = firstInvalidUtf8(joined);
    const offset = Math.max(0, (found === -1 ? joined.length : found) - this.carry.length);
    const before = chunk.subarray(0, offset);
    this.problem = { line: this.line + countNewlines(before), byte: joined[found === -1 ? 0 : found] ?? 0 };
    const lastNewline = before.lastIndexOf(10);
    if (lastNewline !== -1) this.push(chunk.subarray(0, lastNewline + 1));
    this.push(null);
  }
}

/** Whole-buffer check (JSON): undefined when valid. */
export function checkUtf8(bytes: Uint8Array): EncodingProblem | undefined {
  try {
    new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    return undefined;
  } catch {
    const found = firstInvalidUtf8(bytes);
    const offset = found === -1 ? bytes.length - 1 : found;
    return { line: 1 + countNewlines(bytes, offset), byte: bytes[offset] ?? 0 };
  }
}

export function encodingMessage(problem: EncodingProblem): string {
  const hex = problem.byte.toString(16).toUpperCase().padStart(2, '0');
  return `not valid UTF-8 (byte 0x${hex}); if Excel saved it as "CSV" on Windows, pass --encoding windows-1252 (the "encoding" option of job files, schedules and the API), else save it as UTF-8 (in Excel: "CSV UTF-8")`;
}
