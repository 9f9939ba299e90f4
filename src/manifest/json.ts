import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { canonicalColumn, type ColumnNamer } from './columns.js';
import type { CellValue, RawCell } from './row.js';
import { jsonDepthProblem } from './json-depth.js';
import { countLineBreaks, issueAt, jsonErrorText, type SourceEvent } from './source.js';
import { DEFAULT_ENCODING, decodeWhole, decodingStage } from './encoding.js';
import { encodingMessage } from './utf8.js';

/*
 * JSON and JSONL readers.
 *
 * JSON (`[{...}, ...]` or `{"rows": [...]}`) is parsed whole: files over JSON_MAX_BYTES are refused with a pointer to
 * JSONL. A row's line is where its object starts, found by one scan over the text that tracks strings and nesting
 * (rowStartLines). JSONL is streamed with readline: a row's line is its physical line number; blank lines count as
 * lines but are not records.
 */

export const JSON_MAX_BYTES = 50 * 1024 * 1024;
const SHAPE_MESSAGE = 'JSON must be an array of row objects or {"rows": [...]}';

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function typeName(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  return typeof value === 'string' ? 'a string' : typeof value === 'number' ? 'a number' : typeof value === 'boolean' ? 'true/false' : typeof value;
}

function stripBom(text: string): string {
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}

function cellsOf(row: Record<string, unknown>, namer: ColumnNamer): RawCell[] {
  return Object.entries(row).map(([key, value]) => ({ column: namer(key), key, value: value as CellValue }));
}

/**
 * The line on which each element of the rows array starts: the top-level array, or the `rows` array of a top-level
 * object (the last one, as JSON.parse keeps the last duplicate key). Assumes text JSON.parse accepted.
 */
export function rowStartLines(text: string): number[] {
  let lines: number[] = [];
  let line = 1;
  let depth = 0;
  let rowsDepth = -1;
  let expectElement = false;
  let rootIsObject = false;
  let inString = false;
  let escaped = false;
  let stringStart = 0;
  let lastString = '';
  let key = '';
  for (let i = 0; i < text.length; i++) {
    const char = text[i];
    if (inString) {
      if (escaped) escaped = false;
      else if (char === '\\') escaped = true;
      else if (char === '"') {
        inString = false;
        lastString = text.slice(stringStart, i);
      }
      continue;
    }
    if (char === '\n') {
      line++;
      continue;
    }
    if (char === ' ' || char === '\t' || char === '\r') continue;
    if (expectElement && depth === rowsDepth && char !== ']') {
      lines.push(line);
      expectElement = false;
    }
    switch (char) {
      case '"':
        inString = true;
        stringStart = i + 1;
        break;
      case ':':
        if (depth === 1 && rootIsObject) key = lastString;
        break;
      case ',':
        if (depth === rowsDepth) expectElement = true;
        break;
      case '{':
      case '[':
        if (depth === 0) {
          rootIsObject = char === '{';
          if (!rootIsObject) {
            rowsDepth = 1;
            expectElement = true;
          }
        } else if (depth === 1 && rootIsObject && char === '[' && key === 'rows') {
          lines = [];
          rowsDepth = 2;
          expectElement = true;
        }
        depth++;
        break;
      case '}':
      case ']':
        if (depth === rowsDepth) {
          rowsDepth = -1;
          expectElement = false;
        }
        depth--;
        break;
      default:
        break;
    }
  }
  return lines;
}

