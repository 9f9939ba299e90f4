import type { RawCell } from './row.js';
import type { ManifestIssue } from './types.js';

/** What a format reader yields to the engine (read.ts), in file order. */
export type SourceEvent =
  /** The column set. `upfront`: known before the first record (CSV header, parsed JSON), else at the end (JSONL). */
  | { kind: 'columns'; columns: string[]; columnNumbers: ReadonlyMap<string, number>; line: number; upfront: boolean }
  | { kind: 'record'; line: number; cells: RawCell[] }
  /** A data record that cannot be turned into cells (ragged CSV row, bad JSONL line, JSON non-object). */
  | { kind: 'bad-record'; line: number; issues: ManifestIssue[] }
  /** A problem with the file rather than a record; readers stop after one they cannot read past. */
  | { kind: 'issue'; issue: ManifestIssue };

/** Line breaks as editors count them: CRLF, LF or a lone CR each end one line. */
export function countLineBreaks(text: string, from = 0, to = text.length): number {
  let count = 0;
  for (let i = from; i < to; i++) {
    const code = text.charCodeAt(i);
    if (code === 10) count++;
    else if (code === 13) {
      count++;
      if (text.charCodeAt(i + 1) === 10) i++;
    }
  }
  return count;
}

export function issueAt(file: string, line: number, message: string, column?: string, columnNumber?: number): ManifestIssue {
  const issue: ManifestIssue = { file, line, message };
  if (column !== undefined) issue.column = column;
  if (columnNumber !== undefined) issue.columnNumber = columnNumber;
  return issue;
}

/** `Expected ',' or ']' after array element in JSON at position 4 (line 1 column 5)` -> the part before " in JSON". */
export function jsonErrorText(error: unknown): { message: string; position?: number; line?: number } {
  const text = error instanceof Error ? error.message : String(error);
  const lineMatch = /\(line (\d+) column \d+\)/.exec(text);
  const positionMatch = /at position (\d+)/.exec(text);
  const message = text
    .replace(/\s*\(line \d+ column \d+\)/, '')
    .replace(/\s+in JSON at position \d+/, '')
    .replace(/\s+at position \d+/, '');
  const result: { message: string; position?: number; line?: number } = { message };
  if (positionMatch?.[1] !== undefined) result.position = Number(positionMatch[1]);
  if (lineMatch?.[1] !== undefined) result.line = Number(lineMatch[1]);
  return result;
}
