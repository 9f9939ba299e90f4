import { mkdtempSync, mkdirSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  ManifestError,
  readManifest,
  validateManifest,
  type ManifestOptions,
  type ManifestRecord,
  type ManifestRow,
} from '../../src/manifest/index.js';

const dir = mkdtempSync(join(tmpdir(), 'talkbatch-manifest-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const IMG = 'https://example.com/people/ana.png';
let counter = 0;
function file(name: string, content: string | Buffer): string {
  const path = join(dir, `${++counter}-${name}`);
  writeFileSync(path, content);
  return path;
}

async function records(path: string, options: ManifestOptions = {}): Promise<ManifestRecord[]> {
  const out: ManifestRecord[] = [];
  for await (const record of readManifest(path, options)) out.push(record);
  return out;
}

async function rows(path: string, options: ManifestOptions = {}): Promise<ManifestRow[]> {
  return (await records(path, options)).flatMap((record) => (record.ok === true ? [record.row] : []));
}

describe('line numbers', () => {
  it('CSV with CRLF, blank lines and CRLF inside quoted cells', async () => {
    const path = file('crlf.csv', `\r\n\r\nid,image_url,script\r\na,${IMG},"one\r\ntwo\r\nthree"\r\n\r\nb,${IMG},plain\r\n   \r\nc,${IMG},"x\ny"\r\n`);
    const got = await rows(path);
    expect(got.map((row) => [row.rowKey, row.line])).toEqual([
      ['a', 4],
      ['b', 8],
      ['c', 10],
    ]);
    expect(got[0]?.talk.script).toMatchObject({ input: 'one\r\ntwo\r\nthree' });
    const bad = file('crlf-bad.csv', `id,image_url,script\r\na,${IMG},"one\r\ntwo"\r\nb,http://x.png,ok ok\r\n`);
    expect((await validateManifest(bad)).issues.map((issue) => issue.line)).toEqual([4]);
  });

  it('a file without a final line break', async () => {
    const got = await rows(file('no-eol.csv', `id,image_url,script\na,${IMG},Hello\nb,${IMG},Hello again`));
    expect(got.map((row) => row.line)).toEqual([2, 3]);
  });

  it('empty rows are skipped and counted, with their lines', async () => {
    const path = file('empty-rows.csv', `id,image_url,script\n,,\na,${IMG},Hello\n , ,\n`);
    expect(await records(path)).toMatchObject([{ ok: 'empty', line: 2 }, { ok: true, row: { line: 3 } }, { ok: 'empty', line: 4 }]);
    expect(await validateManifest(path)).toMatchObject({ rows: 3, valid: 1, skippedEmpty: 2, issues: [] });
  });

  it('a UTF-8 error deep in a large file names its line; rows before it are still read', async () => {
    const good = Array.from({ length: 3000 }, (_, i) => `r${i},${IMG},Grüße und 😀 für Zeile ${i}`).join('\n');
    const path = file('late-bad.csv', Buffer.concat([Buffer.from(`id,image_url,script\n${good}\nbad,${IMG},caf`), Buffer.from([0xe9, 0x0a])]));
    const report = await validateManifest(path);
    expect(report.valid).toBe(3000);
    expect(report.issues).toMatchObject([{ line: 3002, message: expect.stringContaining('not valid UTF-8 (byte 0xE9)') as unknown }]);
  });

  it('multi-byte characters split across read chunks are fine', async () => {
    const line = (i: number): string => `r${i},${IMG},${'é😀ü✓'.repeat(40)} ${i}`;
    const path = file('multibyte.csv', `id,image_url,script\n${Array.from({ length: 2000 }, (_, i) => line(i)).join('\n')}\n`);
    expect(await validateManifest(path)).toMatchObject({ rows: 2000, valid: 2000, issues: [] });
  });
});

describe('headers', () => {
  it('tolerates trailing unnamed columns (spreadsheet exports) and extra empty cells', async () => {
    const path = file('trailing.csv', `Id,Photo,Text,,\na,${IMG},Hello there,,\nb,${IMG},Hello again,,,\n`);
    const report = await validateManifest(path);
    expect(report).toMatchObject({ valid: 2, issues: [], columns: ['id', 'image_url', 'script'] });
  });

  it('keeps unknown columns in input as template variables', async () => {
    const path = file('vars.csv', `id,image_url,Favourite Colour\na,${IMG},green\n`);
    const [row] = await rows(path, { template: 'I hear you like {{favourite colour}}.' });
    expect(row?.input).toEqual({ id: 'a', image_url: IMG, favourite_colour: 'green' });
    expect(row?.talk.script).toMatchObject({ input: 'I hear you like green.' });
  });
});

describe('defaults and options', () => {
  it('defaults fill empty cells and row cells win', async () => {
    const path = file('defaults.csv', `id,image_url,script,voice,stitch\na,,Hello there,,\nb,${IMG},Hello there,en-GB-RyanNeural,false\n`);
    const options: ManifestOptions = {
      defaults: {
        imageUrl: 'https://example.com/default.jpg',
        voice: 'en-US-JennyNeural',
        language: 'English',
        config: { stitch: true, fluent: true },
        subtitles: true,
      },
    };
    const [a, b] = await rows(path, options);
    expect(a?.talk).toEqual({
      source_url: 'https://example.com/default.jpg',
      script: { type: 'text', input: 'Hello there', subtitles: true, provider: { type: 'microsoft', voice_id: 'en-US-JennyNeural', language: 'English' } },
      config: { stitch: true, fluent: true },
    });
    expect(b?.talk).toMatchObject({ source_url: IMG, config: { stitch: false, fluent: true }, script: { provider: { voice_id: 'en-GB-RyanNeural' } } });
  });

  it('a default image makes the image_url column optional', async () => {
    const path = file('no-image.csv', 'id,script\na,Hello there\n');
    expect((await validateManifest(path)).issues[0]?.message).toMatch(/^no image_url column/);
    expect(await validateManifest(path, { defaults: { imageUrl: IMG } })).toMatchObject({ valid: 1, issues: [] });
  });

  it('a row provider other than the default provider does not borrow the default voice', async () => {
    const path = file('provider.csv', `id,image_url,script,provider\na,${IMG},Hello there,amazon\nb,${IMG},Hello there,google\n`);
    const report = await validateManifest(path, { defaults: { voice: 'en-US-JennyNeural' } });
    expect(report.issues).toMatchObject([{ line: 2, column: 'voice', message: 'provider amazon needs a voice (e.g. Joanna)' }]);
    expect(report.valid).toBe(1);
  });

  it('SSML: values escaped, ssml flag set, tags not counted in the estimate', async () => {
    const path = file('ssml.csv', `id,image_url,company,ssml\na,${IMG},Smith & Sons,yes\n`);
    const [row] = await rows(path, { template: '<speak>Welcome to {{company}}<break time="1s"/></speak>' });
    expect(row?.talk.script).toEqual({ type: 'text', ssml: true, input: '<speak>Welcome to Smith &amp; Sons<break time="1s"/></speak>' });
    expect(row?.estimatedSeconds).toBe(Math.round(('Welcome to Smith &amp; Sons'.length / 14) * 10) / 10);
  });

  it('name template: values sanitised, name cell wins, missing variables reported', async () => {
    const path = file('names.csv', `id,image_url,script,company,first_name,name\na,${IMG},Hello there,AT&T / Labs,Ana,\nb,${IMG},Hello there,Acme,Ben,custom\nc,${IMG},Hello there,,Cleo,\n`);
    const report = await validateManifest(path, { nameTemplate: '{{company}} - {{first_name}}' });
    expect(report.issues).toMatchObject([{ line: 4, column: 'company', message: 'name template variable "company" is empty (add a fallback: {{company|...}})' }]);
    const got = await rows(path, { nameTemplate: '{{company|nobody}} - {{first_name}}' });
    expect(got.map((row) => row.outputName)).toEqual(['AT&T - Labs - Ana.mp4', 'custom.mp4', 'nobody - Cleo.mp4']);
  });

  it('without an id the row key names the file', async () => {
    const [row] = await rows(file('keyed.csv', `image_url,script\n${IMG},Hello there\n`));
    expect(row?.rowKey).toMatch(/^r[0-9a-f]{16}$/);
    expect(row?.outputName).toBe(`${row?.rowKey ?? ''}.mp4`);
  });

  it('the script cell wins over the template, audio_url over the template', async () => {
    const path = file('precedence.csv', `id,image_url,script,audio_url\na,${IMG},Literal text,\nb,${IMG},,https://example.com/b.mp3\n`);
    const got = await rows(path, { template: 'From the template' });
    expect(got.map((row) => row.talk.script.type === 'text' ? row.talk.script.input : 'audio_url' in row.talk.script ? row.talk.script.audio_url : undefined)).toEqual([
      'Literal text',
      'https://example.com/b.mp3',
    ]);
  });

  it('short scripts are estimated at one second at least', async () => {
    const [row] = await rows(file('short.csv', `id,image_url,script\na,${IMG},Hey\n`));
    expect(row?.estimatedSeconds).toBe(1);
  });
});

describe('file-level problems', () => {
  it('throws ManifestError when nothing can be read', async () => {
    await expect(validateManifest(join(dir, 'missing.csv'))).rejects.toBeInstanceOf(ManifestError);
    await expect(validateManifest(join(dir, 'missing.csv'))).rejects.toMatchObject({ issues: [{ line: 0, message: 'file not found' }] });
    const folder = join(dir, 'folder.csv');
    mkdirSync(folder);
    await expect(validateManifest(folder)).rejects.toMatchObject({ code: 'MANIFEST_INVALID', issues: [{ message: 'not a file' }] });
  });

  it('throws ManifestError for bad defaults', async () => {
    const path = file('ok.csv', `id,image_url,script\na,${IMG},Hello there\n`);
    await expect(validateManifest(path, { defaults: { imageUrl: 'http://example.com/a.jpg' } })).rejects.toMatchObject({
      issues: [{ column: 'defaults.imageUrl', message: 'must use https:// (http:// is not allowed)' }],
    });
  });

  it('readManifest yields file-level problems as records', async () => {
    const path = file('header-only.csv', 'id,image_url,script\n');
    expect(await records(path)).toEqual([{ ok: false, line: 1, issues: [{ file: path, line: 1, message: 'no data rows' }] }]);
  });

  it('refuses JSON over 50 MB with a pointer to JSONL', async () => {
    const path = file('huge.json', '[');
    truncateSync(path, 51 * 1024 * 1024); // sparse: nothing is written
    expect((await validateManifest(path)).issues).toMatchObject([{ line: 1, message: 'JSON file is larger than 50 MB; use JSONL (one object per line) for big batches' }]);
  });

  it('JSONL: a template column no row has is reported on line 1 after the rows', async () => {
    const path = file('t.jsonl', `{"id":"a","image_url":"${IMG}","first_name":"Ana"}\n`);
    const report = await validateManifest(path, { template: 'Hi {{frist_name}}' });
    expect(report.issues).toMatchObject([
      { line: 1, column: 'template', message: 'template uses {{frist_name}} but the sheet has no such column (did you mean first_name?)' },
      { line: 1, column: 'frist_name', message: 'template variable "frist_name" is empty (add a fallback: {{frist_name|...}})' },
    ]);
    expect(report.columns).toEqual(['id', 'image_url', 'first_name']);
  });

  it('format option overrides the extension', async () => {
    const path = file('rows.txt', `{"id":"a","image_url":"${IMG}","script":"Hello there"}\n`);
    expect(await validateManifest(path, { format: 'jsonl' })).toMatchObject({ format: 'jsonl', valid: 1, issues: [] });
  });
});
