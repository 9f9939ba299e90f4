import { stat } from 'node:fs/promises';
import type { Cell, Row, Workbook, Worksheet } from 'exceljs';
import { quoteValue } from './cells.js';
import { canonicalColumn, closestName, type ColumnNamer } from './columns.js';
import { readHeader } from './csv.js';
import type { RawCell } from './row.js';
import { issueAt, type SourceEvent } from './source.js';
import type { ManifestIssue } from './types.js';
import { workbookLimitProblem } from './xlsx-limits.js';

/*
 * Excel (.xlsx) reader. The workbook is loaded whole (exceljs), so files over XLSX_MAX_BYTES, and workbooks that
 * unpack past WORKBOOK_LIMITS (checked while inflating, xlsx-limits.ts), are refused with a pointer to CSV. One worksheet is read: the first, or the one named by `sheet`.
 *
 * Line numbers are the sheet's row numbers and column numbers come from the cell address, so `people.xlsx:5:3` is
 * cell C5 as Excel shows it. The header is the first row with a value in it. Cells become the text a person sees:
 * dates as ISO dates, numbers without binary float noise (0.1 + 0.2 is "0.3"), formulas as their saved result,
 * rich text and hyperlinks as their plain text. A formula with no saved result or an error value (#N/A) is an issue
 * on its cell: the value is not in the file, and guessing it could send the wrong script.
 */

/** A workbook is unpacked in memory at many times its size on disk; past this, CSV streams instead. */
export const XLSX_MAX_BYTES = 20 * 1024 * 1024;

type CellText = { text: string } | { problem: string };

const pad = (n: number, width = 2): string => String(n).padStart(width, '0');

/**
 * Excel keeps dates as wall-clock numbers without a zone; exceljs hands them over as UTC dates. A whole day becomes
 * 2026-01-15, a time of day alone (Excel's day zero, 1899-12-30) becomes 09:30, anything else 2026-01-15T09:30:00.
 */
export function dateText(date: Date): string {
  if (Number.isNaN(date.getTime())) return '';
  const [hours, minutes, seconds] = [date.getUTCHours(), date.getUTCMinutes(), date.getUTCSeconds()];
  const time = seconds === 0 ? `${pad(hours)}:${pad(minutes)}` : `${pad(hours)}:${pad(minutes)}:${pad(seconds)}`;
  if (date.getUTCFullYear() === 1899 && date.getUTCMonth() === 11 && date.getUTCDate() === 30) return time;
  const day = `${pad(date.getUTCFullYear(), 4)}-${pad(date.getUTCMonth() + 1)}-${pad(date.getUTCDate())}`;
  return hours === 0 && minutes === 0 && seconds === 0 ? day : `${day}T${pad(hours)}:${pad(minutes)}:${pad(seconds)}`;
}

/** 0.1 + 0.2 -> "0.3": 15 significant digits is what Excel itself shows, and drops the binary noise. */
export function numberText(value: number): string {
  if (!Number.isFinite(value)) return String(value);
  if (Number.isInteger(value) && Math.abs(value) < 1e21) return String(value);
  return String(Number(value.toPrecision(15)));
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null;
}

/** A cell value (as exceljs reads it) as the text a person sees in the cell, or why it has none. */
export function cellText(value: unknown): CellText {
  if (value === null || value === undefined) return { text: '' };
  if (typeof value === 'string') return { text: value };
  if (typeof value === 'number') return { text: numberText(value) };
  if (typeof value === 'boolean') return { text: value ? 'true' : 'false' };
  if (value instanceof Date) return { text: dateText(value) };
  if (typeof value === 'bigint') return { text: value.toString() };
  if (!isRecord(value)) return { problem: 'holds a value talkbatch cannot read' };
  if (typeof value.error === 'string') return { problem: `holds the error ${value.error}` };
  if (Array.isArray(value.richText)) {
    return { text: value.richText.map((run: unknown) => (isRecord(run) && typeof run.text === 'string' ? run.text : '')).join('') };
  }
  if ('formula' in value || 'sharedFormula' in value) {
    if (value.result === undefined || value.result === null) {
      return { problem: 'is a formula with no saved result (open the workbook in Excel or LibreOffice and save it again)' };
    }
    return cellText(value.result);
  }
  // A hyperlink shows its text, which may itself be rich text.
  if ('text' in value) return cellText(value.text);
  return { problem: 'holds a value talkbatch cannot read' };
}

/** The cell's text; the cells a merged range covers, apart from its top-left one, are empty. */
function textOf(cell: Cell | undefined): CellText {
  if (cell === undefined) return { text: '' };
  if (cell.isMerged && cell.master.address !== cell.address) return { text: '' };
  return cellText(cell.value);
}

async function loadWorkbook(path: string): Promise<Workbook | undefined> {
  // Loaded on first use: exceljs and its zip libraries cost a noticeable startup for every CSV user otherwise.
  const { default: ExcelJS } = await import('exceljs');
  const workbook = new ExcelJS.Workbook();
  try {
    await workbook.xlsx.readFile(path);
    return workbook;
  } catch {
    return undefined;
  }
}

