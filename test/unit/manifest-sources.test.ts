import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import ExcelJS from 'exceljs';
import { beforeAll, describe, expect, it } from 'vitest';
import { manifestArgs } from '../../src/cli/manifest-flags.js';
import {
  ManifestError,
  formatIssue,
  openManifest,
  readManifest,
  redactUrl,
  validateManifest,
  type ManifestOptions,
  type ManifestRecord,
  type ManifestRow,
} from '../../src/manifest/index.js';
import { loadJobFile, mergeManifestOptions } from '../../src/manifest/job-file.js';
import { cellText, dateText, numberText } from '../../src/manifest/xlsx.js';

const IMG = 'https://example.com/people/ana.png';
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tb-sources-'));
});

async function file(name: string, content: string): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, content);
  return path;
}

async function records(source: string, options: ManifestOptions = {}): Promise<ManifestRecord[]> {
  const out: ManifestRecord[] = [];
  for await (const record of readManifest(source, options)) out.push(record);
  return out;
}

async function rows(source: string, options: ManifestOptions = {}): Promise<ManifestRow[]> {
  return (await records(source, options)).flatMap((record) => (record.ok === true ? [record.row] : []));
}

describe('xlsx cell values', () => {
  it('numbers without float noise, dates as ISO dates, times of day', () => {
    expect(numberText(0.1 + 0.2)).toBe('0.3');
    expect(numberText(42)).toBe('42');
    expect(numberText(-1.5)).toBe('-1.5');
    expect(numberText(12345678901234)).toBe('12345678901234');
    expect(dateText(new Date(Date.UTC(2026, 10, 25)))).toBe('2026-11-25');
    expect(dateText(new Date(Date.UTC(2026, 10, 25, 9, 30)))).toBe('2026-11-25T09:30:00');
    expect(dateText(new Date(Date.UTC(1899, 11, 30, 9, 30)))).toBe('09:30');
    expect(dateText(new Date(Date.UTC(1899, 11, 30, 9, 30, 15)))).toBe('09:30:15');
  });

  it('formulas give their saved result, rich text and links their text; errors and missing results are problems', () => {
    expect(cellText({ formula: 'A1*2', result: 0.30000000000000004 })).toEqual({ text: '0.3' });
    expect(cellText({ sharedFormula: 'B2', result: 'Hi' })).toEqual({ text: 'Hi' });
    expect(cellText({ richText: [{ text: 'He' }, { text: 'llo', font: { bold: true } }] })).toEqual({ text: 'Hello' });
    expect(cellText({ text: { richText: [{ text: 'link' }] }, hyperlink: 'https://x.example' })).toEqual({ text: 'link' });
    expect(cellText(true)).toEqual({ text: 'true' });
    expect(cellText({ error: '#N/A' })).toEqual({ problem: 'holds the error #N/A' });
    expect(cellText({ formula: 'A1', result: { error: '#REF!' } })).toEqual({ problem: 'holds the error #REF!' });
    expect(cellText({ formula: 'A1' })).toMatchObject({ problem: expect.stringMatching(/^is a formula with no saved result/) });
  });
});

