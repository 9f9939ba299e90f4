import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { LineCounter, isMap, isScalar, isSeq, parseDocument, type Document } from 'yaml';
import { z } from 'zod';
import { UsageError } from '../shared/errors.js';
import { closestName } from './columns.js';
import { encodingName, unknownEncodingMessage } from './encoding.js';
import { isUrlSource } from './remote.js';
import { STDIN_SOURCE } from './spool.js';
import { defaultsOfFile, fileDefaultsShape, ManifestFormatSchema } from './schemas.js';
import type { ManifestOptions } from './types.js';

/*
 * Job files (`jobs/welcome.job.yaml` or `.json`): the options of one kind of batch, kept next to its sheet instead of
 * on a long command line. YAML 1.2 is a superset of JSON, so one parser reads both and every error carries the line
 * of the key it is about. Relative paths inside (manifest, templateFile) are relative to the job file's folder, so a
 * job works from any working directory. Flags given with a job file override its values.
 */

const text = z.string().trim().min(1, 'must not be empty');

/** The manifest defaults with the keys spelled like columns (`image_url`); text in a file must not be blank. */
export const JobDefaultsSchema = z.strictObject(fileDefaultsShape).extend({
  image_url: text.exactOptional(),
  voice: text.exactOptional(),
  language: text.exactOptional(),
});

/** The keys of a job file; schedule files take the same keys (see src/schedules/file.ts). */
export const JOB_FILE_SHAPE = {
  manifest: text.optional(),
  template: text.optional(),
  templateFile: text.optional(),
  nameTemplate: text.optional(),
  map: z.record(z.string(), text).optional(),
  sheet: text.optional(),
  format: ManifestFormatSchema.optional(),
  encoding: text.refine((label) => encodingName(label) !== undefined, { error: (issue) => unknownEncodingMessage(String(issue.input)) }).optional(),
  defaults: JobDefaultsSchema.optional(),
};

export const JobFileSchema = z.strictObject(JOB_FILE_SHAPE);
export type JobFileSpec = z.infer<typeof JobFileSchema>;

/** A job file read and checked: the manifest (resolved) and the options it sets. */
export interface JobFile {
  path: string;
  manifest?: string;
  options: ManifestOptions;
}

/** The line of the key a problem is about, or of its nearest parent key that the file has. */
function lineOf(doc: Document, counter: LineCounter, path: readonly PropertyKey[]): number | undefined {
  for (let depth = path.length; depth > 0; depth--) {
    const parent = depth === 1 ? doc.contents : doc.getIn(path.slice(0, depth - 1), true);
    const key = path[depth - 1];
    let range: readonly number[] | null | undefined;
    if (isMap(parent)) {
      const pair = parent.items.find((item) => isScalar(item.key) && String(item.key.value) === String(key));
      range = pair !== undefined && isScalar(pair.key) ? pair.key.range : undefined;
    } else if (isSeq(parent) && typeof key === 'number') {
      const item: unknown = parent.items[key];
      range = (item as { range?: readonly number[] } | undefined)?.range;
    }
    if (range?.[0] !== undefined) return counter.linePos(range[0]).line;
  }
  return undefined;
}

function keyList(shape: object): string[] {
  return Object.keys(shape);
}

/** Known keys at `path` of a schema made of nested strict objects, for "did you mean" hints. */
function knownKeysAt(schema: z.ZodType, path: readonly PropertyKey[]): string[] {
  let current: z.ZodType = schema;
  for (const part of path) {
    while (current instanceof z.ZodOptional || current instanceof z.ZodDefault) current = current.unwrap() as z.ZodType;
    if (!(current instanceof z.ZodObject)) return [];
    const next = (current.shape as Record<string, z.ZodType>)[String(part)];
    if (next === undefined) return [];
    current = next;
  }
  while (current instanceof z.ZodOptional || current instanceof z.ZodDefault) current = current.unwrap() as z.ZodType;
  return current instanceof z.ZodObject ? keyList(current.shape) : [];
}

/**
 * Reads a YAML or JSON file and checks it against `schema`. Every problem names the file, the line and the key; they
 * are thrown together as one UsageError (exit code 2 on the command line).
 */
