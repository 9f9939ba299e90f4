import { createReadStream } from 'node:fs';
import { parse } from 'csv-parse';
import { quoteValue } from './cells.js';
import { canonicalColumn, snakeCase, type ColumnNamer } from './columns.js';
import { detectDelimiter } from './detect.js';
import type { RawCell } from './row.js';
import { countLineBreaks, issueAt, type SourceEvent } from './source.js';
import type { ManifestIssue } from './types.js';
import { DEFAULT_ENCODING, decodingStage } from './encoding.js';
import { encodingMessage } from './utf8.js';

/*
 * CSV reader: file -> UTF-8 guard, or conversion to UTF-8 (encoding.ts) -> csv-parse (streaming, so memory stays flat however long the sheet is).
 *
 * Line numbers: csv-parse's `info.lines` (option `info`) is the line a record *ends* on and counts a CRLF inside a quoted cell as
 * two lines, so the start line is computed from `raw` instead: `raw` holds the record's text plus the blank lines
 * skipped before it and the first character of its line break. The reader keeps `nextLine` (the line after the
 * previous record); a record starts at nextLine + the line breaks in the whitespace that leads its raw text, and
 * the next one at that + the line breaks in the rest of its raw text.
 *
 * Ragged rows: csv-parse runs with `relax_column_count: true` and the reader compares each record's length with the
 * header itself. With `relax_column_count: false` csv-parse would end the whole parse at the first ragged row
 * (unless `skip_records_with_error`, whose skip events can fire twice for one record and carry no start line), so
 * one bad row would hide the rest of the file. Other parse errors (quotes) do stop the parse: they are reported on
 * their line and reading ends.
 */

/** Refuse a record bigger than this many bytes: it is almost always an unclosed quote swallowing the file. */
export const MAX_RECORD_BYTES = 4 * 1024 * 1024;

interface CsvItem {
  record: string[];
  raw: string;
}

interface CsvErrorLike {
  code?: string;
  lines?: number;
  raw?: string;
  column?: number | string | null;
  message?: string;
}

export interface Header {
  line: number;
  /** Canonical name per column; '' for a trailing column without a header (its cells must stay empty). */
  names: string[];
  raw: string[];
}

function leadingWhitespaceLength(raw: string): number {
  const match = /^\s*/.exec(raw);
  return match?.[0].length ?? 0;
}

/**
 * The header row: names normalised (and mapped), duplicates and nameless columns as issues. `allowBlankNames`
 * (workbooks, where an empty spacer column is common) lets a column with an empty header through; its cells must
 * then stay empty, which the row checks enforce.
 */
export function readHeader(
  record: string[],
  line: number,
  file: string,
  namer: ColumnNamer = canonicalColumn,
  allowBlankNames = false,
): { header: Header; issues: ManifestIssue[] } {
  const issues: ManifestIssue[] = [];
  const raw = record.map((cell) => cell.trim());
  let lastNamed = raw.length - 1;
  while (lastNamed >= 0 && raw[lastNamed] === '') lastNamed--;
  const names: string[] = [];
  const firstAt = new Map<string, number>();
  raw.forEach((text, index) => {
    const name = namer(text);
    names.push(name);
    const number = index + 1;
    if (name === '') {
      if (index <= lastNamed && !(allowBlankNames && text === '')) {
        const message = text === '' ? `column ${number} has no name` : `column ${number} name ${quoteValue(text)} has no letters or digits`;
        issues.push(issueAt(file, line, message, undefined, number));
      }
      return;
    }
    const first = firstAt.get(name);
    if (first === undefined) {
      firstAt.set(name, index);
      return;
    }
    // Two headers spelled alike are plain duplicates; otherwise an alias or the column map made them collide.
    const sameSpelling = snakeCase(text) === name && snakeCase(raw[first] ?? '') === name;
    const message = sameSpelling
      ? `duplicate column ${quoteValue(name)} (also column ${first + 1})`
      : `duplicate column ${quoteValue(text)} (column ${first + 1} ${quoteValue(raw[first] ?? '')} means the same)`;
    issues.push(issueAt(file, line, message, name, number));
  });
  return { header: { line, names, raw }, issues };
}

