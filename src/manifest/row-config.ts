import { TalkConfig } from '../did/schemas.js';
import { quoteValue } from './cells.js';
import type { RowFields } from './row-fields.js';
import type { ManifestDefaults } from './types.js';

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

/** The talk's config: the defaults, then a JSON `config` object, then the columns. */
export function buildConfig(fields: RowFields, defaults: ManifestDefaults): Record<string, unknown> {
  const config: Record<string, unknown> = { ...defaults.config };
  const configObject = fields.object('config');
  if (configObject !== undefined) {
    const parsed = TalkConfig.safeParse(configObject);
    // The config cell's values arrive coerced to D-ID's types ("false" -> false, "0.0" -> 0).
    if (parsed.success) Object.assign(config, parsed.data);
    else for (const issue of parsed.error.issues) fields.add('config', `${['config', ...issue.path.map(String)].join('.')}: ${issue.message}`);
  }
  const stitch = fields.bool('stitch');
  if (stitch !== undefined) config.stitch = stitch;
  const fluent = fields.bool('fluent');
  if (fluent !== undefined) config.fluent = fluent;
  const format = fields.get('result_format');
  if (format !== undefined) {
    const word = format.toLowerCase().replace(/^\./, '');
    if (word === 'mp4' || word === 'mov') config.result_format = word;
    else fields.add('result_format', `must be mp4 or mov (got ${quoteValue(format)})`);
  }
  const pad = fields.number('pad_audio', 0, 60);
  if (pad !== undefined) config.pad_audio = pad;
  for (const [column, type] of Object.entries(CONFIG_SCALARS)) {
    const value = type === 'boolean' ? fields.bool(column) : fields.number(column, 0, Infinity);
    if (value !== undefined) config[column] = value;
  }
  for (const column of ['logo', 'driver_expressions']) {
    const value = fields.object(column);
    if (value !== undefined) config[column] = value;
  }
  return config;
}
