/*
 * Column names: headers and JSON keys are matched case-insensitively after normalising to lower_snake_case
 * ("First Name", "firstName" and "first-name" all become first_name), then common aliases are resolved.
 * Template variables go through the same two steps, so `{{Photo}}` reads the image_url column.
 */

const ALIASES: Readonly<Record<string, string>> = {
  image: 'image_url',
  photo: 'image_url',
  avatar: 'image_url',
  source_url: 'image_url',
  text: 'script',
  script_text: 'script',
  voice_id: 'voice',
  filename: 'name',
  file_name: 'name',
  file: 'name',
  output: 'name',
  output_name: 'name',
  audio: 'audio_url',
};

/** Keys of D-ID's talk `config` that a sheet may give as columns of their own (bare name), deprecated ones included. */
export const CONFIG_COLUMNS: ReadonlySet<string> = new Set([
  'stitch', 'fluent', 'result_format', 'pad_audio', 'logo', 'driver_expressions',
  'align_driver', 'align_expand_factor', 'auto_match', 'motion_factor', 'normalization_factor', 'sharpen', 'output_resolution',
]);

/** Top-level fields of D-ID's POST /talks a sheet may give as columns, named as D-ID names them. */
export const TALK_FIELD_COLUMNS: ReadonlySet<string> = new Set(['face', 'driver_url', 'persist', 'result_url', 'webhook', 'user_data']);

/** Columns with a meaning of their own; any other column must be a template variable (else it is reported). */
export const KNOWN_COLUMNS: ReadonlySet<string> = new Set([
  'id', 'image_url', 'script', 'audio_url', 'name',
  'voice', 'provider', 'language', 'voice_style', 'voice_rate', 'voice_pitch', 'stability', 'similarity_boost', 'model_id',
  'subtitles', 'ssml', 'config', 'voice_config',
  ...CONFIG_COLUMNS,
  ...TALK_FIELD_COLUMNS,
]);

/** Columns whose value may be an object: nested in JSON rows, JSON text in CSV/XLSX cells (anywhere else an object or list is an issue). */
export const OBJECT_COLUMNS: ReadonlySet<string> = new Set(['config', 'voice_config', 'face', 'logo', 'driver_expressions']);

/** lower_snake_case without alias resolution: "First Name" -> first_name, "imageURL" -> image_url. */
export function snakeCase(name: string): string {
  return name
    .normalize('NFC')
    .trim()
    .replace(/([\p{Ll}\p{N}])(\p{Lu})/gu, '$1_$2')
    .replace(/(\p{Lu})(\p{Lu}\p{Ll})/gu, '$1_$2')
    .toLowerCase()
    .replace(/[^\p{L}\p{N}]+/gu, '_')
    .replace(/^_+|_+$/g, '');
}

const cache = new Map<string, string>();
const CACHE_MAX = 2_000;

/** Normalised name with aliases resolved; '' for a name with no letters or digits. */
export function canonicalColumn(name: string): string {
  // Called for every template variable of every row: memoised (bounded, as JSON keys come from the file).
  const cached = cache.get(name);
  if (cached !== undefined) return cached;
  const snake = snakeCase(name);
  // Own keys only: a header called "constructor" or "__proto__" is a column like any other.
  const canonical = Object.hasOwn(ALIASES, snake) ? (ALIASES[snake] as string) : snake;
  if (cache.size >= CACHE_MAX) cache.clear();
  cache.set(name, canonical);
  return canonical;
}

/** Levenshtein distance (small inputs: header names). */
export function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      current[j] = Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, (previous[j - 1] ?? 0) + cost);
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}

/** The candidate closest to `name` when it is close enough to be a typo, else undefined. */
export function closestName(name: string, candidates: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of candidates) {
    const distance = editDistance(name, candidate);
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  const limit = Math.max(2, Math.floor(name.length / 3));
  return bestDistance <= limit ? best : undefined;
}

/** Turns a header, JSON key or template variable into the name rows are keyed by. */
export type ColumnNamer = (name: string) => string;

export interface ColumnMapping {
  namer: ColumnNamer;
  /** Canonical name of a mapped header -> the talkbatch field it stands for. */
  sources: ReadonlyMap<string, string>;
  /** What is wrong with the map itself (an unknown field, one header for two fields), as issue messages. */
  problems: string[];
}

/**
 * `map` (talkbatch field -> the sheet's header for it, e.g. `{ image_url: 'Headshot' }`) as a namer: headers are
 * normalised as usual, and a mapped header then becomes its field. Templates go through the same namer, so
 * `{{Headshot}}` and `{{image_url}}` read the same cell.
 */
export function columnMapping(map: Readonly<Record<string, string>> | undefined): ColumnMapping {
  const sources = new Map<string, string>();
  const problems: string[] = [];
  for (const [rawField, rawHeader] of Object.entries(map ?? {})) {
    const field = canonicalColumn(rawField);
    if (!KNOWN_COLUMNS.has(field)) {
      const guess = closestName(field, KNOWN_COLUMNS);
      problems.push(`"${rawField}" is not a talkbatch field${guess === undefined ? '' : ` (did you mean ${guess}?)`}; fields: ${[...KNOWN_COLUMNS].join(', ')}`);
      continue;
    }
    const header = canonicalColumn(rawHeader);
    if (header === '') {
      problems.push(`${field}=${JSON.stringify(rawHeader)}: give the header of the column that holds ${field}`);
      continue;
    }
    const earlier = sources.get(header);
    if (earlier !== undefined && earlier !== field) {
      problems.push(`"${rawHeader}" is mapped to both ${earlier} and ${field}`);
      continue;
    }
    sources.set(header, field);
  }
  if (sources.size === 0) return { namer: canonicalColumn, sources, problems };
  const namer: ColumnNamer = (name) => {
    const canonical = canonicalColumn(name);
    return sources.get(canonical) ?? canonical;
  };
  return { namer, sources, problems };
}
