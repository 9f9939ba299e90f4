import { createReadStream } from 'node:fs';
import { Unzip, UnzipInflate, type UnzipFile } from 'fflate';

/*
 * A workbook is a zip: 2 MB on disk can inflate to gigabytes (a "zip bomb" of shared strings or cells). Before a
 * workbook is handed to exceljs, it is inflated once as a stream, counting as it goes: uncompressed bytes, entries,
 * rows and cells. The pass stops at the first limit crossed, so neither memory nor time grows with what the
 * archive claims; only a workbook within every limit is loaded.
 */

export interface WorkbookLimits {
  /** Every entry inflated, added up. */
  uncompressedBytes: number;
  entries: number;
  /** Across all sheets (exceljs loads them all). */
  rows: number;
  cells: number;
}

export const WORKBOOK_LIMITS: Readonly<WorkbookLimits> = Object.freeze({
  uncompressedBytes: 100 * 1024 * 1024,
  entries: 2_000,
  rows: 200_000,
  cells: 2_000_000,
});

const SHEET_ENTRY = /^xl\/worksheets\/[^/]+\.xml$/i;
const ROW_TAG = /<row[\s>/]/g;
const CELL_TAG = /<c[\s>/]/g;
/** Longest tag prefix a chunk boundary can split ("<row" + one character), less one. */
const CARRY = 4;

function countTags(pattern: RegExp, text: string, carried: number): number {
  let count = 0;
  pattern.lastIndex = 0;
  // A match that ends inside the carried tail was counted with the previous chunk.
  for (let match = pattern.exec(text); match !== null; match = pattern.exec(text)) if (match.index + match[0].length > carried) count += 1;
  return count;
}

function limitText(limits: WorkbookLimits, what: keyof WorkbookLimits): string {
  switch (what) {
    case 'uncompressedBytes':
      return `workbook unpacks to more than ${Math.round(limits.uncompressedBytes / 1024 / 1024)} MB`;
    case 'entries':
      return `workbook has more than ${limits.entries} parts`;
    case 'rows':
      return `workbook has more than ${limits.rows} rows`;
    case 'cells':
      return `workbook has more than ${limits.cells} cells`;
  }
}

/**
 * Why the workbook at `path` may not be loaded (a message for an issue), or undefined when it is within `limits`.
 * A damaged archive is left to the loader, which reports it.
 */
export async function workbookLimitProblem(path: string, limits: WorkbookLimits = WORKBOOK_LIMITS): Promise<string | undefined> {
  const totals = { uncompressedBytes: 0, entries: 0, rows: 0, cells: 0 };
  let exceeded: keyof WorkbookLimits | undefined;
  let damaged = false;
  const open = new Set<UnzipFile>();

  const unzip = new Unzip((file) => {
    totals.entries += 1;
    if (totals.entries > limits.entries) {
      exceeded ??= 'entries';
      return;
    }
    const isSheet = SHEET_ENTRY.test(file.name);
    let tail = '';
    open.add(file);
    file.ondata = (error, data, final) => {
      if (error) {
        damaged = true;
        return;
      }
      if (exceeded !== undefined) return;
      totals.uncompressedBytes += data.length;
      if (totals.uncompressedBytes > limits.uncompressedBytes) exceeded = 'uncompressedBytes';
      if (isSheet) {
        const text = tail + Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('latin1');
        const carried = tail.length;
        totals.rows += countTags(ROW_TAG, text, carried);
        totals.cells += countTags(CELL_TAG, text, carried);
        tail = text.slice(-CARRY);
        if (totals.rows > limits.rows) exceeded ??= 'rows';
        if (totals.cells > limits.cells) exceeded ??= 'cells';
      }
      if (final) open.delete(file);
    };
    try {
      file.start();
    } catch {
      damaged = true;
    }
  });
  unzip.register(UnzipInflate);

  // Small reads: deflate inflates at most ~1000:1, so one step never holds more than ~16 MB.
  const stream = createReadStream(path, { highWaterMark: 16 * 1024 });
  // The unzip callbacks set these while push() runs; a function reads them as they are now.
  const settled = (): boolean => exceeded !== undefined || damaged;
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      unzip.push(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
      if (settled()) break;
    }
    if (!settled()) unzip.push(new Uint8Array(0), true);
  } catch {
    damaged = true;
  } finally {
    stream.destroy();
    for (const file of open) file.terminate();
  }
  return exceeded === undefined ? undefined : `${limitText(limits, exceeded)}; export the sheet as CSV UTF-8 for big batches`;
}
