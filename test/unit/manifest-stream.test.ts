import { createWriteStream, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readManifest, validateManifest } from '../../src/manifest/index.js';

const ROWS = 100_000;
const dir = mkdtempSync(join(tmpdir(), 'talkbatch-manifest-stream-'));
const path = join(dir, 'big.csv');

beforeAll(async () => {
  const out = createWriteStream(path);
  out.write('id,first_name,company,image_url\n');
  let chunk = '';
  for (let i = 0; i < ROWS; i++) {
    chunk += `row-${i},Name${i},Company ${i % 97},https://example.com/people/p${i}.jpg\n`;
    if (chunk.length > 1 << 16) {
      if (!out.write(chunk)) await once(out, 'drain');
      chunk = '';
    }
  }
  out.end(chunk);
  await once(out, 'finish');
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('streaming', () => {
  // Its speed is measured by `npm run bench` (enqueue); a wall-clock bound here would only measure the machine's load.
  it(`validates ${ROWS.toLocaleString('en-US')} rows`, { timeout: 120_000 }, async () => {
    const report = await validateManifest(path, { template: 'Hi {{first_name}}, welcome to {{company}}!' });
    expect(report).toMatchObject({ format: 'csv', rows: ROWS, valid: ROWS, skippedEmpty: 0, issues: [] });
    expect(report.estimatedSeconds).toBeGreaterThan(ROWS);
  });

  it('yields the first row without reading the whole file, and stops cleanly on break', async () => {
    const started = performance.now();
    let first: number | undefined;
    for await (const record of readManifest(path, { template: 'Hi {{first_name}}' })) {
      if (record.ok === true) first = record.row.line;
      break;
    }
    expect(first).toBe(2);
    expect(performance.now() - started).toBeLessThan(1000);
  });
});
