import { open, stat, type FileHandle } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { estimateTalkCredits } from '../did/billing.js';
import { PROVIDER_TYPES, TalkConfig } from '../did/schemas.js';
import { canonicalColumn, closestName, columnMapping, editDistance, KNOWN_COLUMNS, type ColumnMapping, type ColumnNamer } from './columns.js';
import { readCsv } from './csv.js';
import { HEAD_BYTES, detectFormat, headProblem, workbookHeadProblem } from './detect.js';
import { decodeHead, encodingName, resolveEncoding, unknownEncodingMessage } from './encoding.js';
import { ManifestError } from './issues.js';
import { readJson, readJsonl } from './json.js';
import { buildRow, type RowContext } from './row.js';
import { issueAt, type SourceEvent } from './source.js';
import { RowSpool } from './row-spool.js';
import { MANIFEST_FORMAT_LIST, MANIFEST_FORMATS } from './schemas.js';
import { isUrlSource } from './remote.js';
import { localManifest, sourceLabel, STDIN_SOURCE } from './spool.js';
import { templateVariablesRaw } from './template.js';
import type { ManifestFormat, ManifestIssue, ManifestOptions, ManifestRecord, ManifestRow, ManifestSource, ValidationReport } from './types.js';
import { imageUrlMessage } from './urls.js';
import { readXlsx } from './xlsx.js';

/** What the engine yields; readManifest and validateManifest are two views of it. */
type EngineEvent =
  | { kind: 'format'; format: ManifestFormat }
  | { kind: 'columns'; columns: string[] }
  | { kind: 'row'; row: ManifestRow }
  | { kind: 'invalid'; line: number; issues: ManifestIssue[] }
  | { kind: 'empty'; line: number }
  | { kind: 'issue'; issue: ManifestIssue }
  | { kind: 'warning'; issue: ManifestIssue };

/** Plain ASCII needs no Unicode normalisation (the common case, and normalize() is not free). */
const ASCII = /^[\x00-\x7f]*$/;

/** A bad option value as a message shows it: an object would print as "[object Object]", so it is named by its type. */
function shown(value: unknown): string {
  return typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean' ? String(value) : typeof value;
}

/**
 * Problems with the options themselves: nothing in the file can fix them, so they are thrown. Library callers may be
 * plain JavaScript, so each option is checked as the value it really is, not as its type claims.
 */
function optionIssues(file: string, options: ManifestOptions): ManifestIssue[] {
  const issues: ManifestIssue[] = [];
  const fail = (column: string, message: string): void => {
    issues.push(issueAt(file, 0, message, column));
  };
  const given: { [K in keyof ManifestOptions]?: unknown } = options;
  if (given.format !== undefined && !MANIFEST_FORMATS.some((format) => format === given.format)) fail('format', `must be ${MANIFEST_FORMAT_LIST} (got "${shown(given.format)}")`);
  if (given.sheet !== undefined && (typeof given.sheet !== 'string' || given.sheet.trim() === '')) fail('sheet', 'must be the name of a worksheet');
  if (given.encoding !== undefined && (typeof given.encoding !== 'string' || encodingName(given.encoding) === undefined)) {
    fail('encoding', unknownEncodingMessage(shown(given.encoding)));
  }
  for (const problem of columnMapping(options.map).problems) fail('map', problem);
  const defaults = options.defaults ?? {};
  const givenDefaults: { [K in keyof typeof defaults]?: unknown } = defaults;
  if (defaults.imageUrl !== undefined) {
    const message = imageUrlMessage(defaults.imageUrl);
    if (message !== undefined) fail('defaults.imageUrl', message);
  }
  if (givenDefaults.provider !== undefined && !PROVIDER_TYPES.some((provider) => provider === givenDefaults.provider)) {
    fail('defaults.provider', `must be one of ${PROVIDER_TYPES.join(', ')} (got "${shown(givenDefaults.provider)}")`);
  }
  const { voiceConfig } = givenDefaults;
  if (voiceConfig !== undefined && (typeof voiceConfig !== 'object' || voiceConfig === null || Array.isArray(voiceConfig))) {
    fail('defaults.voiceConfig', 'must be an object, e.g. {"style": "Cheerful"}');
  }
  if (defaults.config !== undefined) {
    const parsed = TalkConfig.safeParse(defaults.config);
    if (!parsed.success) for (const issue of parsed.error.issues) fail('defaults.config', `${issue.path.join('.') || 'config'}: ${issue.message}`);
  }
  return issues;
}

