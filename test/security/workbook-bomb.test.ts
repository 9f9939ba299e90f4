import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Queue } from 'bullmq';
import { Zip, ZipDeflate } from 'fflate';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openManifest } from '../../src/manifest/index.js';
import { workbookLimitProblem } from '../../src/manifest/xlsx-limits.js';
import { createRedis } from '../../src/queue/connections.js';
import { scheduleDefinition, scheduleQueueName, type TickDataInput } from '../../src/schedules/spec.js';
import { ScheduleStore, type ScheduleRun } from '../../src/schedules/store.js';
import { runScheduleTick } from '../../src/schedules/tick.js';
import { openQueue } from '../../src/queue/talk-queue.js';
import { silentLogger } from '../../src/shared/logger.js';
import { runCli } from '../helpers/cli.js';
import { testConfig } from '../helpers/context.js';

/*
 * Workbooks are zips: a couple of MB on disk can unpack to gigabytes. These are generated here, streamed through
 * fflate so the test itself never holds the unpacked size.
 */

const MB = 1024 * 1024;

const CONTENT_TYPES = `<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/><Override PartName="/xl/sharedStrings.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/></Types>`;
const ROOT_RELS = `<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>`;
const WORKBOOK = `<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets><sheet name="People" sheetId="1" r:id="rId1"/></sheets></workbook>`;
const WORKBOOK_RELS = `<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/><Relationship Id="rId2" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/sharedStrings" Target="sharedStrings.xml"/></Relationships>`;
const SHEET_START = `<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>`;
const SHEET_END = `</sheetData></worksheet>`;

type Part = { name: string; chunks: () => Iterable<string> };

/** Writes a zip whose parts are produced chunk by chunk. */
async function writeZip(path: string, parts: Part[]): Promise<void> {
  const out = createWriteStream(path);
  const zip = new Zip((error, data, final) => {
    if (error) out.destroy(error);
    else out.write(data);
    if (final) out.end();
  });
  for (const part of parts) {
    const entry = new ZipDeflate(part.name, { level: 6 });
    zip.add(entry);
    const chunks = [...part.chunks()];
    chunks.forEach((chunk, index) => entry.push(new TextEncoder().encode(chunk), index === chunks.length - 1));
    if (chunks.length === 0) entry.push(new Uint8Array(0), true);
  }
  zip.end();
  await once(out, 'finish');
}

function* repeated(text: string, times: number): Iterable<string> {
  for (let i = 0; i < times; i++) yield text;
}

const fixed = (text: string): (() => Iterable<string>) => () => [text];

function workbookParts(sheet: () => Iterable<string>, sharedStrings: () => Iterable<string>): Part[] {
  return [
    { name: '[Content_Types].xml', chunks: fixed(CONTENT_TYPES) },
    { name: '_rels/.rels', chunks: fixed(ROOT_RELS) },
    { name: 'xl/workbook.xml', chunks: fixed(WORKBOOK) },
    { name: 'xl/_rels/workbook.xml.rels', chunks: fixed(WORKBOOK_RELS) },
    { name: 'xl/worksheets/sheet1.xml', chunks: sheet },
    { name: 'xl/sharedStrings.xml', chunks: sharedStrings },
  ];
}