export async function* readJson(path: string, file: string, namer: ColumnNamer = canonicalColumn, encoding: string = DEFAULT_ENCODING): AsyncGenerator<SourceEvent> {
  const { size } = await stat(path);
  if (size > JSON_MAX_BYTES) {
    yield { kind: 'issue', issue: issueAt(file, 1, `JSON file is larger than ${JSON_MAX_BYTES / 1024 / 1024} MB; use JSONL (one object per line) for big batches`) };
    return;
  }
  const bytes = await readFile(path);
  const decoded = decodeWhole(bytes, encoding);
  if ('problem' in decoded) {
    yield { kind: 'issue', issue: issueAt(file, decoded.problem.line, encodingMessage(decoded.problem)) };
    return;
  }
  const text = decoded.text;
  if (text.trim() === '') {
    yield { kind: 'issue', issue: issueAt(file, 1, 'file is empty') };
    return;
  }
  const tooDeep = jsonDepthProblem(text);
  if (tooDeep !== undefined) {
    yield { kind: 'issue', issue: issueAt(file, 1, tooDeep) };
    return;
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    const parsed = jsonErrorText(error);
    const line = parsed.line ?? 1 + countLineBreaks(text, 0, Math.min(parsed.position ?? text.length, text.length));
    yield { kind: 'issue', issue: issueAt(file, line, `invalid JSON: ${parsed.message}`) };
    return;
  }
  const rows: unknown = Array.isArray(value) ? value : isPlainObject(value) ? value.rows : undefined;
  if (Array.isArray(rows) && rows.length > 0 && rows.every((row) => Array.isArray(row))) {
    // A sheet exported as a grid (header row, then value rows) rather than one object per row.
    yield { kind: 'issue', issue: issueAt(file, 1, 'JSON is an array of arrays; talkbatch reads an array of row objects ([{"image_url": "...", "script": "..."}, ...]), or export the sheet as CSV') };
    return;
  }
  if (!Array.isArray(rows)) {
    yield { kind: 'issue', issue: issueAt(file, 1, SHAPE_MESSAGE) };
    return;
  }
  if (rows.length === 0) {
    yield { kind: 'issue', issue: issueAt(file, 1, 'no data rows') };
    return;
  }
  const lines = rowStartLines(text);
  const columns = new Set<string>();
  for (const row of rows) {
    if (!isPlainObject(row)) continue;
    for (const key of Object.keys(row)) {
      const name = namer(key);
      if (name !== '') columns.add(name);
    }
  }
  yield { kind: 'columns', columns: [...columns], columnNumbers: new Map(), line: 1, upfront: true };
  for (const [index, row] of (rows as unknown[]).entries()) {
    const line = lines[index] ?? 1;
    if (isPlainObject(row)) yield { kind: 'record', line, cells: cellsOf(row, namer) };
    else yield { kind: 'bad-record', line, issues: [issueAt(file, line, `row must be an object (got ${typeName(row)})`)] };
  }
}

export async function* readJsonl(path: string, file: string, namer: ColumnNamer = canonicalColumn, encoding: string = DEFAULT_ENCODING): AsyncGenerator<SourceEvent> {
  const source = createReadStream(path);
  const guard = decodingStage(encoding);
  source.on('error', (error) => guard.destroy(error));
  const lines = createInterface({ input: source.pipe(guard), crlfDelay: Infinity });
  const columns = new Set<string>();
  let line = 0;
  let records = 0;
  try {
    for await (const rawLine of lines) {
      line++;
      const text = line === 1 ? stripBom(rawLine) : rawLine;
      if (text.trim() === '') continue;
      records++;
      const tooDeep = jsonDepthProblem(text);
      if (tooDeep !== undefined) {
        yield { kind: 'bad-record', line, issues: [issueAt(file, line, tooDeep)] };
        continue;
      }
      let value: unknown;
      try {
        value = JSON.parse(text);
      } catch (error) {
        yield { kind: 'bad-record', line, issues: [issueAt(file, line, `invalid JSON: ${jsonErrorText(error).message}`)] };
        continue;
      }
      if (!isPlainObject(value)) {
        yield { kind: 'bad-record', line, issues: [issueAt(file, line, `row must be an object (got ${typeName(value)})`)] };
        continue;
      }
      for (const key of Object.keys(value)) {
        const name = namer(key);
        if (name !== '') columns.add(name);
      }
      yield { kind: 'record', line, cells: cellsOf(value, namer) };
    }
  } finally {
    lines.close();
    source.destroy();
  }
  if (guard.problem !== undefined) {
    yield { kind: 'issue', issue: issueAt(file, guard.problem.line, encodingMessage(guard.problem)) };
    return;
  }
  if (records === 0) {
    yield { kind: 'issue', issue: issueAt(file, 1, 'file is empty') };
    return;
  }
  yield { kind: 'columns', columns: [...columns], columnNumbers: new Map(), line: 1, upfront: false };
}