/** Reads the first bytes: enough to detect the format and delimiter, and to recognise an empty file. */
async function readHead(path: string, file: string): Promise<{ bytes: Uint8Array; size: number }> {
  let size: number;
  try {
    const info = await stat(path);
    if (!info.isFile()) throw new ManifestError([issueAt(file, 0, 'not a file')]);
    size = info.size;
  } catch (error) {
    if (error instanceof ManifestError) throw error;
    const code = (error as { code?: unknown }).code;
    throw new ManifestError([issueAt(file, 0, code === 'ENOENT' ? 'file not found' : `cannot read the file (${String(code ?? error)})`)]);
  }
  let handle: FileHandle | undefined;
  try {
    handle = await open(path, 'r');
    const buffer = Buffer.alloc(Math.min(HEAD_BYTES, size));
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
    return { bytes: buffer.subarray(0, bytesRead), size };
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    throw new ManifestError([issueAt(file, 0, `cannot read the file (${String(code ?? error)})`)]);
  } finally {
    await handle?.close();
  }
}

function unknownTemplateColumns(
  file: string,
  line: number,
  template: string | undefined,
  label: string,
  columns: readonly string[],
  namer: ColumnNamer,
): ManifestIssue[] {
  if (template === undefined) return [];
  const known = new Set(columns);
  const reported = new Set<string>();
  const issues: ManifestIssue[] = [];
  for (const variable of templateVariablesRaw(template, namer)) {
    if (known.has(variable.name) || reported.has(variable.name)) continue;
    reported.add(variable.name);
    const guess = closestName(variable.name, columns);
    const hint = guess === undefined ? '' : ` (did you mean ${guess}?)`;
    issues.push(issueAt(file, line, `${label} uses {{${variable.raw}}} but the sheet has no such column${hint}`, label === 'template' ? 'template' : 'name'));
  }
  return issues;
}

/** Mapped headers (`map`) that the sheet does not have, with the closest header it does have. */
function unmatchedMappings(file: string, line: number, options: ManifestOptions, matched: ReadonlySet<string>, columns: readonly string[]): ManifestIssue[] {
  const issues: ManifestIssue[] = [];
  for (const [field, header] of Object.entries(options.map ?? {})) {
    if (matched.has(canonicalColumn(header))) continue;
    const guess = closestName(canonicalColumn(header), columns);
    const hint = guess === undefined ? '' : ` (did you mean ${guess}?)`;
    issues.push(issueAt(file, line, `map ${field}=${header}: the sheet has no column "${header}"${hint}`, 'map'));
  }
  return issues;
}

/**
 * Columns talkbatch does not know and no template reads: D-ID would never see them, so they are reported instead
 * of being dropped without a word. One a typo away from a field (`stich`) is a problem, since the row would be
 * made without what the user asked for; any other (a CRM's `email`) is a warning.
 */
function unusedColumns(
  file: string,
  line: number,
  columns: readonly string[],
  options: ManifestOptions,
  namer: ColumnNamer,
  columnNumbers?: ReadonlyMap<string, number>,
): EngineEvent[] {
  const used = new Set<string>();
  for (const template of [options.template, options.nameTemplate]) {
    if (template !== undefined) for (const variable of templateVariablesRaw(template, namer)) used.add(variable.name);
  }
  const events: EngineEvent[] = [];
  for (const column of columns) {
    if (column === '' || KNOWN_COLUMNS.has(column) || used.has(column)) continue;
    const guess = closestName(column, KNOWN_COLUMNS);
    const hint = guess === undefined ? '' : ` (did you mean ${guess}?)`;
    const message = `column "${column}" is not a D-ID field talkbatch knows and no template uses it, so D-ID will not get it${hint}`;
    const typo = guess !== undefined && editDistance(column, guess) <= (column.length <= 5 ? 1 : 2);
    events.push({ kind: typo ? 'issue' : 'warning', issue: issueAt(file, line, message, column, columnNumbers?.get(column)) });
  }
  return events;
}

