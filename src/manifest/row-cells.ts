import { CELL_MAX, controlCharacterMessage, formatCount, formulaMessage, quoteValue } from './cells.js';
import { OBJECT_COLUMNS } from './columns.js';
import { isPlainObject, type RowFields } from './row-fields.js';

/** A value as read from the file: CSV gives strings, JSON any JSON value. */
export type CellValue = string | number | boolean | null | object;

export interface RawCell {
  /** Canonical column name; '' for a CSV column without a header. */
  column: string;
  /** The header or key as written (messages). */
  key: string;
  columnNumber?: number;
  value: CellValue;
}

/**
 * The first phase of a row: each cell becomes text (or an object, for the columns that take one) and is checked
 * for size and formulas. A cell that fails here is bad and is not checked again. False when every cell is empty.
 */
export function intakeCells(cells: readonly RawCell[], fields: RowFields): boolean {
  const keys = new Map<string, string>();
  let anyValue = false;
  for (const cell of cells) {
    if (cell.column !== '') {
      const earlier = keys.get(cell.column);
      if (earlier !== undefined) {
        fields.fail(cell.column, `duplicate field ${quoteValue(cell.key)} (same as ${quoteValue(earlier)})`, cell.columnNumber);
        continue;
      }
      keys.set(cell.column, cell.key);
    }
    if (intakeCell(cell, fields)) anyValue = true;
  }
  return anyValue;
}

/** One cell into `fields`; true when it holds a value. */
function intakeCell(cell: RawCell, fields: RowFields): boolean {
  const { column, value } = cell;
  if (typeof value === 'object' && value !== null) {
    if (column !== '') fields.input[column] = JSON.stringify(value);
    if (isPlainObject(value) && OBJECT_COLUMNS.has(column)) fields.objects[column] = value;
    else fields.fail(column, `must be text, a number or true/false (got ${Array.isArray(value) ? 'a list' : 'an object'})`, cell.columnNumber);
    return true;
  }
  const text = value === null ? '' : String(value);
  const trimmed = text.trim();
  if (column === '') {
    if (trimmed !== '') fields.add(undefined, `cell ${quoteValue(trimmed, 20)} is in a column with no header`, cell.columnNumber);
    return trimmed !== '';
  }
  fields.input[column] = trimmed;
  if (text.length > CELL_MAX) {
    fields.fail(column, `cell has ${formatCount(text.length)} characters (the limit is ${formatCount(CELL_MAX)})`, cell.columnNumber);
  } else {
    const problem = typeof value === 'string' ? (formulaMessage(text) ?? controlCharacterMessage(text)) : undefined;
    if (problem !== undefined) fields.fail(column, problem, cell.columnNumber);
  }
  return trimmed !== '';
}
