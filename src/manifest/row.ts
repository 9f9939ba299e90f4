import {
  AMAZON_VOICES,
  TalkWithFiles,
  OwnUserData,
  PROVIDER_TYPES,
  TalkConfig,
  type Provider,
  type ProviderType,
} from '../did/schemas.js';
import { CELL_MAX, controlCharacterMessage, formatCount, formulaMessage, parseBoolean, parseNumberInRange, quoteValue } from './cells.js';
import { OBJECT_COLUMNS, type ColumnNamer } from './columns.js';
import { checkFileName, outputFileName, sanitizeNamePart, type VideoFormat } from './name.js';
import { computeRowKey } from './row-key.js';
import { escapeXml, renderWith } from './template.js';
import type { ManifestDefaults, ManifestIssue, ManifestRow } from './types.js';
import { checkLocalMedia, isLocalPath, shareLink, type LocalMediaPolicy } from './local-media.js';
import { audioUrlMessage, imageUrlMessage } from './urls.js';

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

export type BuiltRow =
  | { kind: 'empty' }
  | { kind: 'row'; rowKey: string; idFromCell: boolean; input: Record<string, string>; outputName?: string; issues: ManifestIssue[]; row?: ManifestRow };

const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$/;
const CHARS_PER_SECOND = 14;

/** Columns that only mean something with a text-to-speech provider. */
const VOICE_COLUMNS = ['language', 'voice_style', 'voice_rate', 'voice_pitch', 'stability', 'similarity_boost', 'model_id', 'voice_config'] as const;
type VoiceColumn = (typeof VOICE_COLUMNS)[number];

const PROVIDER_COLUMNS: Readonly<Record<ProviderType, ReadonlySet<VoiceColumn>>> = {
  microsoft: new Set(['language', 'voice_style', 'voice_rate', 'voice_pitch', 'voice_config']),
  'azure-openai': new Set(['language', 'voice_style', 'voice_rate', 'voice_pitch', 'voice_config']),
  elevenlabs: new Set(['language', 'voice_style', 'voice_rate', 'stability', 'similarity_boost', 'model_id', 'voice_config']),
  amazon: new Set(['language']),
  google: new Set([]),
};

const VOICE_EXAMPLE: Readonly<Record<ProviderType, string>> = {
  microsoft: 'en-US-JennyNeural',
  'azure-openai': 'en-US-AndrewMultilingualNeural',
  elevenlabs: '21m00Tcm4TlvDq8ikWAM',
  amazon: 'Joanna',
  google: 'en-US-Wavenet-D',
};

/** Where a field of the D-ID body came from, for zod issues that slip past the checks below. */
const BODY_PATH_COLUMNS: Readonly<Record<string, string>> = {
  source_url: 'image_url',
  'script.audio_url': 'audio_url',
  'script.subtitles': 'subtitles',
  'script.ssml': 'ssml',
  'script.provider': 'provider',
  'script.provider.type': 'provider',
  'script.provider.voice_id': 'voice',
  'script.provider.language': 'language',
  'script.provider.model_id': 'model_id',
  'script.provider.voice_config.style': 'voice_style',
  'script.provider.voice_config.rate': 'voice_rate',
  'script.provider.voice_config.pitch': 'voice_pitch',
  'script.provider.voice_config.stability': 'stability',
  'script.provider.voice_config.similarity_boost': 'similarity_boost',
  'config.stitch': 'stitch',
  'config.fluent': 'fluent',
  'config.result_format': 'result_format',
  'config.pad_audio': 'pad_audio',
  'config.logo': 'logo',
  'config.driver_expressions': 'driver_expressions',
  'config.align_driver': 'align_driver',
  'config.align_expand_factor': 'align_expand_factor',
  'config.auto_match': 'auto_match',
  'config.motion_factor': 'motion_factor',
  'config.normalization_factor': 'normalization_factor',
  'config.sharpen': 'sharpen',
  'config.output_resolution': 'output_resolution',
  face: 'face',
  driver_url: 'driver_url',
  persist: 'persist',
  result_url: 'result_url',
  webhook: 'webhook',
  user_data: 'user_data',
  name: 'name',
};

/** Bare config columns and the type D-ID declares for them (the rest are the objects logo and driver_expressions). */
const CONFIG_SCALARS: Readonly<Record<string, 'boolean' | 'number'>> = {
  align_driver: 'boolean',
  auto_match: 'boolean',
  sharpen: 'boolean',
  align_expand_factor: 'number',
  motion_factor: 'number',
  normalization_factor: 'number',
  output_resolution: 'number',
};

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function stripSsml(text: string): string {
  return text.replace(/<[^>]*>/g, '');
}