describe('xlsx manifests', () => {
  let book: string;
  beforeAll(async () => {
    const workbook = new ExcelJS.Workbook();
    const people = workbook.addWorksheet('People');
    // Row 1 blank, header on row 2, a spacer column (D), an all-blank row (5), and problems on rows 7-9.
    people.getRow(2).values = ['ID', 'First Name', 'Photo', '', 'Joined', 'Score'];
    people.getRow(3).values = ['ana', 'Ana', IMG, '', new Date(Date.UTC(2026, 0, 15)), 0.1 + 0.2];
    people.getRow(4).values = ['bo', { richText: [{ text: 'B' }, { text: 'o' }] }, { text: IMG, hyperlink: IMG }, '', new Date(Date.UTC(2026, 1, 2, 9, 30)), { formula: '2*21', result: 42 }];
    people.getRow(5).values = ['', ' '];
    people.getRow(6).values = ['chen', 'Chen', IMG, '', '', 7];
    people.getRow(7).values = ['dara', 'Dara', IMG, '', { formula: 'NOW()' }, 1];
    people.getRow(8).values = ['eli', 'Eli', IMG, 'stray', '', 2];
    people.getRow(9).values = ['fay', 'Fay', IMG, '', '', 3, 'past the header'];
    const other = workbook.addWorksheet('Second Sheet');
    other.getRow(1).values = ['id', 'image_url', 'script'];
    other.getRow(2).values = ['x1', IMG, 'Hello from the second sheet'];
    book = join(dir, 'people.xlsx');
    await workbook.xlsx.writeFile(book);
  });

  it('reads the first sheet: sheet row numbers, cell column numbers, values as people see them', async () => {
    const template = 'Hi {{first_name}}, you joined on {{joined|a day}} with score {{score}}.';
    const report = await validateManifest(book, { template });
    expect(report).toMatchObject({ format: 'xlsx', rows: 7, valid: 3, skippedEmpty: 1, columns: ['id', 'first_name', 'image_url', 'joined', 'score'] });
    expect(report.issues.map((issue) => ({ line: issue.line, columnNumber: issue.columnNumber, message: issue.message }))).toEqual([
      { line: 7, columnNumber: 5, message: 'cell E7 is a formula with no saved result (open the workbook in Excel or LibreOffice and save it again)' },
      { line: 8, columnNumber: 4, message: 'cell "stray" is in a column with no header' },
      { line: 9, columnNumber: 7, message: 'cell "past the header" is in a column with no header' },
    ]);
    expect(formatIssue(report.issues[0] as never)).toBe(`${book}:7:5: cell E7 is a formula with no saved result (open the workbook in Excel or LibreOffice and save it again)`);
    const [ana, bo, chen] = await rows(book, { template });
    expect(ana).toMatchObject({ line: 3, rowKey: 'ana', input: { joined: '2026-01-15', score: '0.3' } });
    expect(ana?.talk.script).toEqual({ type: 'text', input: 'Hi Ana, you joined on 2026-01-15 with score 0.3.' });
    expect(bo).toMatchObject({ line: 4, input: { first_name: 'Bo', image_url: IMG, joined: '2026-02-02T09:30:00', score: '42' } });
    expect(chen?.talk.script).toEqual({ type: 'text', input: 'Hi Chen, you joined on a day with score 7.' });
  });

  it('--sheet picks a sheet by name (case-insensitive) and suggests the closest one', async () => {
    expect(await validateManifest(book, { sheet: 'second sheet' })).toMatchObject({ valid: 1, issues: [] });
    const report = await validateManifest(book, { sheet: 'Second Shet' });
    expect(report.issues).toMatchObject([{ line: 1, column: 'sheet', message: 'no sheet named "Second Shet" (did you mean "Second Sheet"?); the workbook has "People", "Second Sheet"' }]);
  });

  it('a sheet option on a CSV file is reported', async () => {
    const csv = await file('sheet-on-csv.csv', `id,image_url,script\na,${IMG},Hello there\n`);
    expect((await validateManifest(csv, { sheet: 'People' })).issues).toMatchObject([{ column: 'sheet', message: 'sheet applies to .xlsx workbooks only (this is csv)' }]);
  });

  it('a workbook without the .xlsx name is recognised by its first bytes', async () => {
    const { copyFile } = await import('node:fs/promises');
    const unnamed = join(dir, 'export-from-a-tool');
    await copyFile(book, unnamed);
    expect(await validateManifest(unnamed, { sheet: 'Second Sheet' })).toMatchObject({ format: 'xlsx', valid: 1 });
  });
});

