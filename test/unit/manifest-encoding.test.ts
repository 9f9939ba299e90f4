import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { bomEncoding, encodingName, resolveEncoding, utf16WithoutBom } from '../../src/manifest/encoding.js';
import { readManifest, validateManifest, type ManifestOptions, type ManifestRow } from '../../src/manifest/index.js';

const dir = mkdtempSync(join(tmpdir(), 'talkbatch-encoding-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const GOOD = fileURLToPath(new URL('../../fixtures/manifests/good/', import.meta.url));
const BAD = fileURLToPath(new URL('../../fixtures/manifests/bad/', import.meta.url));

const IMG = 'https://example.com/people/ana.png';
let counter = 0;
function file(name: string, content: Buffer | string): string {
  const path = join(dir, `${++counter}-${name}`);
  writeFileSync(path, content);
  return path;
}

async function rows(path: string, options: ManifestOptions = {}): Promise<ManifestRow[]> {
  const out: ManifestRow[] = [];
  for await (const record of readManifest(path, options)) {
    if (record.ok !== true) throw new Error(`unexpected record ${JSON.stringify(record)}`);
    out.push(record.row);
  }
  return out;
}

const utf16le = (text: string): Buffer => Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(text, 'utf16le')]);

describe('encoding decisions', () => {
  it('a byte-order mark names the encoding, and wins over the option', () => {
    expect(bomEncoding(Buffer.from([0xff, 0xfe, 0x61, 0x00]))).toBe('utf-16le');
    expect(bomEncoding(Buffer.from([0xfe, 0xff, 0x00, 0x61]))).toBe('utf-16be');
    expect(bomEncoding(Buffer.from([0xef, 0xbb, 0xbf, 0x61]))).toBe('utf-8');
    expect(bomEncoding(Buffer.from('id,'))).toBeUndefined();
    expect(resolveEncoding(Buffer.from([0xff, 0xfe, 0x61, 0x00]), 'windows-1252')).toEqual({ encoding: 'utf-16le', from: 'bom' });
    expect(resolveEncoding(Buffer.from('id,name\n'), undefined)).toEqual({ encoding: 'utf-8', from: 'default' });
    expect(resolveEncoding(Buffer.from('id,name\n'), 'CP1252')).toEqual({ encoding: 'windows-1252', from: 'option' });
  });

  it('UTF-16 without a BOM is recognised by its zero bytes, unless the option says UTF-16', () => {
    const le = Buffer.from('id,image_url,script\n', 'utf16le');
    expect(utf16WithoutBom(le)).toBe('utf-16le');
    expect(utf16WithoutBom(Buffer.from(le).swap16())).toBe('utf-16be');
    expect(utf16WithoutBom(Buffer.from('id,image_url,script\nJosé,Müller\n'))).toBeUndefined();
    expect(resolveEncoding(le, undefined)).toEqual({ problem: expect.stringContaining('pass --encoding utf-16le') as unknown });
    expect(resolveEncoding(le, 'utf-16le')).toEqual({ encoding: 'utf-16le', from: 'option' });
  });

  it('knows encodings by any common spelling and refuses unknown ones', () => {
    expect(encodingName('UTF_16LE')).toBe('utf-16le');
    expect(encodingName('Windows-1252')).toBe('windows-1252');
    expect(encodingName('latin1')).toBe('latin1');
    expect(encodingName('klingon')).toBeUndefined();
    expect(encodingName('')).toBeUndefined();
  });
});

describe('reading other encodings', () => {
  it('an unknown encoding option is refused before the file is read', async () => {
    await expect(validateManifest(join(GOOD, 'people.csv'), { encoding: 'klingon' })).rejects.toMatchObject({
      issues: [{ line: 0, column: 'encoding', message: 'unknown encoding "klingon" (use utf-8, utf-16le, utf-16be, windows-1252, iso-8859-15, ...)' }],
    });
  });

  it('windows-1252 without the option stops at the line and byte, offering --encoding windows-1252', async () => {
    const report = await validateManifest(join(BAD, 'excel-windows-1252.csv'));
    expect(report.issues).toHaveLength(1);
    expect(report.issues[0]).toMatchObject({ line: 2 });
    expect(report.issues[0]?.message).toContain('byte 0xE9');
    expect(report.issues[0]?.message).toContain('--encoding windows-1252');
  });

  it('UTF-16 without a BOM reads when asked for by name', async () => {
    const path = file('no-bom.csv', Buffer.from(`id,image_url,script\na,${IMG},Grüß dich €\n`, 'utf16le'));
    expect((await validateManifest(path)).issues[0]?.message).toContain('without a byte-order mark');
    expect((await rows(path, { encoding: 'utf-16le' }))[0]?.talk.script).toEqual({ type: 'text', input: 'Grüß dich €' });
  });

  it('JSON and JSONL in UTF-16 and windows-1252 read too', async () => {
    const json = file('rows.json', utf16le(JSON.stringify([{ id: 'a', image_url: IMG, script: 'Hola José €' }])));
    expect((await rows(json))[0]?.talk.script).toEqual({ type: 'text', input: 'Hola José €' });
    const jsonl = file('rows.jsonl', Buffer.from(`{"id":"a","image_url":"${IMG}","script":"M\xfcller \x80"}\n`, 'latin1'));
    expect((await validateManifest(jsonl)).issues[0]?.message).toContain('--encoding windows-1252');
    expect((await rows(jsonl, { encoding: 'windows-1252' }))[0]?.talk.script).toEqual({ type: 'text', input: 'Müller €' });
  });

  it('streams a large UTF-16 file whose characters straddle read chunks', async () => {
    const line = (i: number): string => `r${i}\t${IMG}\t${'é😀ü€'.repeat(40)} ${i}`;
    const text = `id\timage_url\tscript\r\n${Array.from({ length: 3000 }, (_, i) => line(i)).join('\r\n')}\r\n`;
    const path = file('big.txt', utf16le(text));
    const report = await validateManifest(path);
    expect(report).toMatchObject({ rows: 3000, valid: 3000, issues: [] });
    const read = await rows(path);
    expect(read[2999]?.talk.script).toEqual({ type: 'text', input: `${'é😀ü€'.repeat(40)} 2999` });
    expect(read[2999]?.line).toBe(3001);
  });

  it('an encoding given for a workbook is reported, not silently ignored', async () => {
    const report = await validateManifest(join(GOOD, 'people.xlsx'), { encoding: 'windows-1252', template: 'Hi {{first_name}}' });
    expect(report.issues).toMatchObject([{ line: 1, column: 'encoding', message: expect.stringContaining('encoding applies to CSV, JSON and JSONL') as unknown }]);
  });
});
