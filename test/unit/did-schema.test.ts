import { describe, expect, it } from 'vitest';
import { CreateTalkRequest } from '../../src/did/index.js';
import { didCreateTalkValidator } from '../helpers/openapi.js';

const validate = didCreateTalkValidator();
const image = 'https://d-id-public-bucket.s3.us-west-2.amazonaws.com/alice.jpg';

const good: Record<string, unknown> = {
  minimal: { source_url: image, script: { type: 'text', input: 'Hello world!' } },
  microsoft: {
    source_url: image,
    script: { type: 'text', input: 'Hi there', provider: { type: 'microsoft', voice_id: 'en-US-JennyNeural', voice_config: { style: 'Cheerful', rate: '1.1', pitch: '+2st' }, language: 'English (United States)' }, ssml: false, subtitles: true },
  },
  elevenlabs: { source_url: image, script: { type: 'text', input: 'Hello there', provider: { type: 'elevenlabs', voice_id: '21m00Tcm4TlvDq8ikWAM', model_id: 'eleven_multilingual_v2', voice_config: { stability: 0.5, similarity_boost: 0.75, rate: '1.1', style: '0.3', use_speaker_boost: true } } } },
  amazon: { source_url: image, script: { type: 'text', input: 'Hello there', provider: { type: 'amazon', voice_id: 'Joanna' } } },
  google: { source_url: image, script: { type: 'text', input: 'Hello there', provider: { type: 'google', voice_id: 'en-US-Wavenet-D' } } },
  azure: { source_url: image, script: { type: 'text', input: 'Hello there', provider: { type: 'azure-openai', voice_id: 'alloy', voice_config: { rate: '1.0' } } } },
  ssml: { source_url: image, script: { type: 'text', ssml: true, input: '<speak>Hello <break time="1s"/> there</speak>', provider: { type: 'microsoft', voice_id: 'en-US-JennyNeural' } } },
  audio: { source_url: image, script: { type: 'audio', audio_url: 'https://example.com/voice.mp3?sig=abc', subtitles: false } },
  config: {
    source_url: image,
    script: { type: 'text', input: 'Hello there' },
    config: { stitch: true, result_format: 'mov', fluent: true, pad_audio: 1.5, driver_expressions: { expressions: [{ start_frame: 0, expression: 'happy', intensity: 0.8 }], transition_frames: 10 }, logo: { url: 'https://example.com/logo.png', position: [10, -10] } },
  },
  everything: { source_url: image, script: { type: 'text', input: 'Hello there' }, user_data: 'batch-row#1', name: 'greeting', webhook: 'https://hooks.example.com/did/abc', result_url: 's3://bucket/key.mp4' },
  // Issue 12: D-ID still documents these deprecated fields (they were "bad" before).
  'deprecated top-level fields': {
    source_url: image,
    script: { type: 'text', input: 'Hello' },
    driver_url: 'bank://lively',
    persist: true,
    face: { size: 512, top_left: [98, 119], overlap: 'NO', detection: { top: 224, left: 198, bottom: 552, right: 484 } },
  },
  'deprecated config keys': {
    source_url: image,
    script: { type: 'text', input: 'Hello' },
    config: { align_driver: true, align_expand_factor: 0.3, auto_match: true, motion_factor: 1, normalization_factor: 1, sharpen: true, output_resolution: 512 },
  },
};

const bad: Record<string, unknown> = {
  'input too short': { source_url: image, script: { type: 'text', input: 'Hi' } },
  'input too long': { source_url: image, script: { type: 'text', input: 'x'.repeat(40_001) } },
  'provider as a string': { source_url: image, script: { type: 'text', input: 'Hello', provider: 'microsoft' } },
  'microsoft without voice': { source_url: image, script: { type: 'text', input: 'Hello', provider: { type: 'microsoft' } } },
  'unknown amazon voice': { source_url: image, script: { type: 'text', input: 'Hello', provider: { type: 'amazon', voice_id: 'Zed' } } },
  'unknown provider': { source_url: image, script: { type: 'text', input: 'Hello', provider: { type: 'playht', voice_id: 'x' } } },
  'extra top-level field': { source_url: image, script: { type: 'text', input: 'Hello' }, driver: 'bank://lively' },
  'unknown config field': { source_url: image, script: { type: 'text', input: 'Hello' }, config: { motion: 1 } },
  'http webhook': { source_url: image, script: { type: 'text', input: 'Hello' }, webhook: 'http://hooks.example.com/x' },
  'multi-line user_data': { source_url: image, script: { type: 'text', input: 'Hello' }, user_data: 'a\nb' },
  'blank user_data': { source_url: image, script: { type: 'text', input: 'Hello' }, user_data: '   ' },
  'gif result': { source_url: image, script: { type: 'text', input: 'Hello' }, config: { result_format: 'gif' } },
  'pad_audio over 60': { source_url: image, script: { type: 'text', input: 'Hello' }, config: { pad_audio: 61 } },
  'image not an image': { source_url: 'https://example.com/face.gif', script: { type: 'text', input: 'Hello' } },
  'audio wrong extension': { source_url: image, script: { type: 'audio', audio_url: 'https://example.com/voice.ogg' } },
  'no script': { source_url: image },
  'elevenlabs rate out of range': { source_url: image, script: { type: 'text', input: 'Hello', provider: { type: 'elevenlabs', voice_config: { rate: '2.0' } } } },
  'logo with one coordinate': { source_url: image, script: { type: 'text', input: 'Hello' }, config: { logo: { url: 'https://example.com/l.png', position: [1] } } },
};

describe('CreateTalkRequest matches D-ID published schema', () => {
  it.each(Object.entries(good))('accepts %s in both', (_name, body) => {
    expect(validate(body).errors).toBe('');
    expect(CreateTalkRequest.safeParse(body).success).toBe(true);
  });

  it.each(Object.entries(bad))('rejects %s in both', (_name, body) => {
    expect(validate(body).ok).toBe(false);
    expect(CreateTalkRequest.safeParse(body).success).toBe(false);
  });
});

describe('D-ID\'s own example body (strings for booleans and numbers)', () => {
  // From D-ID's reference page; D-ID answered 201 to it.
  const seed = {
    source_url: image,
    script: { type: 'text', subtitles: 'false', provider: { type: 'microsoft', voice_id: 'Sara' }, input: 'Making videos is easy with D-ID', ssml: false },
    config: { fluent: 'false', pad_audio: '0.0' },
  };

  it('is accepted and parsed to the types D-ID declares, which the published schema accepts without coercion', () => {
    expect(validate(seed).ok).toBe(false);
    const parsed = CreateTalkRequest.parse(seed);
    expect(parsed.script).toMatchObject({ subtitles: false, ssml: false });
    expect(parsed.config).toEqual({ fluent: false, pad_audio: 0 });
    expect(validate(parsed).errors).toBe('');
  });

  it('still refuses text that is not a boolean or a number', () => {
    expect(CreateTalkRequest.safeParse({ ...seed, config: { fluent: 'maybe' } }).success).toBe(false);
    expect(CreateTalkRequest.safeParse({ ...seed, config: { pad_audio: 'ten' } }).success).toBe(false);
    expect(CreateTalkRequest.safeParse({ ...seed, config: { pad_audio: '61' } }).success).toBe(false);
  });
});
