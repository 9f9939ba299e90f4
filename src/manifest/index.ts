/*
 * Manifest module: spreadsheets (CSV/TSV), JSON and JSONL in, one validated D-ID POST /talks body per row out.
 * See README.md in this folder for formats, columns, line numbers and the checks made.
 */
export type {
  ManifestDefaults,
  ManifestFormat,
  ManifestIssue,
  ManifestOptions,
  ManifestRecord,
  ManifestRow,
  ManifestSource,
  SourceOptions,
  ValidationReport,
} from './types.js';
export { ManifestError, formatIssue } from './issues.js';
export { openManifest, readManifest, validateManifest, type OpenedManifest } from './read.js';
export { STDIN_SOURCE, sourceLabel } from './spool.js';
export { isUrlSource, redactUrl } from './remote.js';
export { renderTemplate, templateVariables } from './template.js';
export { computeRowKey } from './row-key.js';
export { detectDelimiter, detectFormat } from './detect.js';
export { canonicalColumn, columnMapping, KNOWN_COLUMNS } from './columns.js';
export { checkFileName, outputFileName, sanitizeNamePart } from './name.js';
export { formulaMessage } from './cells.js';