describe('column map', () => {
  const sheet = `Customer ID,Given Name,Headshot,Message Text\nc1,Ana,${IMG},Hello Ana & co\nc2,Bo,${IMG},\n`;

  it('maps talkbatch fields to other headers; templates may use either name', async () => {
    const path = await file('mapped.csv', sheet);
    const options: ManifestOptions = {
      map: { id: 'Customer ID', image_url: 'headshot', script: 'Message Text' },
      template: 'Hi {{Given Name}}, this is {{Customer ID}} at {{image_url}}',
      nameTemplate: '{{id}}-{{given_name}}',
    };
    const [first, second] = await rows(path, options);
    expect(first).toMatchObject({ rowKey: 'c1', outputName: 'c1-Ana.mp4', input: { id: 'c1', image_url: IMG, script: 'Hello Ana & co' } });
    expect(first?.talk).toMatchObject({ source_url: IMG, script: { input: 'Hello Ana & co' } });
    // An empty mapped script cell falls back to the template, which reads mapped columns by either name.
    expect(second?.talk.script).toMatchObject({ input: `Hi Bo, this is c2 at ${IMG}` });
  });

  it('a mapped header the sheet lacks stops reading, naming the closest header', async () => {
    const path = await file('mapped-missing.csv', sheet);
    const report = await validateManifest(path, { map: { image_url: 'Head Shots' }, defaults: { imageUrl: IMG }, template: 'Hi {{given_name}}' });
    expect(report.issues).toEqual([
      { file: path, line: 1, column: 'map', message: 'map image_url=Head Shots: the sheet has no column "Head Shots" (did you mean headshot?)' },
    ]);
    expect(report.valid).toBe(0);
  });

  it('unknown fields and a header mapped twice are option errors, before anything is read', async () => {
    const path = await file('mapped-bad.csv', sheet);
    await expect(validateManifest(path, { map: { imagurl: 'Headshot' } })).rejects.toMatchObject({
      issues: [expect.objectContaining({ line: 0, column: 'map', message: expect.stringMatching(/^"imagurl" is not a talkbatch field \(did you mean image_url\?\)/) })],
    });
    await expect(validateManifest(path, { map: { image_url: 'Headshot', audio_url: 'headshot' } })).rejects.toMatchObject({
      issues: [expect.objectContaining({ message: '"headshot" is mapped to both image_url and audio_url' })],
    });
  });

  it('a mapped header colliding with an existing column is a duplicate column', async () => {
    const path = await file('mapped-dup.csv', `image_url,Headshot,script\n${IMG},${IMG},Hello there\n`);
    expect((await validateManifest(path, { map: { image_url: 'Headshot' } })).issues).toMatchObject([
      { line: 1, column: 'image_url', columnNumber: 2, message: 'duplicate column "Headshot" (column 1 "image_url" means the same)' },
    ]);
  });
});

describe('templates', () => {
  it('a script or name template naming a missing column is reported before any row, with the closest header', async () => {
    const path = await file('typo.csv', `id,first_name,company,image_url\na,Ana,Acme,${IMG}\n`);
    const report = await validateManifest(path, { template: 'Hi {{frist_name}} from {{company}}', nameTemplate: '{{compny}}-{{id}}' });
    expect(report.issues.map((issue) => [issue.column, issue.message])).toEqual([
      ['template', 'template uses {{frist_name}} but the sheet has no such column (did you mean first_name?)'],
      ['name', 'name template uses {{compny}} but the sheet has no such column (did you mean company?)'],
    ]);
    expect(report.valid).toBe(0);
  });

  it('with ssml, values from the sheet are XML-escaped but the template is not', async () => {
    const path = await file('ssml.csv', `id,company,image_url,ssml\na,Smith & <Sons>,${IMG},\nb,"Tom's ""Diner""",${IMG},false\n`);
    const [a, b] = await rows(path, { template: '<speak>Welcome to {{company}}<break time="1s"/></speak>', defaults: { ssml: true } });
    expect(a?.talk.script).toEqual({ type: 'text', input: '<speak>Welcome to Smith &amp; &lt;Sons&gt;<break time="1s"/></speak>', ssml: true });
    // A row's ssml cell wins over the default.
    expect(b?.talk.script).toEqual({ type: 'text', input: `<speak>Welcome to Tom's "Diner"<break time="1s"/></speak>` });
  });

  it('default voice_config goes with the default provider only', async () => {
    const path = await file('voices.csv', `id,image_url,script,voice,provider\na,${IMG},Hello there,,\nb,${IMG},Hello there,Joanna,amazon\n`);
    const [a, b] = await rows(path, { defaults: { voice: 'en-US-JennyNeural', voiceConfig: { style: 'Cheerful' } } });
    expect(a?.talk.script).toMatchObject({ provider: { type: 'microsoft', voice_id: 'en-US-JennyNeural', voice_config: { style: 'Cheerful' } } });
    expect(b?.talk.script).toMatchObject({ provider: { type: 'amazon', voice_id: 'Joanna' } });
  });
});

