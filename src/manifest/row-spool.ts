import { createReadStream } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { tempFolder } from './spool.js';
import type { ManifestRow } from './types.js';

/** Bytes of rows gathered before one write: few system calls, bounded memory. */
const WRITE_BATCH_BYTES = 1 << 20;
const NEWLINE = 0x0a;

/**
 * The valid rows of a validation pass, kept in a private temp file (one JSON line each) so enqueueing them
 * afterwards costs a JSON.parse per row instead of parsing and checking the sheet a second time. Memory stays
 * flat whatever the size of the sheet; the disk holds about as many bytes as the rows' payloads.
 */
export class RowSpool {
  // Rows are encoded straight into one reused buffer: no joined string, no copy per write.
  #buffer = Buffer.allocUnsafe(WRITE_BATCH_BYTES);
  #used = 0;
  #count = 0;
  #writing = false;
  #finished = false;

  private constructor(
    private readonly file: FileHandle,
    readonly path: string,
    private readonly removeFolder: () => Promise<void>,
  ) {}

  static async create(): Promise<RowSpool> {
    const folder = await tempFolder();
    const path = join(folder.dir, 'rows.jsonl');
    try {
      return new RowSpool(await open(path, 'wx', 0o600), path, folder.remove);
    } catch (error) {
      await folder.remove();
      throw error;
    }
  }

  get count(): number {
    return this.#count;
  }

  /**
   * Adds a row. Returns a promise only when the buffer is full and being written (callers await rarely); it must
   * settle before the next add, as the buffer is reused.
   */
  add(row: ManifestRow): Promise<void> | undefined {
    if (this.#finished) throw new Error('row spool is finished');
    if (this.#writing) throw new Error('row spool: add() while a write is pending');
    const line = `${JSON.stringify(row)}\n`;
    this.#count += 1;
    // Up to 3 bytes per UTF-16 unit: when that surely fits, encode without measuring first.
    if (line.length * 3 <= this.#buffer.length - this.#used || Buffer.byteLength(line) <= this.#buffer.length - this.#used) {
      this.#used += this.#buffer.write(line, this.#used);
      return this.#used >= this.#buffer.length - 1024 ? this.#writeBuffer() : undefined;
    }
    return this.#writeBuffer().then(async () => {
      if (Buffer.byteLength(line) <= this.#buffer.length) this.#used = this.#buffer.write(line, 0);
      else await this.file.write(line);
    });
  }

  async #writeBuffer(): Promise<void> {
    if (this.#used === 0) return;
    const used = this.#used;
    this.#used = 0;
    this.#writing = true;
    try {
      // write() may write less than asked (a signal, a nearly full disk): go on from where it stopped.
      for (let written = 0; written < used; ) {
        const { bytesWritten } = await this.file.write(this.#buffer, written, used - written);
        if (bytesWritten === 0) throw new Error(`row spool ${this.path}: nothing written`);
        written += bytesWritten;
      }
    } finally {
      this.#writing = false;
    }
  }

  /** Writes what is left and closes the file for writing; rows() may be called after this. */
  async finish(): Promise<void> {
    if (this.#finished) return;
    this.#finished = true;
    try {
      await this.#writeBuffer();
    } finally {
      await this.file.close();
    }
  }

  /** The rows, in the order added. Throws when the file no longer holds as many rows as were added. */
  async *rows(): AsyncGenerator<ManifestRow> {
    if (!this.#finished) throw new Error('row spool is not finished');
    let rest: Buffer | undefined;
    let read = 0;
    // Bytes, not text: a line is decoded once, by itself, and a chunk's tail is the only thing copied.
    for await (const chunk of createReadStream(this.path, { highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>) {
      const bytes = rest === undefined ? chunk : Buffer.concat([rest, chunk]);
      let start = 0;
      for (let end = bytes.indexOf(NEWLINE, start); end !== -1; end = bytes.indexOf(NEWLINE, start)) {
        read += 1;
        yield JSON.parse(bytes.toString('utf8', start, end)) as ManifestRow;
        start = end + 1;
      }
      rest = start < bytes.length ? bytes.subarray(start) : undefined;
    }
    if (rest !== undefined || read !== this.#count) throw new Error(`row spool ${this.path} holds ${read} rows, expected ${this.#count}`);
  }

  /** Deletes the file and its folder. Safe to call twice, and before finish(). */
  async remove(): Promise<void> {
    if (!this.#finished) await this.finish().catch(() => undefined);
    await this.removeFolder();
  }
}