export function parseSpecFile<T extends z.ZodType>(path: string, schema: T, what: string): z.infer<T> {
  let source: string;
  try {
    source = readFileSync(path, 'utf8');
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    throw new UsageError(`cannot read ${what} ${path}: ${code === 'ENOENT' ? 'file not found' : String(code ?? error)}`);
  }
  const counter = new LineCounter();
  const doc = parseDocument(source, { lineCounter: counter });
  if (doc.errors.length > 0) {
    const lines = doc.errors.map((error) => {
      const line = error.linePos?.[0]?.line;
      // The first line of the message, without the position (given first) and the code frame after it.
      const message = (error.message.split('\n')[0] ?? error.message).replace(/\s+at line \d+, column \d+:?$/, '');
      return `  - ${line === undefined ? '' : `line ${line}: `}${message}`;
    });
    throw new UsageError(`${what} ${path} is not valid YAML or JSON:\n${lines.join('\n')}`);
  }
  const parsed = schema.safeParse(doc.toJS() ?? {});
  if (parsed.success) return parsed.data;
  const lines: string[] = [];
  for (const issue of parsed.error.issues) {
    const at = (keyPath: readonly PropertyKey[]): string => {
      const line = lineOf(doc, counter, keyPath);
      return `${line === undefined ? '' : `line ${line}, `}${keyPath.length === 0 ? '(top level)' : keyPath.map(String).join('.')}`;
    };
    if (issue.code === 'unrecognized_keys') {
      const known = knownKeysAt(schema, issue.path);
      for (const key of issue.keys) {
        const guess = closestName(key, known);
        const hint = guess === undefined ? ` (known keys: ${known.join(', ')})` : ` (did you mean ${guess}?)`;
        lines.push(`  - ${at([...issue.path, key])}: unknown key${hint}`);
      }
    } else {
      lines.push(`  - ${at(issue.path)}: ${issue.message}`);
    }
  }
  throw new UsageError(`invalid ${what} ${path}:\n${lines.join('\n')}`);
}

/** A manifest named in a spec file: URLs and `-` as they are, paths relative to the file's folder. */
export function resolveManifestPath(manifest: string, baseDir: string): string {
  if (manifest === STDIN_SOURCE || isUrlSource(manifest) || isAbsolute(manifest)) return manifest;
  return resolve(baseDir, manifest);
}

/** `templateFile` (relative to `baseDir`) read and trimmed; errors name the key. */
export function readTemplateFile(templateFile: string, baseDir: string, key = 'templateFile'): string {
  const path = resolve(baseDir, templateFile);
  try {
    return readFileSync(path, 'utf8').trim();
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    throw new UsageError(`${key}: cannot read ${path} (${code === 'ENOENT' ? 'file not found' : String(code ?? error)})`);
  }
}

/** A checked spec's fields as ManifestOptions; `baseDir` anchors relative paths. */
export function jobOptions(spec: JobFileSpec, baseDir: string): JobFile['options'] {
  if (spec.template !== undefined && spec.templateFile !== undefined) throw new UsageError('give template or templateFile, not both');
  const template = spec.templateFile !== undefined ? readTemplateFile(spec.templateFile, baseDir) : spec.template;
  const defaults = defaultsOfFile(spec.defaults ?? {});
  return {
    ...(template !== undefined ? { template } : {}),
    ...(spec.nameTemplate !== undefined ? { nameTemplate: spec.nameTemplate } : {}),
    ...(spec.map !== undefined ? { map: spec.map } : {}),
    ...(spec.sheet !== undefined ? { sheet: spec.sheet } : {}),
    ...(spec.format !== undefined ? { format: spec.format } : {}),
    ...(spec.encoding !== undefined ? { encoding: spec.encoding } : {}),
    ...(Object.keys(defaults).length > 0 ? { defaults } : {}),
  };
}

/** Reads and checks a job file (YAML or JSON). Throws UsageError naming the file, line and key of each problem. */
export function loadJobFile(path: string): JobFile {
  const spec = parseSpecFile(path, JobFileSchema, 'job file');
  const baseDir = dirname(resolve(path));
  let options: ManifestOptions;
  try {
    options = jobOptions(spec, baseDir);
  } catch (error) {
    if (error instanceof UsageError) throw new UsageError(`invalid job file ${path}: ${error.message}`);
    throw error;
  }
  return {
    path,
    ...(spec.manifest !== undefined ? { manifest: resolveManifestPath(spec.manifest, baseDir) } : {}),
    options,
  };
}

/**
 * Options from two places, `over` winning key by key: defaults and map merge field by field, a template from either
 * form (text or file) replaces the other's.
 */
export function mergeManifestOptions(base: ManifestOptions, over: ManifestOptions): ManifestOptions {
  const merged: ManifestOptions = { ...base, ...over };
  const defaults = { ...base.defaults, ...over.defaults };
  if (base.defaults?.config !== undefined || over.defaults?.config !== undefined) defaults.config = { ...base.defaults?.config, ...over.defaults?.config };
  if (Object.keys(defaults).length > 0) merged.defaults = defaults;
  const map = { ...base.map, ...over.map };
  if (Object.keys(map).length > 0) merged.map = map;
  return merged;
}
