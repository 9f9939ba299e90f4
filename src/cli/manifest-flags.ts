import { readFileSync } from 'node:fs';
import { PROVIDER_TYPES, type ProviderType } from '../did/schemas.js';
import type { ManifestOptions } from '../manifest/index.js';
import { UsageError } from '../shared/errors.js';

export const MANIFEST_OPTIONS = {
  template: { type: 'string', short: 't' },
  'template-file': { type: 'string' },
  'name-template': { type: 'string' },
  image: { type: 'string' },
  voice: { type: 'string' },
  provider: { type: 'string' },
  format: { type: 'string' },
} as const;

export const MANIFEST_HELP = `Manifest options:
  -t, --template TEXT    script template for rows without a script cell, e.g. "Hi {{first_name|there}}!"
  --template-file PATH   read the script template from a file
  --name-template TEXT   output file name template (default: the name cell, else the id, else the row key)
  --image URL            image for rows without image_url
  --voice ID             voice for rows without one (e.g. en-US-JennyNeural)
  --provider NAME        microsoft | elevenlabs | amazon | google | azure-openai
  --format F             csv | json | jsonl (default: from the file name)`;

export interface ManifestFlags {
  template?: string;
  'template-file'?: string;
  'name-template'?: string;
  image?: string;
  voice?: string;
  provider?: string;
  format?: string;
}

export function manifestOptionsFrom(flags: ManifestFlags): ManifestOptions {
  if (flags.template !== undefined && flags['template-file'] !== undefined) throw new UsageError('give --template or --template-file, not both');
  let template = flags.template;
  if (flags['template-file'] !== undefined) {
    try {
      template = readFileSync(flags['template-file'], 'utf8').trim();
    } catch (error) {
      throw new UsageError(`cannot read --template-file ${flags['template-file']}: ${(error as Error).message}`);
    }
  }
  if (flags.provider !== undefined && !(PROVIDER_TYPES as readonly string[]).includes(flags.provider)) {
    throw new UsageError(`--provider must be one of ${PROVIDER_TYPES.join(', ')}`);
  }
  if (flags.format !== undefined && !['csv', 'json', 'jsonl'].includes(flags.format)) throw new UsageError('--format must be csv, json or jsonl');
  const defaults = {
    ...(flags.image !== undefined ? { imageUrl: flags.image } : {}),
    ...(flags.voice !== undefined ? { voice: flags.voice } : {}),
    ...(flags.provider !== undefined ? { provider: flags.provider as ProviderType } : {}),
  };
  return {
    ...(template !== undefined ? { template } : {}),
    ...(flags['name-template'] !== undefined ? { nameTemplate: flags['name-template'] } : {}),
    ...(flags.format !== undefined ? { format: flags.format as 'csv' | 'json' | 'jsonl' } : {}),
    ...(Object.keys(defaults).length > 0 ? { defaults } : {}),
  };
}