/** File-level checks once the columns are known before the rows (CSV header, parsed JSON, a sheet's header). */
function columnIssues(file: string, line: number, columns: readonly string[], options: ManifestOptions, mapping: ColumnMapping, matched: ReadonlySet<string>): ManifestIssue[] {
  const issues: ManifestIssue[] = unmatchedMappings(file, line, options, matched, columns);
  const has = new Set(columns);
  if (!has.has('image_url') && options.defaults?.imageUrl === undefined) {
    const near = closestName('image_url', columns.filter((name) => !KNOWN_COLUMNS.has(name)));
    const hint = near === undefined ? '(add one, or set a default image)' : `(is "${near}" meant to be image_url?)`;
    issues.push(issueAt(file, line, `no image_url column ${hint}`, 'image_url'));
  }
  if (options.template === undefined && !has.has('script') && !has.has('audio_url')) {
    issues.push(issueAt(file, line, 'no script: add a script column, pass a template, or give audio_url'));
  }
  issues.push(...unknownTemplateColumns(file, line, options.template, 'template', columns, mapping.namer));
  issues.push(...unknownTemplateColumns(file, line, options.nameTemplate, 'name template', columns, mapping.namer));
  return issues;
}

/** The engine over a local file; `file` is how issues name it. Options were checked by openManifest. */
async function* run(path: string, file: string, options: ManifestOptions): AsyncGenerator<EngineEvent> {
  const head = await readHead(path, file);
  const decoding = resolveEncoding(head.bytes, options.encoding);
  const encoding = 'encoding' in decoding ? decoding.encoding : 'utf-8';
  const headText = decodeHead(head.bytes, encoding);
  const format = options.format ?? detectFormat(path, headText, head.bytes);
  yield { kind: 'format', format };
  const known = head.size <= HEAD_BYTES;
  if (head.size === 0 || (known && format !== 'xlsx' && headText.replace(/^\uFEFF/, '').trim() === '')) {
    yield { kind: 'issue', issue: issueAt(file, 1, 'file is empty') };
    return;
  }
  const binary = format === 'xlsx' ? workbookHeadProblem(head.bytes) : headProblem(head.bytes);
  if (binary !== undefined) {
    yield { kind: 'issue', issue: issueAt(file, 1, binary) };
    return;
  }
  if (format !== 'xlsx' && 'problem' in decoding) {
    yield { kind: 'issue', issue: issueAt(file, 1, decoding.problem) };
    return;
  }
  if (options.encoding !== undefined && format === 'xlsx') {
    yield { kind: 'issue', issue: issueAt(file, 1, 'encoding applies to CSV, JSON and JSONL files only (an .xlsx workbook names its own)', 'encoding') };
  }
  if (options.sheet !== undefined && format !== 'xlsx') {
    yield { kind: 'issue', issue: issueAt(file, 1, `sheet applies to .xlsx workbooks only (this is ${format})`, 'sheet') };
  }

  const mapping = columnMapping(options.map);
  // Which mapped headers the file has: recorded by the readers' namer only, as templates use the same map.
  const matchedHeaders = new Set<string>();
  const headerNamer: ColumnNamer =
    mapping.sources.size === 0
      ? mapping.namer
      : (name) => {
          const canonical = canonicalColumn(name);
          if (mapping.sources.has(canonical)) matchedHeaders.add(canonical);
          return mapping.namer(name);
        };

  const ctx: RowContext = { file, defaults: options.defaults ?? {}, namer: mapping.namer, columnNumbers: new Map() };
  if (options.template !== undefined) ctx.template = options.template;
  if (options.nameTemplate !== undefined) ctx.nameTemplate = options.nameTemplate;
  if (options.localMedia !== undefined) ctx.localMedia = options.localMedia;
  // Only keys and names are kept, never rows: memory grows with the number of rows by a few dozen bytes each.
  const firstLineOfKey = new Map<string, number>();
  const firstLineOfName = new Map<string, number>();

  const events: AsyncGenerator<SourceEvent> =
    format === 'csv'
      ? readCsv(path, file, headText, headerNamer, encoding)
      : format === 'json'
        ? readJson(path, file, headerNamer, encoding)
        : format === 'jsonl'
          ? readJsonl(path, file, headerNamer, encoding)
          : readXlsx(path, file, headerNamer, options.sheet);
  for await (const event of events) {
    switch (event.kind) {
      case 'issue':
        yield { kind: 'issue', issue: event.issue };
        break;
      case 'bad-record':
        yield { kind: 'invalid', line: event.line, issues: event.issues };
        break;
      case 'columns': {
        yield { kind: 'columns', columns: event.columns };
        if (event.upfront) {
          ctx.columnNumbers = event.columnNumbers;
          const issues = columnIssues(file, event.line, event.columns, options, mapping, matchedHeaders);
          if (issues.length > 0) {
            // Every row would fail the same way: report it once and stop.
            for (const issue of issues) yield { kind: 'issue', issue };
            return;
          }
          yield* unusedColumns(file, event.line, event.columns, options, mapping.namer, event.columnNumbers);
        } else {
          // JSONL: the columns are only known at the end; rows already reported each empty variable.
          for (const issue of unmatchedMappings(file, 1, options, matchedHeaders, event.columns)) yield { kind: 'issue', issue };
          for (const issue of unknownTemplateColumns(file, 1, options.template, 'template', event.columns, mapping.namer)) yield { kind: 'issue', issue };
          for (const issue of unknownTemplateColumns(file, 1, options.nameTemplate, 'name template', event.columns, mapping.namer)) yield { kind: 'issue', issue };
          yield* unusedColumns(file, 1, event.columns, options, mapping.namer);
        }
        break;
      }
      case 'record': {
        const built = buildRow(event.cells, event.line, ctx);
        if (built.kind === 'empty') {
          yield { kind: 'empty', line: event.line };
          break;
        }
        const { line } = event;
        const firstLine = firstLineOfKey.get(built.rowKey);
        if (firstLine !== undefined) {
          const issue = built.idFromCell
            ? issueAt(file, line, `duplicate id "${built.rowKey}" (first seen on line ${firstLine})`, 'id', ctx.columnNumbers.get('id'))
            : issueAt(file, line, `duplicate row (same content as line ${firstLine})`);
          built.issues.push(issue);
        } else {
          firstLineOfKey.set(built.rowKey, line);
          if (built.outputName !== undefined) {
            // Case-insensitive: two names differing only in case collide on macOS and Windows.
            const nameKey = (ASCII.test(built.outputName) ? built.outputName : built.outputName.normalize('NFC')).toLowerCase();
            const nameLine = firstLineOfName.get(nameKey);
            if (nameLine !== undefined) {
              built.issues.push(issueAt(file, line, `duplicate output name "${built.outputName}" (first used on line ${nameLine})`, 'name', ctx.columnNumbers.get('name')));
            } else firstLineOfName.set(nameKey, line);
          }
        }
        if (built.issues.length === 0 && built.row !== undefined) yield { kind: 'row', row: built.row };
        else yield { kind: 'invalid', line, issues: built.issues };
        break;
      }
    }
  }
}

