import { OwnUserData, TalkWithFiles } from '../did/schemas.js';
import { formatCount } from './cells.js';
import { setIfGiven, type RowFields } from './row-fields.js';
import type { ImageSource } from './row-image.js';
import type { ScriptPart } from './row-script.js';

/** Where a field of the D-ID body came from, for zod issues that slip past the checks of the earlier phases. */
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

/** The D-ID body from the checked parts and the columns D-ID takes as they are. */
export function assembleBody(fields: RowFields, source: ImageSource, script: NonNullable<ScriptPart['script']>, config: Record<string, unknown>): Record<string, unknown> {
  const body: Record<string, unknown> = { ...source, script };
  if (Object.keys(config).length > 0) body.config = config;
  setIfGiven(body, 'name', fields.get('name'));
  for (const column of ['driver_url', 'result_url', 'webhook']) setIfGiven(body, column, fields.get(column));
  setIfGiven(body, 'persist', fields.bool('persist'));
  setIfGiven(body, 'face', fields.object('face'));
  const userData = fields.get('user_data');
  if (userData !== undefined) {
    const own = OwnUserData.safeParse(userData);
    if (own.success) body.user_data = own.data;
    else fields.add('user_data', `${own.error.issues[0]?.message ?? 'is invalid'} (got ${formatCount(userData.length)} characters)`);
  }
  return body;
}

/** The body checked against D-ID's schema as a last line of defence; undefined (with issues by column) when it fails. */
export function checkBody(fields: RowFields, body: Record<string, unknown>, scriptColumn: string): TalkWithFiles | undefined {
  const parsed = TalkWithFiles.safeParse(body);
  if (parsed.success) return parsed.data;
  for (const issue of parsed.error.issues) {
    const path = issue.path.map(String).join('.');
    const column = path === 'script.input' ? scriptColumn : columnForBodyPath(path);
    fields.add(column, column === undefined || column === 'config' || column === 'voice_config' ? `${path}: ${issue.message}` : issue.message);
  }
  return undefined;
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
