import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { CreateTalkRequest } from '../../src/did/schemas.js';
import { readManifest, validateManifest, type ManifestOptions, type ManifestRow } from '../../src/manifest/index.js';

const GOOD = fileURLToPath(new URL('../../fixtures/manifests/good/', import.meta.url));
const PEOPLE_TEMPLATE = 'Hi {{ first_name }}, welcome to {{company|our team}}!';
const OPTIONS: Record<string, ManifestOptions> = {
  'people.csv': { template: PEOPLE_TEMPLATE },
  // Excel's "CSV" on Windows: nothing in the bytes says so, the user does.
  'excel-windows-1252.csv': { encoding: 'windows-1252' },
};

async function rowsOf(name: string): Promise<ManifestRow[]> {
  const rows: ManifestRow[] = [];
  for await (const record of readManifest(join(GOOD, name), OPTIONS[name] ?? {})) {
    if (record.ok !== true) throw new Error(`${name}: unexpected record ${JSON.stringify(record)}`);
    rows.push(record.row);
  }
  return rows;
}

function byKey(rows: ManifestRow[]): Map<string, ManifestRow> {
  return new Map(rows.map((row) => [row.rowKey, row]));
}

describe('good manifests', () => {
  const files = readdirSync(GOOD).sort();

  it('includes the fixtures the docs promise', () => {
    for (const name of ['people.csv', 'semicolon-bom.csv', 'tabs.tsv', 'multiline.csv', 'rows.json', 'wrapped.json', 'rows.jsonl', 'audio.csv', 'voices.csv', 'config.csv']) {
      expect(files).toContain(name);
    }
  });

  it.each(files)('%s validates with no issues and bodies D-ID accepts', async (name) => {
    const report = await validateManifest(join(GOOD, name), OPTIONS[name] ?? {});
    expect(report.issues).toEqual([]);
    expect(report.valid).toBe(report.rows - report.skippedEmpty);
    expect(report.valid).toBeGreaterThan(0);
    for (const row of await rowsOf(name)) {
      expect(() => CreateTalkRequest.parse(row.talk)).not.toThrow();
      expect(row.talk).not.toHaveProperty('user_data');
      expect(row.talk).not.toHaveProperty('webhook');
      expect(row.outputName).toMatch(/^[^/\\]+\.(mp4|mov)$/);
    }
  });

  it.each(['excel-unicode-text.txt', 'utf16be-bom.csv', 'excel-windows-1252.csv'])('%s: Excel\'s export reads as the text it holds', async (name) => {
    const report = await validateManifest(join(GOOD, name), OPTIONS[name] ?? {});
    expect(report).toMatchObject({ format: 'csv', rows: 2, valid: 2, issues: [], columns: ['id', 'first_name', 'last_name', 'image_url', 'script'] });
    const rows = await rowsOf(name);
    expect(rows.map((row) => row.line)).toEqual([2, 3]);
    expect(rows[0]?.input).toMatchObject({ id: 'jose', first_name: 'José', last_name: 'García' });
    expect(rows[0]?.talk.script).toEqual({ type: 'text', input: 'Hola José, tu plan cuesta 9 € al mes.' });
    expect(rows[1]?.input).toMatchObject({ first_name: 'Lena', last_name: 'Müller' });
    expect(rows[1]?.talk.script).toEqual({ type: 'text', input: 'Grüß dich, Lena Müller! Dein Gutschein: 5 €.' });
  });

  it('people.csv: template rendered per row, fallback for the empty company', async () => {
    const report = await validateManifest(join(GOOD, 'people.csv'), OPTIONS['people.csv']);
    expect(report).toMatchObject({ format: 'csv', rows: 5, valid: 5, skippedEmpty: 0, columns: ['id', 'first_name', 'company', 'image_url'] });
    const rows = await rowsOf('people.csv');
    expect(rows.map((row) => row.line)).toEqual([2, 3, 4, 5, 6]);
    expect(rows[0]).toMatchObject({
      rowKey: 'ana-01',
      outputName: 'ana-01.mp4',
      input: { id: 'ana-01', first_name: 'Ana', company: 'Acme', image_url: 'https://example.com/people/ana.png' },
      talk: { source_url: 'https://example.com/people/ana.png', script: { type: 'text', input: 'Hi Ana, welcome to Acme!' } },
    });
    expect(rows[4]?.talk.script).toEqual({ type: 'text', input: 'Hi Eli, welcome to our team!' });
    expect(rows[3]?.talk.source_url).toBe('s3://my-bucket/people/dev.jpg');
    // "Hi Ana, welcome to Acme!" is 24 characters: 24 / 14 = 1.7 s.
    expect(rows[0]?.estimatedSeconds).toBe(1.7);
    expect(report.estimatedSeconds).toBe(Math.round(rows.reduce((sum, row) => sum + (row.estimatedSeconds ?? 0), 0) * 10) / 10);
  });

  it('semicolon-bom.csv: BOM stripped, ";" detected, headers normalised, decimal comma', async () => {
    const report = await validateManifest(join(GOOD, 'semicolon-bom.csv'));
    expect(report.columns).toEqual(['id', 'first_name', 'image_url', 'script', 'pad_audio']);
    const rows = await rowsOf('semicolon-bom.csv');
    expect(rows[0]?.input.first_name).toBe('Jonas');
    expect(rows[0]?.talk.script).toEqual({ type: 'text', input: 'Hallo Jonas; schön, dich zu sehen.' });
    expect(rows[0]?.talk.config).toEqual({ pad_audio: 0.5 });
    expect(rows[1]?.input.first_name).toBe('Léa');
  });

  it('tabs.tsv: tab delimiter, commas kept inside cells', async () => {
    const rows = await rowsOf('tabs.tsv');
    expect(rows[1]?.talk.script).toEqual({
      type: 'text',
      input: 'Hello Ben, commas, are fine here.',
      provider: { type: 'microsoft', voice_id: 'en-GB-RyanNeural' },
    });
  });

  it('multiline.csv: quoted line breaks kept, each row reports the line it starts on', async () => {
    const rows = await rowsOf('multiline.csv');
    expect(rows.map((row) => [row.rowKey, row.line])).toEqual([
      ['m1', 2],
      ['m2', 5],
      ['m3', 7],
    ]);
    expect(rows[0]?.talk.script).toMatchObject({ input: 'Hi Ana,\nthis script spans\nthree lines.' });
    expect(rows[1]?.talk.script).toMatchObject({ input: 'He said "hello" twice.' });
  });

  it('rows.json: object start lines, camelCase keys, numbers and booleans, nested config', async () => {
    const report = await validateManifest(join(GOOD, 'rows.json'));
    expect(report.format).toBe('json');
    const rows = byKey(await rowsOf('rows.json'));
    expect(rows.get('j1')).toMatchObject({
      line: 2,
      input: { stitch: 'true', pad_audio: '1.5' },
      talk: { config: { stitch: true, pad_audio: 1.5 }, script: { provider: { type: 'microsoft', voice_id: 'en-US-JennyNeural' } } },
    });
    expect(rows.get('j2')).toMatchObject({ line: 10, talk: { source_url: 'https://example.com/people/ben.png', script: { subtitles: false } } });
    expect(rows.get('3')).toMatchObject({
      line: 11,
      outputName: '3.mov',
      talk: {
        config: { fluent: true, result_format: 'mov' },
        script: { provider: { type: 'elevenlabs', voice_config: { stability: 0.4, use_speaker_boost: true } } },
      },
    });
  });

  it('wrapped.json: {"rows": [...]}', async () => {
    const rows = await rowsOf('wrapped.json');
    expect(rows.map((row) => [row.rowKey, row.line])).toEqual([
      ['w1', 3],
      ['w2', 4],
    ]);
  });

  it('rows.jsonl: physical line numbers, blank lines skipped, mixed text and audio', async () => {
    const rows = await rowsOf('rows.jsonl');
    expect(rows.map((row) => [row.rowKey, row.line])).toEqual([
      ['l1', 1],
      ['l2', 3],
      ['l3', 4],
    ]);
    expect(rows[1]?.talk.script).toMatchObject({ provider: { type: 'amazon', voice_id: 'Joanna' } });
    expect(rows[2]).toMatchObject({ estimatedSeconds: null, talk: { script: { type: 'audio', audio_url: 'https://example.com/audio/cleo.mp3' } } });
  });

  it('audio.csv: audio scripts with subtitles, no estimate', async () => {
    const rows = await rowsOf('audio.csv');
    expect(rows.map((row) => row.talk.script)).toEqual([
      { type: 'audio', audio_url: 'https://example.com/audio/ana.mp3', subtitles: true },
      { type: 'audio', audio_url: 's3://my-bucket/audio/ben.wav', subtitles: false },
      { type: 'audio', audio_url: 'https://example.com/audio/cleo.m4a?sig=abc123&exp=99' },
    ]);
    expect(rows.every((row) => row.estimatedSeconds === null)).toBe(true);
    expect((await validateManifest(join(GOOD, 'audio.csv'))).estimatedSeconds).toBe(0);
  });

  it('voices.csv: one provider per row', async () => {
    const rows = byKey(await rowsOf('voices.csv'));
    const provider = (key: string): unknown => {
      const script = rows.get(key)?.talk.script;
      return script?.type === 'text' ? script.provider : undefined;
    };
    expect(provider('v-ms')).toEqual({
      type: 'microsoft',
      voice_id: 'en-US-JennyNeural',
      language: 'English (United States)',
      voice_config: { style: 'cheerful', rate: '1.1', pitch: '+2st' },
    });
    expect(provider('v-default')).toEqual({ type: 'microsoft', voice_id: 'en-US-GuyNeural' });
    expect(provider('v-11')).toEqual({
      type: 'elevenlabs',
      voice_id: '21m00Tcm4TlvDq8ikWAM',
      model_id: 'eleven_multilingual_v2',
      voice_config: { rate: '0.9', stability: 0.5, similarity_boost: 0.75 },
    });
    expect(provider('v-amz')).toEqual({ type: 'amazon', voice_id: 'Joanna' });
    expect(provider('v-goog')).toEqual({ type: 'google', voice_id: 'en-US-Wavenet-D' });
    expect(provider('v-aoai')).toEqual({ type: 'azure-openai', voice_id: 'en-US-AndrewMultilingualNeural', voice_config: { pitch: '-10%' } });
    expect(provider('v-none')).toBeUndefined();
  });

  it('config.csv: booleans in any spelling, mov, pad_audio, subtitles, names', async () => {
    const rows = byKey(await rowsOf('config.csv'));
    expect(rows.get('c1')).toMatchObject({
      outputName: 'Ana intro.mp4',
      talk: { config: { stitch: true, fluent: true, result_format: 'mp4', pad_audio: 0 }, script: { subtitles: true } },
    });
    expect(rows.get('c2')).toMatchObject({
      outputName: 'c2.mov',
      talk: { config: { stitch: false, fluent: false, result_format: 'mov', pad_audio: 60 }, script: { subtitles: false } },
    });
    expect(rows.get('c3')?.outputName).toBe('cleo-final.mp4');
    expect(rows.get('c3')?.talk).not.toHaveProperty('config');
  });
});