export function estimateSeconds(text: string, ssml: boolean): number {
  const chars = (ssml ? stripSsml(text) : text).length;
  return Math.max(1, Math.round((chars / CHARS_PER_SECOND) * 10) / 10);
}

/** Builds one row: cell checks first (size, formula), then meaning; the D-ID body only when nothing is wrong. */
export function buildRow(cells: readonly RawCell[], line: number, ctx: RowContext): BuiltRow {
  const issues: ManifestIssue[] = [];
  const add = (column: string | undefined, message: string, columnNumber?: number): void => {
    const issue: ManifestIssue = { file: ctx.file, line, message };
    if (column !== undefined && column !== '') issue.column = column;
    const number = columnNumber ?? (column === undefined ? undefined : ctx.columnNumbers.get(column));
    if (number !== undefined) issue.columnNumber = number;
    issues.push(issue);
  };

  // 1. Cells: text, size, formula. A cell that fails here is "bad" and is not checked again.
  // No prototype: the keys are the sheet's headers ("constructor", "__proto__" are just columns).
  const input: Record<string, string> = Object.create(null) as Record<string, string>;
  const objects: Record<string, Record<string, unknown>> = Object.create(null) as Record<string, Record<string, unknown>>;
  const bad = new Set<string>();
  const keys = new Map<string, string>();
  let anyValue = false;
  for (const cell of cells) {
    const { column, value } = cell;
    if (column !== '') {
      const earlier = keys.get(column);
      if (earlier !== undefined) {
        add(column, `duplicate field ${quoteValue(cell.key)} (same as ${quoteValue(earlier)})`, cell.columnNumber);
        bad.add(column);
        continue;
      }
      keys.set(column, cell.key);
    }
    let text: string;
    if (typeof value === 'object' && value !== null) {
      text = JSON.stringify(value);
      if (column !== '') input[column] = text;
      anyValue = true;
      if (isPlainObject(value) && OBJECT_COLUMNS.has(column)) {
        objects[column] = value;
      } else {
        add(column, `must be text, a number or true/false (got ${Array.isArray(value) ? 'a list' : 'an object'})`, cell.columnNumber);
        bad.add(column);
      }
      continue;
    }
    text = value === null ? '' : String(value);
    const trimmed = text.trim();
    if (trimmed !== '') anyValue = true;
    if (column === '') {
      if (trimmed !== '') add(undefined, `cell ${quoteValue(trimmed, 20)} is in a column with no header`, cell.columnNumber);
      continue;
    }
    input[column] = trimmed;
    if (text.length > CELL_MAX) {
      add(column, `cell has ${formatCount(text.length)} characters (the limit is ${formatCount(CELL_MAX)})`, cell.columnNumber);
      bad.add(column);
      continue;
    }
    const formula = typeof value === 'string' ? (formulaMessage(text) ?? controlCharacterMessage(text)) : undefined;
    if (formula !== undefined) {
      add(column, formula, cell.columnNumber);
      bad.add(column);
    }
  }
  if (!anyValue) return { kind: 'empty' };

  const get = (column: string): string | undefined => {
    if (bad.has(column)) return undefined;
    const value = input[column];
    return value === undefined || value === '' ? undefined : value;
  };
  const given = (column: string): boolean => bad.has(column) || get(column) !== undefined || objects[column] !== undefined;
  const bool = (column: string): boolean | undefined => {
    const value = get(column);
    if (value === undefined) return undefined;
    const parsed = parseBoolean(value);
    if (typeof parsed === 'boolean') return parsed;
    add(column, parsed.message);
    bad.add(column);
    return undefined;
  };
  const number = (column: string, min: number, max: number): number | undefined => {
    const value = get(column);
    if (value === undefined) return undefined;
    const parsed = parseNumberInRange(value, min, max);
    if (typeof parsed === 'number') return parsed;
    add(column, parsed.message);
    bad.add(column);
    return undefined;
  };

  // 2. Identity.
  const id = get('id');
  let idValid = false;
  if (id !== undefined) {
    if (id.includes(':')) add('id', 'must not contain ":" (ids become part of job ids)');
    else if (!ID_PATTERN.test(id)) add('id', 'must start with a letter or digit and use only letters, digits, ".", "_" and "-" (at most 100 characters)');
    else idValid = true;
  }
  const rowKey = computeRowKey(input);

  // 3. Script: a script cell, else an audio_url cell, else the template (row cells beat the batch-wide template).
  const defaults = ctx.defaults;
  const ssml = bool('ssml') ?? defaults.ssml ?? false;
  const subtitles = bool('subtitles') ?? defaults.subtitles;
  let script: TalkWithFiles['script'] | undefined;
  let scriptColumn = 'script';
  let estimatedSeconds: number | null = null;
  if (given('script') && given('audio_url')) add('audio_url', 'give either script or audio_url, not both');
  if (given('script') || (!given('audio_url') && ctx.template !== undefined)) {
    let text = get('script');
    if (text === undefined && !given('script') && ctx.template !== undefined) {
      scriptColumn = 'template';
      const rendered = renderWith(ctx.template, input, ssml ? escapeXml : (value) => value, ctx.namer);
      for (const name of rendered.missing) {
        if (bad.has(name)) continue;
        add(name, `template variable "${name}" is empty (add a fallback: {{${name}|...}})`);
      }
      text = rendered.missing.length === 0 ? rendered.text : undefined;
    }
    const provider = buildProvider();
    if (text !== undefined) {
      if (text.length < 3) add(scriptColumn, `must be at least 3 characters (got ${text.length})`);
      else if (text.length > CELL_MAX) add(scriptColumn, `must be at most ${formatCount(CELL_MAX)} characters (got ${formatCount(text.length)})`);
      else {
        script = { type: 'text', input: text };
        if (provider !== undefined) script.provider = provider;
        if (ssml) script.ssml = true;
        if (subtitles !== undefined) script.subtitles = subtitles;
        estimatedSeconds = estimateSeconds(text, ssml);
      }
    }
  } else if (given('audio_url')) {
    // Voice columns mean nothing for an audio script; a sheet mixing text and audio rows may still fill them.
    const url = get('audio_url');
    if (url !== undefined && isLocalPath(url)) {
      const local = checkLocalMedia(url, 'audio', ctx.localMedia);
      if ('message' in local) add('audio_url', local.message);
      else {
        script = { type: 'audio', audio_file: local.path };
        if (subtitles !== undefined) script.subtitles = subtitles;
      }
    } else if (url !== undefined) {
      const message = audioUrlMessage(url);
      if (message !== undefined) add('audio_url', message);
      else {
        script = { type: 'audio', audio_url: url };
        if (subtitles !== undefined) script.subtitles = subtitles;
      }
    }
  } else {
    add(undefined, 'no script: add a script column, pass a template, or give audio_url');
  }

  // 4. Image.
  const image = get('image_url') ?? (given('image_url') ? undefined : defaults.imageUrl);
  let imageFile: string | undefined;
  const imageLink = image === undefined ? undefined : shareLink(image);
  if (imageLink !== undefined) {
    // Fetched, checked and uploaded by the worker (src/worker/uploads.ts).
  } else if (image !== undefined && isLocalPath(image)) {
    const local = checkLocalMedia(image, 'image', ctx.localMedia);
    if ('message' in local) add('image_url', local.message);
    else imageFile = local.path;
  } else if (image !== undefined) {
    const message = imageUrlMessage(image);
    if (message !== undefined) add('image_url', message);
  } else if (!given('image_url')) {
    add('image_url', 'is empty (every row needs an image, or set a default image)');
  }

  // 5. Config: defaults, then a JSON `config` object, then the columns.
  const config: Record<string, unknown> = { ...defaults.config };
  const configObject = objects.config ?? jsonObjectCell('config');
  if (configObject !== undefined) {
    const parsed = TalkConfig.safeParse(configObject);
    // The config cell's values arrive coerced to D-ID's types ("false" -> false, "0.0" -> 0).
    if (parsed.success) Object.assign(config, parsed.data);
    else for (const issue of parsed.error.issues) add('config', `${['config', ...issue.path.map(String)].join('.')}: ${issue.message}`);
  }
  const stitch = bool('stitch');
  if (stitch !== undefined) config.stitch = stitch;
  const fluent = bool('fluent');
  if (fluent !== undefined) config.fluent = fluent;
  const format = get('result_format');
  if (format !== undefined) {
    const word = format.toLowerCase().replace(/^\./, '');
    if (word === 'mp4' || word === 'mov') config.result_format = word;
    else add('result_format', `must be mp4 or mov (got ${quoteValue(format)})`);
  }
  const pad = number('pad_audio', 0, 60);
  if (pad !== undefined) config.pad_audio = pad;
  for (const [column, type] of Object.entries(CONFIG_SCALARS)) {
    const value = type === 'boolean' ? bool(column) : number(column, 0, Infinity);
    if (value !== undefined) config[column] = value;
  }
  for (const column of ['logo', 'driver_expressions']) {
    const value = objects[column] ?? jsonObjectCell(column);
    if (value !== undefined) config[column] = value;
  }
  const videoFormat: VideoFormat = config.result_format === 'mov' ? 'mov' : 'mp4';

  // 6. Output name: the name cell, else the name template, else the id, else the row key.
  let outputName: string | undefined;
  const nameCell = get('name');
  let baseName: string | undefined;
  if (nameCell !== undefined) {
    const message = checkFileName(nameCell);
    if (message !== undefined) add('name', message);
    else baseName = nameCell;
  } else if (!given('name') && ctx.nameTemplate !== undefined) {
    const rendered = renderWith(ctx.nameTemplate, input, sanitizeNamePart, ctx.namer);
    for (const name of rendered.missing) {
      if (!bad.has(name)) add(name, `name template variable "${name}" is empty (add a fallback: {{${name}|...}})`);
    }
    if (rendered.missing.length === 0) {
      const text = rendered.text.trim();
      const message = checkFileName(text);
      if (message !== undefined) add('name', message);
      else baseName = text;
    }
  } else if (!given('name')) {
    // An invalid id already failed the row; it must not become a file name either.
    if (id === undefined) baseName = rowKey;
    else if (idValid) baseName = id;
  }
  if (baseName !== undefined) {
    const result = outputFileName(baseName, videoFormat);
    if ('message' in result) add('name', result.message);
    else outputName = result.fileName;
  }

  const built: BuiltRow = { kind: 'row', rowKey, idFromCell: id !== undefined, input, issues };
  if (outputName !== undefined) built.outputName = outputName;
  if (issues.length > 0 || script === undefined || image === undefined || outputName === undefined) return built;

  // 7. The body, checked against D-ID's schema as a last line of defence.
  const body: Record<string, unknown> =
    imageFile !== undefined ? { source_file: imageFile, script } : imageLink !== undefined ? { source_link: imageLink, script } : { source_url: image, script };
  if (Object.keys(config).length > 0) body.config = config;
  if (nameCell !== undefined) body.name = nameCell;
  for (const column of ['driver_url', 'result_url', 'webhook']) setIfGiven(body, column, get(column));
  setIfGiven(body, 'persist', bool('persist'));
  setIfGiven(body, 'face', objects.face ?? jsonObjectCell('face'));
  const userData = get('user_data');
  if (userData !== undefined) {
    const own = OwnUserData.safeParse(userData);
    if (own.success) body.user_data = own.data;
    else add('user_data', `${own.error.issues[0]?.message ?? 'is invalid'} (got ${formatCount(userData.length)} characters)`);
  }
  if (issues.length > 0) return built;
  const parsed = TalkWithFiles.safeParse(body);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      const path = issue.path.map(String).join('.');
      const column = path === 'script.input' ? scriptColumn : columnForBodyPath(path);
      add(column, column === undefined || column === 'config' || column === 'voice_config' ? `${path}: ${issue.message}` : issue.message);
    }
    return built;
  }
  built.row = { line, rowKey, input, talk: parsed.data, outputName, estimatedSeconds };
  return built;

  /** A `config`/`voice_config` cell holding JSON text (CSV); issues when it is not an object. */
  function jsonObjectCell(column: string): Record<string, unknown> | undefined {
    const text = get(column);
    if (text === undefined) return undefined;
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      value = undefined;
    }
    if (isPlainObject(value)) return value;
    add(column, 'must be a JSON object, e.g. {"stitch": true}');
    bad.add(column);
    return undefined;
  }

  /** The TTS provider for a text script, or undefined for D-ID's default (issues added as found). */
  function buildProvider(): Provider | undefined {
    const providerCell = get('provider');
    let type: ProviderType | undefined;
    if (providerCell !== undefined) {
      const word = providerCell.toLowerCase();
      type = PROVIDER_TYPES.find((candidate) => candidate === word);
      if (type === undefined) {
        add('provider', `must be one of ${PROVIDER_TYPES.join(', ')} (got ${quoteValue(providerCell)})`);
        return undefined;
      }
    } else if (bad.has('provider')) {
      return undefined;
    }
    const voiceCell = get('voice');
    const defaultProvider = defaults.provider ?? (defaults.voice !== undefined ? 'microsoft' : undefined);
    type ??= voiceCell !== undefined ? (defaults.provider ?? 'microsoft') : defaultProvider;
    const voiceCellObject = objects.voice_config ?? jsonObjectCell('voice_config');

    if (type === undefined) {
      if (bad.has('voice')) return undefined;
      for (const column of VOICE_COLUMNS) if (given(column)) add(column, `${column} needs a voice or provider`);
      return undefined;
    }
    for (const column of VOICE_COLUMNS) {
      if (given(column) && !PROVIDER_COLUMNS[type].has(column)) add(column, `${column} is not supported by provider ${type}`);
    }
    const voice = voiceCell ?? (bad.has('voice') || type !== defaultProvider ? undefined : defaults.voice);
    // Like the default voice, the default voice_config belongs to the default provider: another provider's
    // settings would not fit a row that picks its own.
    const voiceObject = type === defaultProvider && defaults.voiceConfig !== undefined ? { ...defaults.voiceConfig, ...voiceCellObject } : voiceCellObject;
    const language = PROVIDER_COLUMNS[type].has('language') ? (get('language') ?? defaults.language) : undefined;
    if (voice === undefined && !bad.has('voice') && (type === 'microsoft' || type === 'azure-openai' || type === 'amazon')) {
      add('voice', `provider ${type} needs a voice (e.g. ${VOICE_EXAMPLE[type]})`);
      return undefined;
    }
    if (voice === undefined && bad.has('voice')) return undefined;

    switch (type) {
      case 'amazon': {
        const fold = (text: string): string => text.normalize('NFD').replace(/\p{M}/gu, '').toLowerCase();
        const match = AMAZON_VOICES.find((candidate) => fold(candidate) === fold(voice ?? ''));
        if (match === undefined) {
          add('voice', `${quoteValue(voice ?? '')} is not an Amazon voice D-ID supports (e.g. Joanna, Matthew, Amy)`);
          return undefined;
        }
        return language === undefined ? { type, voice_id: match } : { type, voice_id: match, language };
      }
      case 'google':
        return voice === undefined ? { type } : { type, voice_id: voice };
      case 'microsoft':
      case 'azure-openai': {
        const voiceConfig: Record<string, unknown> = { ...voiceObject };
        setIfGiven(voiceConfig, 'style', get('voice_style'));
        setIfGiven(voiceConfig, 'rate', get('voice_rate'));
        setIfGiven(voiceConfig, 'pitch', get('voice_pitch'));
        const provider: Record<string, unknown> = { type, voice_id: voice };
        if (Object.keys(voiceConfig).length > 0) provider.voice_config = voiceConfig;
        if (language !== undefined) provider.language = language;
        return provider as Provider; // shape checked by CreateTalkRequest below
      }
      case 'elevenlabs': {
        const voiceConfig: Record<string, unknown> = { ...voiceObject };
        setIfGiven(voiceConfig, 'style', get('voice_style'));
        setIfGiven(voiceConfig, 'rate', get('voice_rate'));
        setIfGiven(voiceConfig, 'stability', number('stability', 0, 1));
        setIfGiven(voiceConfig, 'similarity_boost', number('similarity_boost', 0, 1));
        const provider: Record<string, unknown> = { type };
        if (voice !== undefined) provider.voice_id = voice;
        if (Object.keys(voiceConfig).length > 0) provider.voice_config = voiceConfig;
        const model = get('model_id');
        if (model !== undefined) provider.model_id = model;
        if (language !== undefined) provider.language = language;
        return provider as Provider; // shape checked by CreateTalkRequest below
      }
    }
  }
}

function columnForBodyPath(path: string): string | undefined {
  const exact = BODY_PATH_COLUMNS[path];
  if (exact !== undefined) return exact;
  if (path.startsWith('face')) return 'face';
  if (path.startsWith('config.logo')) return 'logo';
  if (path.startsWith('config.driver_expressions')) return 'driver_expressions';
  if (path.startsWith('script.provider.voice_config')) return 'voice_config';
  if (path.startsWith('script.provider')) return 'provider';
  if (path.startsWith('config')) return 'config';
  return undefined;
}

function setIfGiven(target: Record<string, unknown>, key: string, value: unknown): void {
  if (value !== undefined) target[key] = value;
}
