import { extname } from 'node:path';
import type { ManifestFormat } from './types.js';

/*
 * Format and delimiter detection. Both look only at the first bytes of the file (the "head"), so detection never
 * reads the whole file.
 */

export const HEAD_BYTES = 64 * 1024;

const EXTENSIONS: Readonly<Record<string, ManifestFormat>> = {
  '.csv': 'csv',
  '.tsv': 'csv',
  '.txt': 'csv',
  '.json': 'json',
  '.jsonl': 'jsonl',
  '.ndjson': 'jsonl',
  '.xlsx': 'xlsx',
};

/** The four bytes every zip archive, and so every .xlsx workbook, starts with. */
export function isZip(head: Uint8Array): boolean {
  return head[0] === 0x50 && head[1] === 0x4b && head[2] === 0x03 && head[3] === 0x04;
}

/** The format an extension names, if any (`.csv` -> csv). */
export function formatOfExtension(path: string): ManifestFormat | undefined {
  return EXTENSIONS[extname(path).toLowerCase()];
}

function stripBom(text: string): string {
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}

/**
 * From the extension; otherwise from the first bytes: a zip archive is an .xlsx workbook; then by the first non-space
 * character: `[` is JSON; `{` is JSONL when the first line is a complete object that is not `{"rows": [...]}`, else
 * JSON; anything else is CSV.
 */
export function detectFormat(path: string, head: string, headBytes?: Uint8Array): ManifestFormat {
  const byExtension = formatOfExtension(path);
  if (byExtension !== undefined) return byExtension;
  if (headBytes !== undefined && isZip(headBytes)) return 'xlsx';
  const text = stripBom(head).trimStart();
  if (text.startsWith('[')) return 'json';
  if (text.startsWith('{')) {
    const firstLine = text.split(/\r?\n/, 1)[0] ?? '';
    try {
      const value: unknown = JSON.parse(firstLine);
      const wrapped = typeof value === 'object' && value !== null && Array.isArray((value as { rows?: unknown }).rows);
      return wrapped ? 'json' : 'jsonl';
    } catch {
      return 'json';
    }
  }
  return 'csv';
}

export type Delimiter = ',' | ';' | '\t';
const DELIMITERS: readonly Delimiter[] = [',', ';', '\t'];

/**
 * The delimiter of a CSV file from its header line: whichever of `,` `;` tab occurs most often outside double
 * quotes (ties in that order; `,` when none occurs). Leading blank lines are skipped; the header ends at the first
 * line break outside quotes.
 */
export function detectDelimiter(head: string): Delimiter {
  const text = stripBom(head).replace(/^(?:[ \t]*\r?\n)+/, '');
  const counts = new Map<string, number>();
  let quoted = false;
  for (const char of text) {
    if (char === '"') quoted = !quoted;
    else if (!quoted && (char === '\n' || char === '\r')) break;
    else if (!quoted && (char === ',' || char === ';' || char === '\t')) counts.set(char, (counts.get(char) ?? 0) + 1);
  }
  let best: Delimiter = ',';
  let bestCount = 0;
  for (const delimiter of DELIMITERS) {
    const count = counts.get(delimiter) ?? 0;
    if (count > bestCount) {
      best = delimiter;
      bestCount = count;
    }
  }
  return best;
}

/** The first bytes of an old binary Excel file (.xls) or an encrypted workbook: an OLE compound document. */
const OLE_MAGIC = [0xd0, 0xcf, 0x11, 0xe0];
const OLE_MESSAGE = 'file is an old binary Excel workbook (.xls) or a password-protected one; save it as .xlsx without a password, or as CSV UTF-8';

function isOle(head: Uint8Array): boolean {
  return OLE_MAGIC.every((byte, index) => head[index] === byte);
}

/** Why a file read as a workbook is not an .xlsx one, from its first bytes, or undefined. */
export function workbookHeadProblem(head: Uint8Array): string | undefined {
  if (isZip(head)) return undefined;
  if (isOle(head)) return OLE_MESSAGE;
  return 'file is not an .xlsx workbook (an .xlsx file is a zip archive); if it is CSV, name it .csv or pass --format csv';
}

/**
 * A problem recognisable from the first bytes alone (a workbook read as text), else undefined. Text formats only:
 * an .xlsx workbook is a zip archive and is read by its own reader. Encodings are told apart in encoding.ts.
 */
export function headProblem(head: Uint8Array): string | undefined {
  if (isZip(head)) return 'file is a zip archive (an .xlsx workbook?); name it .xlsx, pass --format xlsx, or export the sheet as CSV UTF-8';
  if (isOle(head)) return OLE_MESSAGE;
  return undefined;
}