async function* recordsOf(events: AsyncIterable<EngineEvent>): AsyncGenerator<ManifestRecord> {
  for await (const event of events) {
    switch (event.kind) {
      case 'row':
        yield { ok: true, row: event.row };
        break;
      case 'invalid':
        yield { ok: false, line: event.line, issues: event.issues };
        break;
      case 'empty':
        yield { ok: 'empty', line: event.line };
        break;
      case 'issue':
        yield { ok: false, line: event.issue.line, issues: [event.issue] };
        break;
      default:
        break;
    }
  }
}

async function summarise(path: string, file: string, options: ManifestOptions, keep?: RowSpool): Promise<ValidationReport> {
  const report: ValidationReport = {
    file,
    format: options.format ?? detectFormat(path, ''),
    rows: 0,
    valid: 0,
    skippedEmpty: 0,
    issues: [],
    warnings: [],
    estimatedSeconds: 0,
    estimatedCredits: 0,
    columns: [],
  };
  let seconds = 0;
  // File-level issues sort before row issues of the same line (JSONL reports its file-level ones at the end).
  const fileLevel = new Set<ManifestIssue>();
  for await (const event of run(path, file, options)) {
    switch (event.kind) {
      case 'format':
        report.format = event.format;
        break;
      case 'columns':
        report.columns = event.columns;
        break;
      case 'row': {
        report.rows++;
        report.valid++;
        seconds += event.row.estimatedSeconds ?? 0;
        report.estimatedCredits += estimateTalkCredits(event.row.estimatedSeconds, event.row.talk);
        const writing = keep?.add(event.row);
        if (writing) await writing;
        break;
      }
      case 'invalid':
        report.rows++;
        report.issues.push(...event.issues);
        break;
      case 'empty':
        report.rows++;
        report.skippedEmpty++;
        break;
      case 'issue':
        report.issues.push(event.issue);
        fileLevel.add(event.issue);
        break;
      case 'warning':
        report.warnings.push(event.issue);
        break;
    }
  }
  const rank = (issue: ManifestIssue): number => (fileLevel.has(issue) ? 0 : 1);
  report.issues.sort((a, b) => a.line - b.line || rank(a) - rank(b)); // stable: otherwise in the order found
  report.estimatedSeconds = Math.round(seconds * 10) / 10;
  return report;
}