function pickSheet(workbook: Workbook, wanted: string | undefined, file: string): { sheet: Worksheet } | { issue: ManifestIssue } {
  const sheets = workbook.worksheets;
  const names = sheets.map((sheet) => sheet.name);
  if (sheets.length === 0) return { issue: issueAt(file, 1, 'workbook has no sheets') };
  if (wanted === undefined) return { sheet: sheets[0] as Worksheet };
  const exact = sheets.find((sheet) => sheet.name === wanted) ?? sheets.find((sheet) => sheet.name.trim().toLowerCase() === wanted.trim().toLowerCase());
  if (exact !== undefined) return { sheet: exact };
  const byCanonical = new Map(names.map((name) => [canonicalColumn(name), name]));
  const near = closestName(canonicalColumn(wanted), byCanonical.keys());
  const hint = near === undefined ? '' : ` (did you mean ${quoteValue(byCanonical.get(near) ?? near)}?)`;
  const list = names.map((name) => quoteValue(name)).join(', ');
  return { issue: issueAt(file, 1, `no sheet named ${quoteValue(wanted)}${hint}; the workbook has ${list}`, 'sheet') };
}

function rowTexts(row: Row, width: number, file: string): { texts: string[]; issues: ManifestIssue[] } {
  const texts: string[] = [];
  const issues: ManifestIssue[] = [];
  for (let column = 1; column <= width; column++) {
    const cell = row.findCell(column);
    const result = textOf(cell);
    if ('problem' in result) {
      issues.push(issueAt(file, row.number, `cell ${cell?.address ?? column} ${result.problem}`, undefined, column));
      texts.push('');
    } else texts.push(result.text);
  }
  return { texts, issues };
}

export async function* readXlsx(path: string, file: string, namer: ColumnNamer = canonicalColumn, sheetName?: string): AsyncGenerator<SourceEvent> {
  const { size } = await stat(path);
  if (size > XLSX_MAX_BYTES) {
    yield { kind: 'issue', issue: issueAt(file, 1, `workbook is larger than ${XLSX_MAX_BYTES / 1024 / 1024} MB; export the sheet as CSV UTF-8 for big batches`) };
    return;
  }
  const tooBig = await workbookLimitProblem(path);
  if (tooBig !== undefined) {
    yield { kind: 'issue', issue: issueAt(file, 1, tooBig) };
    return;
  }
  const workbook = await loadWorkbook(path);
  if (workbook === undefined) {
    yield { kind: 'issue', issue: issueAt(file, 1, 'cannot read the file as an .xlsx workbook (is it damaged, or not really an Excel file?)') };
    return;
  }
  const picked = pickSheet(workbook, sheetName, file);
  if ('issue' in picked) {
    yield { kind: 'issue', issue: picked.issue };
    return;
  }
  const { sheet } = picked;
  const sheetLabel = `sheet ${quoteValue(sheet.name)}`;

  let header: ReturnType<typeof readHeader>['header'] | undefined;
  let width = 0;
  let dataRows = 0;
  for (let number = 1; number <= sheet.rowCount; number++) {
    const row = sheet.findRow(number);
    if (row === undefined || !row.hasValues) continue;
    if (header === undefined) {
      const { texts, issues } = rowTexts(row, row.cellCount, file);
      if (texts.every((text) => text.trim() === '') && issues.length === 0) continue; // styled but empty rows above the header
      if (issues.length > 0) {
        for (const issue of issues) yield { kind: 'issue', issue };
        return;
      }
      const read = readHeader(texts, number, file, namer, true);
      if (read.issues.length > 0) {
        for (const issue of read.issues) yield { kind: 'issue', issue };
        return;
      }
      header = read.header;
      width = header.names.length;
      while (width > 0 && header.names[width - 1] === '') width--;
      const columnNumbers = new Map<string, number>();
      header.names.forEach((name, index) => {
        if (name !== '') columnNumbers.set(name, index + 1);
      });
      yield { kind: 'columns', columns: header.names.filter((name) => name !== ''), columnNumbers, line: number, upfront: true };
      continue;
    }
    // Cells right of the header are read too, so a value there is reported rather than silently dropped.
    const { texts, issues } = rowTexts(row, Math.max(width, row.cellCount), file);
    if (texts.some((text) => text.trim() !== '') || issues.length > 0) dataRows++;
    if (issues.length > 0) {
      yield { kind: 'bad-record', line: number, issues };
      continue;
    }
    const cells: RawCell[] = texts.map((value, index) => ({
      column: index < width ? (header?.names[index] ?? '') : '',
      key: header?.raw[index] ?? '',
      columnNumber: index + 1,
      value,
    }));
    yield { kind: 'record', line: number, cells };
  }
  if (header === undefined) yield { kind: 'issue', issue: issueAt(file, 1, `${sheetLabel} is empty`) };
  else if (dataRows === 0) yield { kind: 'issue', issue: issueAt(file, header.line, 'no data rows') };
}
