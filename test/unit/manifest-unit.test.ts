import { describe, expect, it } from 'vitest';
import {
  ManifestError,
  canonicalColumn,
  checkFileName,
  computeRowKey,
  detectDelimiter,
  detectFormat,
  formatIssue,
  formulaMessage,
  outputFileName,
  sanitizeNamePart,
} from '../../src/manifest/index.js';
import { rowStartLines } from '../../src/manifest/json.js';
import { firstInvalidUtf8 } from '../../src/manifest/utf8.js';

describe('detectDelimiter', () => {
  it('picks the most frequent of , ; tab on the header line', () => {
    expect(detectDelimiter('id,name,image_url\n1;2;3;4;5')).toBe(',');
    expect(detectDelimiter('id;name;image_url\n1,2,3,4,5')).toBe(';');
    expect(detectDelimiter('id\tname\timage_url\n')).toBe('\t');
  });

  it('ignores delimiters inside quotes and a BOM, and skips blank lines', () => {
    expect(detectDelimiter('\uFEFF"a,b,c";"d,e";f\n')).toBe(';');
    expect(detectDelimiter('\n  \r\nid;name\n')).toBe(';');
    expect(detectDelimiter('"multi\nline, header";x;y\n')).toBe(';');
  });

  it('defaults to comma', () => {
    expect(detectDelimiter('single_column\nvalue')).toBe(',');
    expect(detectDelimiter('')).toBe(',');
    expect(detectDelimiter('a,b;c\n')).toBe(',');
  });
});

describe('detectFormat', () => {
  it('uses the extension first', () => {
    expect(detectFormat('x.CSV', '[')).toBe('csv');
    expect(detectFormat('x.tsv', '')).toBe('csv');
    expect(detectFormat('x.txt', '')).toBe('csv');
    expect(detectFormat('x.json', '')).toBe('json');
    expect(detectFormat('x.ndjson', '')).toBe('jsonl');
    expect(detectFormat('x.jsonl', '')).toBe('jsonl');
  });

  it('sniffs the first non-space character otherwise', () => {
    expect(detectFormat('manifest', '  \n[{"id":1}]')).toBe('json');
    expect(detectFormat('manifest', '{"id":1}\n{"id":2}\n')).toBe('jsonl');
    expect(detectFormat('manifest', '{"rows":[{"id":1}]}')).toBe('json');
    expect(detectFormat('manifest', '{\n  "rows": []\n}')).toBe('json');
    expect(detectFormat('manifest', '\uFEFFid,name\n')).toBe('csv');
  });
});

describe('canonicalColumn', () => {
  it('normalises to lower_snake_case and resolves aliases', () => {
    expect(canonicalColumn(' First Name ')).toBe('first_name');
    expect(canonicalColumn('firstName')).toBe('first_name');
    expect(canonicalColumn('imageURL')).toBe('image_url');
    expect(canonicalColumn('Photo')).toBe('image_url');
    expect(canonicalColumn('Source URL')).toBe('image_url');
    expect(canonicalColumn('Voice ID')).toBe('voice');
    expect(canonicalColumn('File name')).toBe('name');
    expect(canonicalColumn('text')).toBe('script');
    expect(canonicalColumn('Audio')).toBe('audio_url');
    expect(canonicalColumn('Prénom')).toBe('prénom');
    expect(canonicalColumn('---')).toBe('');
  });
});

describe('computeRowKey', () => {
  it('is the id when there is one', () => {
    expect(computeRowKey({ id: ' ana-01 ', first_name: 'Ana' })).toBe('ana-01');
    expect(computeRowKey({ ID: 'x1', first_name: 'Ana' })).toBe('x1');
  });

  it('is r + 16 hex chars, stable across column order, whitespace, header spelling and empty cells', () => {
    const key = computeRowKey({ first_name: 'Ana', image_url: 'https://example.com/a.png' });
    expect(key).toMatch(/^r[0-9a-f]{16}$/);
    expect(computeRowKey({ image_url: '  https://example.com/a.png', 'First Name': 'Ana  ', notes: '' })).toBe(key);
    expect(computeRowKey({ first_name: 'Ana', image_url: 'https://example.com/b.png' })).not.toBe(key);
    expect(computeRowKey({ first_name: 'Ana', id: '' , image_url: 'https://example.com/a.png' })).toBe(key);
  });

  it('does not mix up values between columns', () => {
    expect(computeRowKey({ a: 'x', b: '' })).not.toBe(computeRowKey({ a: '', b: 'x' }));
  });
});

