import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { validateManifest, type ManifestIssue, type ManifestOptions } from '../../src/manifest/index.js';

/*
 * Every file in fixtures/manifests/bad/ has a `<name>.expect.json` beside it: `{ options?, issues: [{ line, column?,
 * columnNumber?, message }] }`. The validator must report exactly those issues, in that order.
 */

const BAD = fileURLToPath(new URL('../../fixtures/manifests/bad/', import.meta.url));

interface Expectation {
  options?: ManifestOptions;
  issues: { line: number; column?: string; columnNumber?: number; message: string }[];
}

const manifests = readdirSync(BAD)
  .filter((name) => !name.endsWith('.expect.json'))
  .sort();

function expectationFor(name: string): Expectation {
  const base = name.replace(/\.[^.]+$/, '');
  return JSON.parse(readFileSync(join(BAD, `${base}.expect.json`), 'utf8')) as Expectation;
}

function comparable(issue: ManifestIssue, withColumnNumber: boolean): Record<string, unknown> {
  const out: Record<string, unknown> = { line: issue.line, column: issue.column, message: issue.message };
  if (withColumnNumber) out.columnNumber = issue.columnNumber;
  return out;
}

describe('bad manifests', () => {
  it('has at least 40 bad fixtures, each with an expectation', () => {
    expect(manifests.length).toBeGreaterThanOrEqual(40);
    const expectations = readdirSync(BAD).filter((name) => name.endsWith('.expect.json'));
    expect(expectations.length).toBe(manifests.length);
  });

  it.each(manifests)('%s', async (name) => {
    const expectation = expectationFor(name);
    const report = await validateManifest(join(BAD, name), expectation.options ?? {});
    const actual = report.issues.map((issue, index) => {
      const wanted = expectation.issues[index];
      return comparable(issue, wanted?.columnNumber !== undefined);
    });
    const wanted = expectation.issues.map((issue) => ({
      line: issue.line,
      column: issue.column,
      message: issue.message,
      ...(issue.columnNumber === undefined ? {} : { columnNumber: issue.columnNumber }),
    }));
    expect(actual).toEqual(wanted);
    for (const issue of report.issues) {
      expect(issue.file).toBe(join(BAD, name));
      expect(issue.message).not.toMatch(/\.$/);
    }
  });
});
