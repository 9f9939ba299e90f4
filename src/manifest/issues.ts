import { AppError } from '../shared/errors.js';
import type { ManifestIssue } from './types.js';

/** `people.csv:4:3 (image_url): must be ...` — file:line[:columnNumber][ (column)]: message. Line 0 is left out. */
export function formatIssue(issue: ManifestIssue): string {
  let where = issue.file;
  if (issue.line > 0) where += `:${issue.line}`;
  if (issue.line > 0 && issue.columnNumber !== undefined) where += `:${issue.columnNumber}`;
  if (issue.column !== undefined) where += ` (${issue.column})`;
  return `${where}: ${issue.message}`;
}

const SHOWN = 5;

/** Thrown when a manifest cannot be read at all (missing file, a directory, bad options); row problems are records. */
export class ManifestError extends AppError {
  readonly code = 'MANIFEST_INVALID';

  constructor(readonly issues: ManifestIssue[]) {
    const lines = issues.slice(0, SHOWN).map((issue) => `  - ${formatIssue(issue)}`);
    if (issues.length > SHOWN) lines.push(`  ... and ${issues.length - SHOWN} more`);
    super(`invalid manifest (${issues.length} ${issues.length === 1 ? 'problem' : 'problems'}):\n${lines.join('\n')}`);
  }
}