let dir: string;
let stringsBomb: string;
let cellsBomb: string;
let small: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tb-bomb-'));
  stringsBomb = join(dir, 'strings-bomb.xlsx');
  cellsBomb = join(dir, 'cells-bomb.xlsx');
  small = join(dir, 'small.xlsx');
  const header = '<row r="1"><c r="A1" t="inlineStr"><is><t>image_url</t></is></c><c r="B1" t="s"><v>0</v></c></row>';
  const bigString = 'A'.repeat(MB);
  // 130 MB of one shared string, a few hundred KB on disk.
  await writeZip(
    stringsBomb,
    workbookParts(
      () => [SHEET_START, header, SHEET_END],
      () => ['<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" count="1" uniqueCount="1"><si><t>', ...repeated(bigString, 130), '</t></si></sst>'],
    ),
  );
  // 2.1 million small cells in rows of 1,000: far past the cell limit, well under the byte limit.
  const row = `<row>${'<c><v>1</v></c>'.repeat(1000)}</row>`;
  await writeZip(
    cellsBomb,
    workbookParts(
      () => [SHEET_START, header, ...repeated(row, 2100), SHEET_END],
      fixed('<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" count="1" uniqueCount="1"><si><t>script</t></si></sst>'),
    ),
  );
  await writeZip(
    small,
    workbookParts(
      () => [SHEET_START, header, ...repeated('<row><c><v>1</v></c><c><v>2</v></c></row>', 10), SHEET_END],
      fixed('<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" count="1" uniqueCount="1"><si><t>script</t></si></sst>'),
    ),
  );
}, 120_000);

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('workbook limits, checked while inflating', () => {
  it('refuses a shared-strings bomb without unpacking it', async () => {
    const before = process.memoryUsage().rss;
    expect(await workbookLimitProblem(stringsBomb)).toMatch(/unpacks to more than 100 MB; export the sheet as CSV/);
    // Not a timing or exact-memory assertion: it did not hold the 130 MB it refused.
    expect(process.memoryUsage().rss - before).toBeLessThan(120 * MB);
  });

  it('refuses a cell bomb by its cell count', async () => {
    expect(await workbookLimitProblem(cellsBomb)).toMatch(/more than 2000000 cells/);
  });

  it('counts rows and cells across chunk boundaries exactly', async () => {
    expect(await workbookLimitProblem(small, { uncompressedBytes: MB, entries: 10, rows: 11, cells: 22 })).toBeUndefined();
    expect(await workbookLimitProblem(small, { uncompressedBytes: MB, entries: 10, rows: 10, cells: 100 })).toMatch(/more than 10 rows/);
    expect(await workbookLimitProblem(small, { uncompressedBytes: MB, entries: 10, rows: 100, cells: 21 })).toMatch(/more than 21 cells/);
    expect(await workbookLimitProblem(small, { uncompressedBytes: MB, entries: 5, rows: 100, cells: 100 })).toMatch(/more than 5 parts/);
  });

  it('validation reports the bomb as an issue on the workbook', async () => {
    const manifest = await openManifest(stringsBomb, { template: 'Hello' });
    try {
      const report = await manifest.validate();
      expect(report.issues.map((issue) => issue.message)).toEqual([expect.stringMatching(/unpacks to more than 100 MB/)]);
    } finally {
      await manifest.close();
    }
  });

  it('talkbatch validate refuses it and exits normally', async () => {
    const result = await runCli(['validate', stringsBomb, '--template', 'Hello']);
    expect(result.code).toBe(1);
    expect(result.stdout + result.stderr).toMatch(/unpacks to more than 100 MB/);
  });

  it('a schedule that meets it records a failed run, and the next run goes on', async () => {
    const config = await testConfig();
    const talks = await openQueue(config, config.redisUrl as string);
    const redis = createRedis(config.redisUrl as string, 'worker');
    const queue = new Queue<TickDataInput, ScheduleRun>(scheduleQueueName(config.queueName), { connection: redis, prefix: config.prefix });
    try {
      const store = new ScheduleStore(queue, redis, config.prefix, config.queueName);
      const deps = { talks, store, logger: silentLogger };
      const definition = scheduleDefinition({ name: 'bomb', manifest: stringsBomb, timing: { everyMs: 1_000 }, options: { template: 'Hello' } }, (path) => resolve(path));
      const run = await runScheduleTick(deps, definition);
      expect(run.error).toMatch(/unpacks to more than 100 MB/);
      expect(run.added).toBe(0);
      expect(await talks.queue.count()).toBe(0);
      expect((await runScheduleTick(deps, definition)).error).toMatch(/unpacks to more than 100 MB/);
    } finally {
      await queue.obliterate({ force: true });
      await queue.close();
      await talks.queue.obliterate({ force: true });
      await talks.close();
      redis.disconnect();
    }
  });
});
