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
};

function stripBom(text: string): string {
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}

/**
 * From the extension; otherwise from the first non-space character: `[` is JSON; `{` is JSONL when the first line is
 * a complete object that is not `{"rows": [...]}`, else JSON; anything else is CSV.
 */
export function detectFormat(path: string, head: string): ManifestFormat {
  const byExtension = EXTENSIONS[extname(path).toLowerCase()];
  if (byExtension !== undefined) return byExtension;
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

/** A problem recognisable from the first bytes alone (wrong encoding or a binary workbook), else undefined. */
export function headProblem(head: Uint8Array): string | undefined {
  const [a, b, c, d] = [head[0], head[1], head[2], head[3]];
  if ((a === 0xff && b === 0xfe) || (a === 0xfe && b === 0xff)) return 'file is UTF-16; save it as UTF-8 (in Excel: "CSV UTF-8")';
  if (a === 0x50 && b === 0x4b && c === 0x03 && d === 0x04) return 'file is a zip archive (an .xlsx workbook?); export the sheet as CSV UTF-8';
  return undefined;
}