describe('standard input', () => {
  const csv = `id,image_url,script\na,${IMG},Hello from stdin\n\nb,${IMG},Hello again\n`;

  it('is copied once, so it validates and reads again with the same rows; issues say "stdin"', async () => {
    const manifest = await openManifest('-', { source: { stdin: Readable.from([Buffer.from(csv.slice(0, 20)), csv.slice(20)]) } });
    try {
      expect(manifest.label).toBe('stdin');
      expect(await manifest.validate()).toMatchObject({ file: 'stdin', format: 'csv', rows: 2, valid: 2 });
      const again: string[] = [];
      for await (const record of manifest.records()) if (record.ok === true) again.push(record.row.rowKey);
      expect(again).toEqual(['a', 'b']);
    } finally {
      await manifest.close();
    }
    const bad = await validateManifest('-', { source: { stdin: Readable.from([`id,image_url,script\na,ftp://x/y.png,Hello there\n`]) } });
    expect(formatIssue(bad.issues[0] as never)).toMatch(/^stdin:2:2 \(image_url\): /);
  });

  it('is sniffed: JSONL on standard input', async () => {
    const jsonl = `{"id":"a","image_url":"${IMG}","script":"Hello there"}\n{"id":"b","image_url":"${IMG}","script":"Hello again"}\n`;
    expect(await validateManifest('-', { source: { stdin: Readable.from([jsonl]) } })).toMatchObject({ format: 'jsonl', valid: 2 });
  });

  it('a terminal is refused, and so is input over the size cap', async () => {
    const terminal = Object.assign(Readable.from([]), { isTTY: true });
    await expect(validateManifest('-', { source: { stdin: terminal } })).rejects.toMatchObject({ issues: [expect.objectContaining({ file: 'stdin', message: expect.stringMatching(/nothing is piped in/) })] });
    await expect(validateManifest('-', { source: { stdin: Readable.from([csv]), maxBytes: 10 } })).rejects.toBeInstanceOf(ManifestError);
  });
});

describe('URL labels', () => {
  it('hide credentials and secret-looking query values, keep the sheet parameters', () => {
    expect(redactUrl(new URL('https://user:pw@docs.example.com/d/e/abc/pub?gid=0&output=csv&token=s3cret#frag'))).toBe(
      'https://docs.example.com/d/e/abc/pub?gid=0&output=csv&token=REDACTED',
    );
  });

  it('plain http is refused except for this machine', async () => {
    await expect(validateManifest('http://sheets.example.com/people.csv')).rejects.toMatchObject({
      issues: [{ file: 'http://sheets.example.com/people.csv', line: 0, message: 'must use https:// (http:// only for localhost)' }],
    });
    await expect(validateManifest('ftp://example.com/people.csv')).rejects.toMatchObject({ issues: [expect.objectContaining({ message: 'only https:// URLs can be read (got ftp:)' })] });
  });
});

