import { loadConfig } from '../config/index.js';
import { PROVIDER_TYPES, type ProviderType } from '../did/schemas.js';
import type { ManifestDefaults, ManifestFormat, ManifestOptions } from '../manifest/index.js';
import { encodingName, unknownEncodingMessage } from '../manifest/encoding.js';
import { loadJobFile, mergeManifestOptions, readTemplateFile } from '../manifest/job-file.js';
import { MANIFEST_FORMAT_LIST, MANIFEST_FORMATS } from '../manifest/schemas.js';
import { UsageError } from '../shared/errors.js';

export const MANIFEST_OPTIONS = {
  job: { type: 'string' },
  template: { type: 'string', short: 't' },
  'template-file': { type: 'string' },
  'name-template': { type: 'string' },
  map: { type: 'string', multiple: true },
  sheet: { type: 'string' },
  image: { type: 'string' },
  voice: { type: 'string' },
  provider: { type: 'string' },
  ssml: { type: 'boolean' },
  format: { type: 'string' },
  encoding: { type: 'string' },
} as const;

export const MANIFEST_HELP = `Manifest (a file, "-" for standard input, an https:// URL such as a Google Sheet published as CSV,
or an .xlsx workbook) and options:
  --job FILE             a job file (YAML or JSON) with the options below and the manifest; flags win over it
  -t, --template TEXT    script template for rows without a script cell, e.g. "Hi {{first_name|there}}!"
  --template-file PATH   read the script template from a file
  --name-template TEXT   output file name template, e.g. "{{company}}-{{first_name}}" (default: the name cell,
                         else the id, else the row key)
  --map FIELD=COLUMN     read a talkbatch field from a column with another header, e.g. --map image_url=Headshot
                         (repeatable; fields: id, image_url, script, audio_url, name, voice, provider, ...)
  --sheet NAME           the worksheet of an .xlsx workbook (default: the first)
  --image URL            image for rows without image_url
  --voice ID             voice for rows without one (e.g. en-US-JennyNeural)
  --provider NAME        microsoft | elevenlabs | amazon | google | azure-openai
  --ssml                 scripts are SSML: sheet values put into the template are XML-escaped
  --format F             ${MANIFEST_FORMATS.join(' | ')} (default: from the file name or content type)
  --encoding E           text encoding of a CSV/JSON/JSONL file when it has no byte-order mark, e.g.
                         windows-1252 (Excel's "CSV" on Windows) or utf-16le (default: utf-8)`;

export interface ManifestFlags {
  job?: string;
  template?: string;
  'template-file'?: string;
  'name-template'?: string;
  map?: string[];
  sheet?: string;
  image?: string;
  voice?: string;
  provider?: string;
  ssml?: boolean;
  format?: string;
  encoding?: string;
}

/** `--map image_url=Headshot` (repeatable) as `{ image_url: 'Headshot' }`; fields are checked by the manifest reader. */
export function parseMapFlags(values: readonly string[] | undefined): Record<string, string> | undefined {
  if (values === undefined || values.length === 0) return undefined;
  const map: Record<string, string> = {};
  for (const value of values) {
    const at = value.indexOf('=');
    const field = at === -1 ? '' : value.slice(0, at).trim();
    const column = at === -1 ? '' : value.slice(at + 1).trim();
    if (field === '' || column === '') throw new UsageError(`--map needs FIELD=COLUMN, e.g. --map image_url=Headshot (got "${value}")`);
    map[field] = column;
  }
  return map;
}

/** The options the flags themselves set (no job file). */
function optionsOfFlags(flags: ManifestFlags): ManifestOptions {
  if (flags.template !== undefined && flags['template-file'] !== undefined) throw new UsageError('give --template or --template-file, not both');
  const template = flags['template-file'] !== undefined ? readTemplateFile(flags['template-file'], '.', '--template-file') : flags.template;
  if (flags.provider !== undefined && !(PROVIDER_TYPES as readonly string[]).includes(flags.provider)) {
    throw new UsageError(`--provider must be one of ${PROVIDER_TYPES.join(', ')}`);
  }
  if (flags.format !== undefined && !(MANIFEST_FORMATS as readonly string[]).includes(flags.format)) throw new UsageError(`--format must be ${MANIFEST_FORMAT_LIST}`);
  if (flags.encoding !== undefined && encodingName(flags.encoding) === undefined) throw new UsageError(`--encoding: ${unknownEncodingMessage(flags.encoding)}`);
  const defaults: ManifestDefaults = {
    ...(flags.image !== undefined ? { imageUrl: flags.image } : {}),
    ...(flags.voice !== undefined ? { voice: flags.voice } : {}),
    ...(flags.provider !== undefined ? { provider: flags.provider as ProviderType } : {}),
    ...(flags.ssml === true ? { ssml: true } : {}),
  };
  const map = parseMapFlags(flags.map);
  return {
    ...(template !== undefined ? { template } : {}),
    ...(flags['name-template'] !== undefined ? { nameTemplate: flags['name-template'] } : {}),
    ...(map !== undefined ? { map } : {}),
    ...(flags.sheet !== undefined ? { sheet: flags.sheet } : {}),
    ...(flags.format !== undefined ? { format: flags.format as ManifestFormat } : {}),
    ...(flags.encoding !== undefined ? { encoding: flags.encoding } : {}),
    ...(Object.keys(defaults).length > 0 ? { defaults } : {}),
  };
}

/**
 * The manifest and its options for commands that take `<manifest>`: the positional argument, else the job file's
 * `manifest`. `command` names the command in the usage error.
 */
export function manifestArgs(flags: ManifestFlags, positionals: readonly string[], command: string): { manifest: string; options: ManifestOptions } {
  if (positionals.length > 1) throw new UsageError(`${command} takes one manifest (got ${positionals.length}: ${positionals.join(' ')})`);
  const job = flags.job === undefined ? undefined : loadJobFile(flags.job);
  const manifest = positionals[0] ?? job?.manifest;
  if (manifest === undefined) {
    throw new UsageError(`${command} needs a manifest: a path, "-" for standard input, an https:// URL, or --job FILE with a manifest (see talkbatch ${command} --help)`);
  }
  const own = optionsOfFlags(flags);
  const options = job === undefined ? own : mergeManifestOptions(job.options, own);
  // A manifest URL reaches only public addresses, or the hosts the operator opened.
  return { manifest, options: { ...options, source: { ...options.source, outboundAllow: loadConfig().outboundAllow } } };
}