/**
 * Local files in image_url/audio_url: a manifest file names them relative to its folder, standard input relative
 * to the working directory; a manifest fetched from a URL names none (nobody who can publish a sheet may make
 * talkbatch read this machine's files). A caller's own policy (the REST API's) wins.
 */
function withLocalMediaPolicy(source: ManifestSource, options: ManifestOptions): ManifestOptions {
  if (options.localMedia !== undefined) return options;
  if (source === STDIN_SOURCE) return { ...options, localMedia: { baseDir: process.cwd() } };
  if (isUrlSource(source)) return { ...options, localMedia: { baseDir: process.cwd(), roots: [], refusal: 'a manifest fetched from a URL may not do' } };
  return { ...options, localMedia: { baseDir: dirname(resolve(source)) } };
}

/** A manifest opened once and readable many times (standard input and URLs are copied to a temp file). */
export interface OpenedManifest {
  /** How issues name the source: the path, `stdin`, or the URL without credentials or secret query values. */
  readonly label: string;
  /**
   * Reads every row (streaming) and summarises: counts, every issue sorted by line, total seconds. With
   * `keepValidRows`, the valid rows are also kept in a temp file for validRows() (see RowSpool).
   */
  validate(options?: { keepValidRows?: boolean }): Promise<ValidationReport>;
  /** Streams the records, one per data row, in file order. */
  records(): AsyncGenerator<ManifestRecord>;
  /** The valid rows in file order: those the last validate({ keepValidRows: true }) kept, else read again. */
  validRows(): AsyncGenerator<ManifestRow>;
  /** Deletes the temp copies, if any. */
  close(): Promise<void>;
}

async function* rowsOf(events: AsyncIterable<EngineEvent>): AsyncGenerator<ManifestRow> {
  for await (const event of events) if (event.kind === 'row') yield event.row;
}

/**
 * Opens a manifest source (a path, `-` for standard input, or an https URL) so it can be validated and then read
 * again with the same content. Throws ManifestError when the options are invalid or the source cannot be had at all
 * (missing file, HTTP 404, ...). Call close() when done.
 */
export async function openManifest(source: ManifestSource, given: ManifestOptions = {}): Promise<OpenedManifest> {
  const options = withLocalMediaPolicy(source, given);
  const problems = optionIssues(sourceLabel(source), options);
  if (problems.length > 0) throw new ManifestError(problems);
  const local = await localManifest(source, options.source);
  let kept: RowSpool | undefined;
  const forget = async (): Promise<void> => {
    const spool = kept;
    kept = undefined;
    await spool?.remove();
  };
  return {
    label: local.label,
    validate: async ({ keepValidRows = false } = {}) => {
      await forget();
      if (!keepValidRows) return summarise(local.path, local.label, options);
      const spool = await RowSpool.create();
      try {
        const report = await summarise(local.path, local.label, options, spool);
        await spool.finish();
        kept = spool;
        return report;
      } catch (error) {
        await spool.remove();
        throw error;
      }
    },
    records: () => recordsOf(run(local.path, local.label, options)),
    validRows: () => (kept ? kept.rows() : rowsOf(run(local.path, local.label, options))),
    close: async () => {
      await forget();
      await local.cleanup();
    },
  };
}

/**
 * Streams a manifest, one record per data row, in file order. Rows are never all held: memory is the current row
 * plus one key and one output name per row seen (for duplicate detection). File-level problems (empty file, header
 * only, bad encoding, unparseable CSV/JSON, a template naming a missing column) come as `{ ok: false }` records;
 * when the source cannot be opened at all, or the options are invalid, it throws ManifestError.
 */
export async function* readManifest(source: ManifestSource, options: ManifestOptions = {}): AsyncGenerator<ManifestRecord> {
  const manifest = await openManifest(source, options);
  try {
    yield* manifest.records();
  } finally {
    await manifest.close();
  }
}

/** Reads the whole manifest once (streaming) and summarises it: counts, every issue sorted by line, total seconds. */
export async function validateManifest(source: ManifestSource, options: ManifestOptions = {}): Promise<ValidationReport> {
  const manifest = await openManifest(source, options);
  try {
    return await manifest.validate();
  } finally {
    await manifest.close();
  }
}
