import type { TalkWithFiles } from '../did/schemas.js';
import type { LocalMediaPolicy } from './local-media.js';
import type { MANIFEST_FORMATS, ManifestDefaults } from './schemas.js';

/** One problem found in a manifest. `line` 0 means "the whole file" (it could not be opened at all). */
export interface ManifestIssue {
  file: string;
  /**
   * 1-based physical line (CSV: the header is line 1; a multi-line record reports the line it starts on). For a
   * workbook, the sheet's row number.
   */
  line: number;
  /** Canonical column / field name (lower_snake_case, aliases resolved), e.g. `image_url`. */
  column?: string;
  /** 1-based column index (CSV, or the cell's column in a workbook), when known (never set for JSON). */
  columnNumber?: number;
  /** Human text, no trailing period. */
  message: string;
}

/** Batch-wide values used when a row leaves the cell empty: one zod schema, ManifestDefaultsSchema (schemas.ts). */
export type { ManifestDefaults } from './schemas.js';

export type ManifestFormat = (typeof MANIFEST_FORMATS)[number];

/**
 * Where a manifest comes from: a file path, `-` for standard input, or an https:// URL (http:// only for localhost).
 * Standard input and URLs are copied once to a temp file, so the rows can be read twice (validate, then enqueue).
 */
export type ManifestSource = string;

/** Limits for manifests that are not local files. */
export interface SourceOptions {
  /** A download (URL) must finish within this many ms. Default 60,000. */
  timeoutMs?: number;
  /** Standard input or a download larger than this is refused. Default 50 MB. */
  maxBytes?: number;
  /** Hosts a manifest URL may reach although they are not public (config TALKBATCH_OUTBOUND_ALLOW). Default: none. */
  outboundAllow?: readonly string[];
  /** What `-` reads. Default: process.stdin. */
  stdin?: AsyncIterable<Uint8Array | string> & { isTTY?: boolean };
}

export interface ManifestOptions {
  /**
   * Default: from the extension (.csv/.tsv/.txt, .json, .jsonl/.ndjson, .xlsx), for URLs from the content type, else
   * sniffed from the first bytes.
   */
  format?: ManifestFormat;
  /** The worksheet of an .xlsx workbook to read. Default: the first one. */
  sheet?: string;
  /**
   * Text encoding of a CSV, JSON or JSONL file, e.g. `windows-1252` (Excel's "CSV" on Windows) or `utf-16le`.
   * Default: UTF-8. A byte-order mark at the start of the file wins (Excel's "Unicode Text" is UTF-16 LE with one).
   */
  encoding?: string;
  /**
   * talkbatch field -> the sheet's header for it, e.g. `{ image_url: 'Headshot' }`. Matched like headers (case,
   * spaces and camelCase do not matter); templates may use either name.
   */
  map?: Record<string, string>;
  /** Limits for `-` and URL sources. */
  source?: SourceOptions;
  /** Script template (`{{column}}`, `{{column|fallback}}`) for rows without a `script` or `audio_url` cell. */
  template?: string;
  /** Output file name template. Default: the row's `name` cell, else its `id`, else its row key. A `name` cell wins. */
  nameTemplate?: string;
  defaults?: ManifestDefaults;
  /**
   * Whether image_url/audio_url may name local files. Default: a manifest file may name files relative to its own
   * folder, standard input relative to the working directory; a URL none.
   */
  localMedia?: LocalMediaPolicy;
}

export interface ManifestRow {
  /** 1-based physical line where the record starts. */
  line: number;
  /** `id` when present, else `r` + 16 hex chars of a content hash (see computeRowKey). */
  rowKey: string;
  /** The row's cells keyed by canonical column name, values trimmed (nested JSON objects are JSON-encoded). */
  input: Record<string, string>;
  /**
   * The D-ID POST /talks body (it passes `CreateTalkRequest.parse`), except that a local image or audio file is
   * named by `source_file` / `script.audio_file` (absolute paths) until the worker uploads it.
   */
  talk: TalkWithFiles;
  /** A plain file name ending in .mp4 (or .mov when `config.result_format` is mov). */
  outputName: string;
  /** Text scripts: characters (SSML tags stripped) / 14, to 0.1 s, at least 1. Audio scripts: null. */
  estimatedSeconds: number | null;
}

export type ManifestRecord =
  | { ok: true; row: ManifestRow }
  | { ok: false; line: number; issues: ManifestIssue[] }
  /** Every cell empty: skipped and counted. */
  | { ok: 'empty'; line: number };

export interface ValidationReport {
  /** The source as issues name it: the path, `stdin`, or the URL without credentials or secret query values. */
  file: string;
  format: ManifestFormat;
  /** Data records seen, including empty ones (file-level problems are not records). */
  rows: number;
  valid: number;
  skippedEmpty: number;
  /** Every issue, sorted by line (stable: within a line, in the order found). */
  issues: ManifestIssue[];
  /** What does not fail a row but the user should know, e.g. a column nothing uses (D-ID never gets it). */
  warnings: ManifestIssue[];
  /** Sum over valid text rows, to 0.1 s. */
  estimatedSeconds: number;
  /** Σ over valid rows of each talk's estimated credits (src/did/billing.ts: BILLING_RULE; pad_audio counted, audio rows 1). */
  estimatedCredits: number;
  /** Canonical column names: the CSV header order, or first-seen order of JSON keys. */
  columns: string[];
}
