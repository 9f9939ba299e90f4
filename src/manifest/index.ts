/*
 * Manifest module: spreadsheets (CSV/TSV), JSON and JSONL in, one validated D-ID POST /talks body per row out.
 * See README.md in this folder for formats, columns, line numbers and the checks made.
 */
export type { ManifestDefaults, ManifestFormat, ManifestIssue, ManifestOptions, ManifestRecord, ManifestRow, ValidationReport } from './types.js';
export { ManifestError, formatIssue } from './issues.js';
export { readManifest, validateManifest } from './read.js';
export { renderTemplate, templateVariables } from './template.js';
export { computeRowKey } from './row-key.js';
export { detectDelimiter, detectFormat } from './detect.js';
export { canonicalColumn } from './columns.js';
export { checkFileName, outputFileName, sanitizeNamePart } from './name.js';
export { formulaMessage } from './cells.js';
