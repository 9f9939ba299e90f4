import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { readManifest, type ManifestOptions, type ManifestRow } from '../../src/manifest/index.js';
import { createTalkBody, JobPayloadV1, talkTagFor } from '../../src/queue/payload.js';
import { didCreateTalkValidator } from '../helpers/openapi.js';

/*
 * The contract: for every fixture row, the request talkbatch would send (row -> job payload -> POST /talks body,
 * with talkbatch's user_data tag) is valid against D-ID's published schema, checked without type coercion.
 */

const validate = didCreateTalkValidator();
const FIXTURES = fileURLToPath(new URL('../../fixtures/manifests/', import.meta.url));
const OPTIONS: Record<string, ManifestOptions> = {
  'people.csv': { template: 'Hi {{ first_name }}, welcome to {{company|our team}}!' },
  'excel-windows-1252.csv': { encoding: 'windows-1252' },
};
const LONGEST_JOB_ID = `${'b'.repeat(80)}-${'r'.repeat(100)}`;

async function rowsOf(path: string, options: ManifestOptions): Promise<ManifestRow[]> {
  const rows: ManifestRow[] = [];
  for await (const record of readManifest(path, options)) if (record.ok === true) rows.push(record.row);
  return rows;
}

const files = ['good', 'did'].flatMap((folder) => readdirSync(join(FIXTURES, folder)).sort().map((name) => ({ folder, name })));

describe('every fixture row builds a request D-ID\'s published schema accepts', () => {
  it.each(files)('$folder/$name', async ({ folder, name }) => {
    const rows = await rowsOf(join(FIXTURES, folder, name), OPTIONS[name] ?? {});
    expect(rows.length).toBeGreaterThan(0);
    for (const row of rows) {
      // The row travels as a job payload (JSON in Redis), which a worker parses again.
      const payload = JobPayloadV1.parse(JSON.parse(JSON.stringify({ v: 1, batchId: 'b', rowKey: row.rowKey, talk: row.talk, output: { name: row.outputName } })));
      for (const tag of [talkTagFor('b-x', 0), talkTagFor(LONGEST_JOB_ID, 999_999)]) {
        const body = createTalkBody(payload.talk, tag, 'https://talkbatch.example.com/webhooks/did/job/token');
        expect(validate(body).errors, `${name} line ${row.line}`).toBe('');
      }
    }
  });

  it('sends every D-ID field of all-fields.json, in the types D-ID declares', async () => {
    const [row] = await rowsOf(join(FIXTURES, 'did', 'all-fields.json'), {});
    expect(row?.talk).toEqual({
      source_url: 'https://d-id-public-bucket.s3.us-west-2.amazonaws.com/alice.jpg',
      name: 'every-field',
      script: {
        type: 'text',
        input: 'Making videos is easy with D-ID',
        subtitles: false,
        provider: {
          type: 'elevenlabs',
          voice_id: '21m00Tcm4TlvDq8ikWAM',
          model_id: 'eleven_multilingual_v2',
          language: 'English (United States)',
          voice_config: { stability: 0.5, similarity_boost: 0.75, rate: '1.1', style: '0.3', use_speaker_boost: true, apply_language_text_normalization: false },
        },
      },
      config: {
        fluent: false,
        pad_audio: 0,
        stitch: true,
        result_format: 'mp4',
        logo: { url: 'https://example.com/logo.png', position: [0, 500] },
        driver_expressions: { expressions: [{ start_frame: 0, expression: 'happy', intensity: 0.8 }], transition_frames: 10 },
        align_driver: true,
        align_expand_factor: 0.3,
        auto_match: true,
        motion_factor: 1,
        normalization_factor: 1,
        sharpen: false,
        output_resolution: 512,
      },
      face: { size: 512, top_left: [98, 119], overlap: 'NO' },
      driver_url: 'bank://natural/',
      persist: true,
      result_url: 's3://my-bucket/talks/',
      webhook: 'https://hooks.example.com/talks',
      user_data: 'crm-4711',
    });
  });

  it('takes the same fields as bare columns and JSON text cells of a CSV', async () => {
    const [row] = await rowsOf(join(FIXTURES, 'did', 'all-fields.csv'), {});
    expect(row?.talk).toMatchObject({
      name: 'sheet-one',
      script: { type: 'text', subtitles: false, provider: { type: 'microsoft', voice_id: 'en-US-JennyNeural', voice_config: { style: 'Cheerful', rate: '1.1', pitch: '+2st' } } },
      config: { stitch: false, fluent: false, pad_audio: 0, align_driver: true, align_expand_factor: 0.3, output_resolution: 512, logo: { position: [0, 500] } },
      face: { size: 512, top_left: [98, 119] },
      persist: true,
      user_data: 'crm-0815',
    });
  });
});