describe('file names', () => {
  it('rejects folders, traversal, a leading dot and control characters', () => {
    for (const name of ['../../etc/passwd', 'a/b', '..\\x', 'a\\b', '.hidden', 'a..b', 'a\u0000b', 'line\nbreak', 'tab\there']) {
      expect(checkFileName(name), name).toBe('name must be a plain file name (no folders, no leading dot)');
    }
    expect(checkFileName('x'.repeat(151))).toBe('name must be at most 150 characters (got 151)');
    expect(checkFileName('x'.repeat(150))).toBeUndefined();
    expect(checkFileName('Ana intro (v2).mp4')).toBeUndefined();
  });

  it('adds the extension, keeps a matching one, refuses the other', () => {
    expect(outputFileName('intro', 'mp4')).toEqual({ fileName: 'intro.mp4' });
    expect(outputFileName('intro.MP4', 'mp4')).toEqual({ fileName: 'intro.mp4' });
    expect(outputFileName('intro', 'mov')).toEqual({ fileName: 'intro.mov' });
    expect(outputFileName('intro.v2', 'mp4')).toEqual({ fileName: 'intro.v2.mp4' });
    expect(outputFileName('intro.mp4', 'mov')).toEqual({ message: 'name ends in .mp4 but result_format is mov' });
  });

  it('replaces characters Windows refuses, and refuses DOS device names in any form', () => {
    expect(outputFileName('Q&A: Ana? <1>|*"', 'mp4')).toEqual({ fileName: 'Q&A_ Ana_ _1____.mp4' });
    expect(outputFileName('intro. . ', 'mp4')).toEqual({ fileName: 'intro.mp4' });
    expect(outputFileName('CON', 'mp4')).toEqual({ message: expect.stringMatching(/^name "CON" is a Windows device name/) });
    expect(outputFileName('com1.txt.mp4', 'mp4')).toEqual({ message: expect.stringMatching(/Windows device name/) });
  });

  it('sanitises values substituted into a name template', () => {
    expect(sanitizeNamePart(' AT&T / R\\D\n\tlabs ')).toBe('AT&T - R-D-labs');
    expect(sanitizeNamePart('../../etc')).toBe('..-..-etc');
  });
});

describe('formulaMessage', () => {
  it('flags spreadsheet formulas', () => {
    expect(formulaMessage('=HYPERLINK("http://x","y")')).toBe('cell starts with "=" and would run as a spreadsheet formula');
    expect(formulaMessage('@SUM(1)')).toBe('cell starts with "@" and would run as a spreadsheet formula');
    expect(formulaMessage("+cmd|' /C calc'!A0")).toBe('cell starts with "+" and would run as a spreadsheet formula');
    expect(formulaMessage('-(1)')).toBe('cell starts with "-" and would run as a spreadsheet formula');
    expect(formulaMessage('-2+3')).toBe('cell starts with "-" and would run as a spreadsheet formula');
    expect(formulaMessage('  =1')).toBe('cell starts with "=" and would run as a spreadsheet formula');
    expect(formulaMessage('\tx')).toBe('cell starts with a tab and would run as a spreadsheet formula');
    expect(formulaMessage('\rx')).toBe('cell starts with a carriage return and would run as a spreadsheet formula');
  });

  it('allows phone numbers, negative numbers, pitches and ordinary text', () => {
    for (const value of ['+49 30 1234', '+1 (555) 123-4567', '-2', '-0.5', '+2st', '-10%', '- a list item', 'a=b', 'Hello @Ana', '']) {
      expect(formulaMessage(value), value).toBeUndefined();
    }
  });
});

describe('formatIssue and ManifestError', () => {
  it('formats file:line[:columnNumber][ (column)]: message', () => {
    expect(formatIssue({ file: 'people.csv', line: 4, column: 'image_url', columnNumber: 3, message: 'must use https://' })).toBe(
      'people.csv:4:3 (image_url): must use https://',
    );
    expect(formatIssue({ file: 'people.csv', line: 1, message: 'no data rows' })).toBe('people.csv:1: no data rows');
    expect(formatIssue({ file: 'rows.json', line: 7, column: 'first_name', message: 'm' })).toBe('rows.json:7 (first_name): m');
    expect(formatIssue({ file: 'gone.csv', line: 0, message: 'file not found' })).toBe('gone.csv: file not found');
  });

  it('ManifestError carries the issues and shows the first few', () => {
    const issues = Array.from({ length: 7 }, (_, i) => ({ file: 'f.csv', line: i + 1, message: `problem ${i + 1}` }));
    const error = new ManifestError(issues);
    expect(error.code).toBe('MANIFEST_INVALID');
    expect(error.name).toBe('ManifestError');
    expect(error.issues).toBe(issues);
    expect(error.message).toContain('f.csv:5: problem 5');
    expect(error.message).not.toContain('problem 6');
    expect(error.message).toContain('and 2 more');
  });
});

describe('rowStartLines', () => {
  it('finds where each element of the rows array starts', () => {
    expect(rowStartLines('[\n {"a": "[{,}]"},\n\n {"b": [1,\n2]}, 3\n]')).toEqual([2, 4, 5]);
    expect(rowStartLines('{"meta": [{"x": 1}],\n "rows": [\n  {"a": 1},\n  {"a": "say \\"hi\\""}\n ]}')).toEqual([3, 4]);
    expect(rowStartLines('[]')).toEqual([]);
  });
});

describe('firstInvalidUtf8', () => {
  it('finds the first invalid byte and tolerates a sequence cut at the end', () => {
    expect(firstInvalidUtf8(Buffer.from('héllo ✓ 😀'))).toBe(-1);
    expect(firstInvalidUtf8(Buffer.from([0x61, 0xe9, 0x62]))).toBe(1);
    expect(firstInvalidUtf8(Buffer.from([0x61, 0xc3]))).toBe(-1);
    expect(firstInvalidUtf8(Buffer.from([0xc0, 0x80]))).toBe(0); // overlong
    expect(firstInvalidUtf8(Buffer.from([0xed, 0xa0, 0x80]))).toBe(0); // surrogate
    expect(firstInvalidUtf8(Buffer.from([0x61, 0xf0, 0x9f, 0x41]))).toBe(1);
  });
});