function parseErrorIssue(error: unknown, startLine: number, file: string): ManifestIssue {
  const err: CsvErrorLike = typeof error === 'object' && error !== null ? error : {};
  const at = typeof err.lines === 'number' ? err.lines : startLine;
  switch (err.code) {
    case 'CSV_QUOTE_NOT_CLOSED':
      return issueAt(file, startLine, 'unclosed quote: a quoted cell starting on this row has no closing "');
    case 'CSV_MAX_RECORD_SIZE':
      return issueAt(file, startLine, `row is larger than ${MAX_RECORD_BYTES / 1024 / 1024} MB (is a quote left open?)`);
    case 'CSV_INVALID_CLOSING_QUOTE':
      return issueAt(file, at, 'unexpected text after a closing quote (a quoted cell must end at the delimiter; write a quote inside it as "")');
    case 'INVALID_OPENING_QUOTE':
      return issueAt(file, at, 'quote inside an unquoted cell (quote the whole cell and write the inner quotes as "")');
    case 'CSV_NON_TRIMABLE_CHAR_AFTER_CLOSING_QUOTE':
      return issueAt(file, at, 'unexpected text after a closing quote (a quoted cell must end at the delimiter; write a quote inside it as "")');
    default:
      return issueAt(file, at, `cannot read the file as CSV: ${err.message ?? String(error)}`);
  }
}

export async function* readCsv(
  path: string,
  file: string,
  head: string,
  namer: ColumnNamer = canonicalColumn,
  encoding: string = DEFAULT_ENCODING,
): AsyncGenerator<SourceEvent> {
  const source = createReadStream(path);
  const guard = decodingStage(encoding);
  const parser = parse({
    delimiter: detectDelimiter(head),
    bom: true,
    raw: true, // `raw` rather than `info`: see the note on line numbers above
    trim: true,
    skip_empty_lines: true,
    relax_column_count: true,
    max_record_size: MAX_RECORD_BYTES,
  });
  source.on('error', (error) => parser.destroy(error));
  source.pipe(guard).pipe(parser);

  let nextLine = 1;
  let header: Header | undefined;
  let dataRows = 0;
  let failure: unknown;
  try {
    for await (const item of parser as AsyncIterable<CsvItem>) {
      const { record, raw } = item;
      const lead = leadingWhitespaceLength(raw);
      const line = nextLine + countLineBreaks(raw, 0, lead);
      nextLine = line + countLineBreaks(raw, lead);

      if (header === undefined) {
        if (record.every((cell) => cell.trim() === '')) continue; // a row of empty cells above the header
        const read = readHeader(record, line, file, namer);
        if (read.issues.length > 0) {
          for (const issue of read.issues) yield { kind: 'issue', issue };
          return;
        }
        header = read.header;
        const columnNumbers = new Map<string, number>();
        header.names.forEach((name, index) => {
          if (name !== '') columnNumbers.set(name, index + 1);
        });
        yield { kind: 'columns', columns: header.names.filter((name) => name !== ''), columnNumbers, line, upfront: true };
        continue;
      }

      const width = header.names.length;
      const empty = record.every((cell) => cell.trim() === '');
      if (!empty) dataRows++;
      // Extra cells that are all empty (trailing delimiters from a spreadsheet export) are not worth an issue.
      if (!empty && record.length !== width && !(record.length > width && record.slice(width).every((cell) => cell.trim() === ''))) {
        yield { kind: 'bad-record', line, issues: [issueAt(file, line, `row has ${record.length} cells but the header has ${width}`)] };
        continue;
      }
      const cells: RawCell[] = [];
      for (let index = 0; index < width; index++) {
        cells.push({ column: header.names[index] ?? '', key: header.raw[index] ?? '', columnNumber: index + 1, value: record[index] ?? '' });
      }
      yield { kind: 'record', line, cells };
    }
  } catch (error) {
    failure = error;
  } finally {
    source.destroy();
    parser.destroy();
  }

  if (guard.problem !== undefined) {
    // The guard ended the input before the bad line; a parse error after that is only the cut.
    yield { kind: 'issue', issue: issueAt(file, guard.problem.line, encodingMessage(guard.problem)) };
    return;
  }
  if (failure !== undefined) {
    const partial = typeof failure === 'object' && failure !== null ? (failure as CsvErrorLike).raw : undefined;
    const startLine = partial === undefined ? nextLine : nextLine + countLineBreaks(partial, 0, leadingWhitespaceLength(partial));
    yield { kind: 'issue', issue: parseErrorIssue(failure, startLine, file) };
    return;
  }
  if (header === undefined) yield { kind: 'issue', issue: issueAt(file, 1, 'file is empty') };
  else if (dataRows === 0) yield { kind: 'issue', issue: issueAt(file, header.line, 'no data rows') };
}
