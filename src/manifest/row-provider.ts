import { AMAZON_VOICES, PROVIDER_TYPES, type Provider, type ProviderType } from '../did/schemas.js';
import { quoteValue } from './cells.js';
import { setIfGiven, type RowFields } from './row-fields.js';
import type { ManifestDefaults } from './types.js';

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

/** What a provider is built from once its type is known. */
interface Voice {
  type: ProviderType;
  voice: string | undefined;
  voiceObject: Record<string, unknown> | undefined;
  language: string | undefined;
}

/** The TTS provider for a text script, or undefined for D-ID's default (issues added as found). */
export function buildProvider(fields: RowFields, defaults: ManifestDefaults): Provider | undefined {
  const cellType = providerCell(fields);
  if (cellType === null) return undefined;
  const voiceCell = fields.get('voice');
  const defaultProvider = defaults.provider ?? (defaults.voice !== undefined ? 'microsoft' : undefined);
  const type = cellType ?? (voiceCell !== undefined ? (defaults.provider ?? 'microsoft') : defaultProvider);
  const voiceCellObject = fields.object('voice_config');

  if (type === undefined) {
    if (fields.bad.has('voice')) return undefined;
    for (const column of VOICE_COLUMNS) if (fields.given(column)) fields.add(column, `${column} needs a voice or provider`);
    return undefined;
  }
  for (const column of VOICE_COLUMNS) {
    if (fields.given(column) && !PROVIDER_COLUMNS[type].has(column)) fields.add(column, `${column} is not supported by provider ${type}`);
  }
  const voice = voiceCell ?? (fields.bad.has('voice') || type !== defaultProvider ? undefined : defaults.voice);
  // Like the default voice, the default voice_config belongs to the default provider: another provider's
  // settings would not fit a row that picks its own.
  const voiceObject = type === defaultProvider && defaults.voiceConfig !== undefined ? { ...defaults.voiceConfig, ...voiceCellObject } : voiceCellObject;
  const language = PROVIDER_COLUMNS[type].has('language') ? (fields.get('language') ?? defaults.language) : undefined;
  if (voice === undefined && !fields.bad.has('voice') && (type === 'microsoft' || type === 'azure-openai' || type === 'amazon')) {
    fields.add('voice', `provider ${type} needs a voice (e.g. ${VOICE_EXAMPLE[type]})`);
    return undefined;
  }
  if (voice === undefined && fields.bad.has('voice')) return undefined;
  return providerOf({ type, voice, voiceObject, language }, fields);
}

/** The provider cell's type; undefined when empty, null when it is wrong (reported here or earlier). */
function providerCell(fields: RowFields): ProviderType | undefined | null {
  const cell = fields.get('provider');
  if (cell === undefined) return fields.bad.has('provider') ? null : undefined;
  const word = cell.toLowerCase();
  const type = PROVIDER_TYPES.find((candidate) => candidate === word);
  if (type !== undefined) return type;
  fields.add('provider', `must be one of ${PROVIDER_TYPES.join(', ')} (got ${quoteValue(cell)})`);
  return null;
}

function providerOf({ type, voice, voiceObject, language }: Voice, fields: RowFields): Provider | undefined {
  switch (type) {
    case 'amazon': {
      const fold = (text: string): string => text.normalize('NFD').replace(/\p{M}/gu, '').toLowerCase();
      const match = AMAZON_VOICES.find((candidate) => fold(candidate) === fold(voice ?? ''));
      if (match === undefined) {
        fields.add('voice', `${quoteValue(voice ?? '')} is not an Amazon voice D-ID supports (e.g. Joanna, Matthew, Amy)`);
        return undefined;
      }
      return language === undefined ? { type, voice_id: match } : { type, voice_id: match, language };
    }
    case 'google':
      return voice === undefined ? { type } : { type, voice_id: voice };
    case 'microsoft':
    case 'azure-openai': {
      const voiceConfig: Record<string, unknown> = { ...voiceObject };
      setIfGiven(voiceConfig, 'style', fields.get('voice_style'));
      setIfGiven(voiceConfig, 'rate', fields.get('voice_rate'));
      setIfGiven(voiceConfig, 'pitch', fields.get('voice_pitch'));
      const provider: Record<string, unknown> = { type, voice_id: voice };
      if (Object.keys(voiceConfig).length > 0) provider.voice_config = voiceConfig;
      if (language !== undefined) provider.language = language;
      return provider as Provider; // shape checked against D-ID's schema in checkBody
    }
    case 'elevenlabs': {
      const voiceConfig: Record<string, unknown> = { ...voiceObject };
      setIfGiven(voiceConfig, 'style', fields.get('voice_style'));
      setIfGiven(voiceConfig, 'rate', fields.get('voice_rate'));
      setIfGiven(voiceConfig, 'stability', fields.number('stability', 0, 1));
      setIfGiven(voiceConfig, 'similarity_boost', fields.number('similarity_boost', 0, 1));
      const provider: Record<string, unknown> = { type };
      if (voice !== undefined) provider.voice_id = voice;
      if (Object.keys(voiceConfig).length > 0) provider.voice_config = voiceConfig;
      const model = fields.get('model_id');
      if (model !== undefined) provider.model_id = model;
      if (language !== undefined) provider.language = language;
      return provider as Provider; // shape checked against D-ID's schema in checkBody
    }
  }
}
