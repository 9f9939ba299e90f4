import { parseBoolean, parseNumberInRange } from './cells.js';
import type { ColumnNamer } from './columns.js';
import type { LocalMediaPolicy } from './local-media.js';
import type { ManifestDefaults, ManifestIssue } from './types.js';

export interface RowContext {
  file: string;
  template?: string;
  nameTemplate?: string;
  defaults: ManifestDefaults;
  /** How template variables become column names (a column map applies to them too). Default: canonicalColumn. */
  namer?: ColumnNamer;
  /** Canonical name -> 1-based CSV column; empty for JSON. */
  columnNumbers: ReadonlyMap<string, number>;
  /** Whether and where image_url/audio_url may name local files; undefined allows none. */
  localMedia?: LocalMediaPolicy;
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * One row's cells as the phases of buildRow read them, and the issues they find. A column that failed once is
 * "bad": it reads as absent from then on, so one mistake is reported once, yet it still counts as given (a row
 * does not fall back to a default for a cell the user filled in wrongly).
 */
export class RowFields {
  /** Canonical column -> trimmed text. No prototype: the keys are the sheet's headers ("constructor" is just a column). */
  readonly input: Record<string, string> = Object.create(null) as Record<string, string>;
  /** JSON object cells (JSON manifests) of the columns that take an object. */
  readonly objects: Record<string, Record<string, unknown>> = Object.create(null) as Record<string, Record<string, unknown>>;
  readonly bad = new Set<string>();
  readonly issues: ManifestIssue[] = [];

  constructor(
    private readonly ctx: Pick<RowContext, 'file' | 'columnNumbers'>,
    private readonly line: number,
  ) {}

  add(column: string | undefined, message: string, columnNumber?: number): void {
    const issue: ManifestIssue = { file: this.ctx.file, line: this.line, message };
    if (column !== undefined && column !== '') issue.column = column;
    const number = columnNumber ?? (column === undefined ? undefined : this.ctx.columnNumbers.get(column));
    if (number !== undefined) issue.columnNumber = number;
    this.issues.push(issue);
  }

  /** Marks the column bad with an issue. */
  fail(column: string, message: string, columnNumber?: number): void {
    this.add(column, message, columnNumber);
    this.bad.add(column);
  }

  /** The cell's text, or undefined when empty or bad. */
  get(column: string): string | undefined {
    if (this.bad.has(column)) return undefined;
    const value = this.input[column];
    return value === undefined || value === '' ? undefined : value;
  }

  given(column: string): boolean {
    return this.bad.has(column) || this.get(column) !== undefined || this.objects[column] !== undefined;
  }

  bool(column: string): boolean | undefined {
    const value = this.get(column);
    if (value === undefined) return undefined;
    const parsed = parseBoolean(value);
    if (typeof parsed === 'boolean') return parsed;
    this.fail(column, parsed.message);
    return undefined;
  }

  number(column: string, min: number, max: number): number | undefined {
    const value = this.get(column);
    if (value === undefined) return undefined;
    const parsed = parseNumberInRange(value, min, max);
    if (typeof parsed === 'number') return parsed;
    this.fail(column, parsed.message);
    return undefined;
  }

  /** An object column: the JSON object of a JSON manifest, else the cell's text parsed as a JSON object (CSV). */
  object(column: string): Record<string, unknown> | undefined {
    return this.objects[column] ?? this.jsonObject(column);
  }

  private jsonObject(column: string): Record<string, unknown> | undefined {
    const text = this.get(column);
    if (text === undefined) return undefined;
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      value = undefined;
    }
    if (isPlainObject(value)) return value;
    this.fail(column, 'must be a JSON object, e.g. {"stitch": true}');
    return undefined;
  }
}

export function setIfGiven(target: Record<string, unknown>, key: string, value: unknown): void {
  if (value !== undefined) target[key] = value;
}