describe('job files', () => {
  it('jobs/welcome.job.yaml: manifest and template file relative to the job file, defaults mapped', () => {
    const job = loadJobFile('jobs/welcome.job.yaml');
    expect(job.manifest).toBe(resolve('jobs/welcome.csv'));
    expect(job.options).toMatchObject({
      nameTemplate: '{{company}}-{{given_name}}',
      map: { id: 'Customer ID', image_url: 'Headshot' },
      defaults: { voice: 'en-US-JennyNeural', provider: 'microsoft', voiceConfig: { style: 'Cheerful' }, ssml: true, config: { stitch: true } },
    });
    expect(job.options.template).toMatch(/^<speak>Hi \{\{given_name\}\}!/);
  });

  it('validates the example jobs end to end, SSML-escaping "Contoso & Sons"', async () => {
    const job = loadJobFile('jobs/welcome.job.yaml');
    const made = await rows(job.manifest as string, job.options);
    expect(made.map((row) => row.outputName)).toEqual(['Northwind-Ana.mp4', 'Contoso & Sons-Bo.mp4', 'Fabrikam-Chen.mp4']);
    expect(made[1]?.talk.script).toMatchObject({ ssml: true, input: expect.stringContaining('Welcome to Contoso &amp; Sons.') });
    const demo = loadJobFile('jobs/demo.job.json');
    expect(await validateManifest(demo.manifest as string, demo.options)).toMatchObject({ valid: 10, issues: [] });
  });

  it('flags win over the job file, key by key', () => {
    const { manifest, options } = manifestArgs({ job: 'jobs/welcome.job.yaml', voice: 'en-US-GuyNeural', map: ['image_url=Photo'] }, [], 'validate');
    expect(manifest).toBe(resolve('jobs/welcome.csv'));
    expect(options.defaults).toMatchObject({ voice: 'en-US-GuyNeural', provider: 'microsoft', ssml: true });
    expect(options.map).toEqual({ id: 'Customer ID', image_url: 'Photo' });
    expect(manifestArgs({ job: 'jobs/welcome.job.yaml' }, ['other.csv'], 'validate').manifest).toBe('other.csv');
    expect(mergeManifestOptions({ defaults: { config: { stitch: true } } }, { defaults: { config: { fluent: true } } }).defaults?.config).toEqual({ stitch: true, fluent: true });
  });

  it('problems name the file, the line and the key, with a did-you-mean for unknown keys', async () => {
    const path = await file(
      'bad.job.yaml',
      ['manifest: people.csv', 'templat: "Hi"', 'defaults:', '  imageUrl: https://example.com/a.png', '  provider: mircosoft', '  config:', '    stitch: "yes"'].join('\n'),
    );
    let message = '';
    try {
      loadJobFile(path);
    } catch (error) {
      message = (error as Error).message;
      expect(error).toMatchObject({ code: 'USAGE' });
    }
    expect(message).toContain(`invalid job file ${path}:`);
    expect(message).toContain('line 2, templat: unknown key (did you mean template?)');
    expect(message).toContain('line 4, defaults.imageUrl: unknown key (did you mean image_url?)');
    expect(message).toMatch(/line 5, defaults\.provider: Invalid option: expected one of "microsoft"/);
    expect(message).toMatch(/line 7, defaults\.config\.stitch: Invalid input: expected boolean/);
  });

  it('broken YAML/JSON, a missing template file, and template with templateFile are clear errors', async () => {
    expect(() => loadJobFile(join(dir, 'none.job.yaml'))).toThrow(/cannot read job file .*none\.job\.yaml: file not found/);
    const broken = await file('broken.job.json', '{ "manifest": "a.csv", }\n{');
    expect(() => loadJobFile(broken)).toThrow(/is not valid YAML or JSON:\n {2}- line \d+: /);
    const missing = await file('missing-template.job.yaml', 'templateFile: nowhere.txt\n');
    expect(() => loadJobFile(missing)).toThrow(/templateFile: cannot read .*nowhere\.txt \(file not found\)/);
    const both = await file('both.job.yaml', 'template: Hi\ntemplateFile: x.txt\n');
    expect(() => loadJobFile(both)).toThrow(/give template or templateFile, not both/);
  });
});
