import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ENV_SCHEMA } from '../../src/config/schema.js';

/*
 * The README's configuration table is written by hand (its "meaning" column is prose) and checked here against
 * the one schema of settings: every variable on both sides, and the same default.
 */

const README = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');

/** Variable -> its default cell, from the table under "## Configuration". Throws when the table cannot be read. */
function readmeDefaults(readme: string): Map<string, string> {
  const section = readme.split(/^## /m).find((part) => part.startsWith('Configuration\n'));
  if (section === undefined) throw new Error('README.md has no "## Configuration" section');
  const rows = new Map<string, string>();
  for (const line of section.split('\n')) {
    const cells = /^\|\s*(`[^|]+`)\s*\|\s*([^|]+?)\s*\|/.exec(line);
    if (cells === null) continue;
    const [, namesCell = '', defaultsCell = ''] = cells;
    const names = namesCell.split(' / ').map((name) => name.replace(/`/g, '').trim());
    const [first = ''] = names;
    const prefix = first.slice(0, first.indexOf('_'));
    const defaults = defaultsCell.split(' / ');
    if (defaults.length !== 1 && defaults.length !== names.length) throw new Error(`README config row "${line}": give one default, or one per variable`);
    // `TALKBATCH_LOCK_MS / _STALLED_INTERVAL_MS`: a name starting with "_" shares the first one's prefix.
    names.forEach((name, index) => rows.set(name.startsWith('_') ? `${prefix}${name}` : name, (defaults[index] ?? defaults[0] ?? '').trim()));
  }
  if (rows.size === 0) throw new Error('README.md has no config table rows');
  return rows;
}

/**
 * What is wrong, one line per variable. A literal default is written `value` (a note in parentheses may follow);
 * a setting without a schema default shows "–" or words ("= concurrency", "private").
 */
function configTableProblems(readme: string): string[] {
  const table = readmeDefaults(readme);
  const schemaDefaults: Record<string, string | number | boolean | readonly string[] | undefined> = ENV_SCHEMA.parse({});
  const names = Object.keys(ENV_SCHEMA.shape);
  const problems: string[] = [];
  for (const name of names) if (!table.has(name)) problems.push(`${name}: read by src/config/schema.ts but missing from the README's config table`);
  for (const [name, cell] of table) {
    if (!names.includes(name)) {
      problems.push(`${name}: in the README's config table but not a setting of src/config/schema.ts`);
      continue;
    }
    const literal = /^`([^`]*)`(?:\s*\(.*\))?$/.exec(cell)?.[1];
    const expected = schemaDefaults[name];
    if (expected === undefined) {
      if (literal !== undefined) problems.push(`${name}: the README gives default ${cell}, the schema has none`);
    } else if (literal !== String(expected)) {
      problems.push(`${name}: the README gives default ${cell}, the schema's is \`${String(expected)}\``);
    }
  }
  return problems;
}

describe("README's config table", () => {
  it('lists every setting of the config schema, with its default', () => {
    expect(configTableProblems(README)).toEqual([]);
  });

  it('names a variable missing from the table', () => {
    const without = README.replace(/^\| `DOCKER_HOST` .*\n/m, '');
    expect(without).not.toBe(README);
    expect(configTableProblems(without)).toEqual([expect.stringMatching(/^DOCKER_HOST: .*missing from the README/)]);
  });

  it('names a variable the schema does not have', () => {
    const extra = README.replace(/^(\| `TALKBATCH_OUT_DIR` .*\n)/m, '$1| `TALKBATCH_NO_SUCH` | – | nothing |\n');
    expect(configTableProblems(extra)).toEqual([expect.stringMatching(/^TALKBATCH_NO_SUCH: .*not a setting/)]);
  });

  it('names a variable whose default differs, also behind a shortened name', () => {
    const port = README.replace('| `127.0.0.1` / `8080` |', '| `127.0.0.1` / `8081` |');
    expect(port).not.toBe(README);
    expect(configTableProblems(port)).toEqual([expect.stringMatching(/^TALKBATCH_PORT: .*`8081`.*`8080`/)]);
    const stalled = README.replace('| `30000` / `30000` / `25` |', '| `30000` / `30000` / `26` |');
    expect(stalled).not.toBe(README);
    expect(configTableProblems(stalled)).toEqual([expect.stringMatching(/^TALKBATCH_MAX_STALLED: /)]);
  });

  it('names a literal default for a setting that has none', () => {
    const given = README.replace(/^(\| `DID_ELEVENLABS_API_KEY` \| )– \|/m, '$1`abc` |');
    expect(given).not.toBe(README);
    expect(configTableProblems(given)).toEqual([expect.stringMatching(/^DID_ELEVENLABS_API_KEY: .*has none/)]);
  });
});
