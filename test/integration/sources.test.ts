import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ManifestError, formatIssue, validateManifest } from '../../src/manifest/index.js';
import { enqueueManifest } from '../../src/queue/producer.js';
import { runCli } from '../helpers/cli.js';
import { IMAGE, startHarness, type Harness } from '../helpers/harness.js';

/** The test servers listen on this machine: opened with the allow-list, as an operator would. */
const LOCAL = { outboundAllow: ['127.0.0.1'] };

const CSV = `id,first_name,image_url\nana,Ana,${IMAGE}\nbo,Bo,${IMAGE}\n`;
const JSONL = `{"id":"j1","image_url":"${IMAGE}","script":"Hello from JSONL"}\n{"id":"j2","image_url":"${IMAGE}","script":"Hello again"}\n`;

/** A sheet server on 127.0.0.1: the shapes a published sheet, a moved link, a login page and a dead link take. */
let server: Server;
let base: string;
const hits: string[] = [];
let xlsx: Buffer;

function route(request: IncomingMessage, response: ServerResponse): void {
  const url = new URL(request.url ?? '/', 'http://localhost');
  hits.push(url.pathname);
  switch (url.pathname) {
    case '/sheet.csv':
      response.writeHead(200, { 'content-type': 'text/csv; charset=utf-8' }).end(CSV);
      return;
    case '/pub':
      // Published Google Sheets: no extension, the format is in the content type.
      response.writeHead(200, { 'content-type': 'text/csv' }).end(CSV);
      return;
    case '/moved':
      response.writeHead(302, { location: '/hop' }).end();
      return;
    case '/hop':
      response.writeHead(307, { location: `/pub?gid=0&output=csv` }).end();
      return;
    case '/rows':
      response.writeHead(200, { 'content-type': 'application/json' }).end(JSONL);
      return;
    case '/book':
      response.writeHead(200, { 'content-type': 'application/octet-stream' }).end(xlsx);
      return;
    case '/login':
      response.writeHead(200, { 'content-type': 'text/html' }).end('<html>sign in</html>');
      return;
    case '/huge':
      response.writeHead(200, { 'content-type': 'text/csv' }).end(`${CSV}${'x'.repeat(5_000)}`);
      return;
    case '/slow':
      response.writeHead(200, { 'content-type': 'text/csv' });
      response.write('id,image_url\n'); // and never ends
      return;
    default:
      response.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
  }
}

beforeAll(async () => {
  const ExcelJS = (await import('exceljs')).default;
  const workbook = new ExcelJS.Workbook();
  const sheet = workbook.addWorksheet('Rows');
  sheet.addRow(['id', 'image_url', 'script']);
  sheet.addRow(['x1', IMAGE, 'Hello from a workbook']);
  xlsx = Buffer.from(await workbook.xlsx.writeBuffer());
  server = createServer(route);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

let harness: Harness | undefined;
afterEach(async () => {
  await harness?.close();
  harness = undefined;
});

describe('manifest sources: URLs', () => {
  it('reads CSV by content type, follows redirects, sniffs JSONL, and reads a workbook without a name', async () => {
    expect(await validateManifest(`${base}/sheet.csv`, { template: 'Hi {{first_name}}, welcome!', source: LOCAL })).toMatchObject({ file: `${base}/sheet.csv`, format: 'csv', valid: 2 });
    hits.length = 0;
    const moved = await validateManifest(`${base}/moved`, { template: 'Hi {{first_name}}, welcome!', source: LOCAL });
    expect(moved).toMatchObject({ format: 'csv', valid: 2, issues: [] });
    expect(hits).toEqual(['/moved', '/hop', '/pub']);
    expect(await validateManifest(`${base}/rows`, { source: LOCAL })).toMatchObject({ format: 'jsonl', valid: 2 });
    expect(await validateManifest(`${base}/book`, { source: LOCAL })).toMatchObject({ format: 'xlsx', valid: 1 });
  });

  it('a 404 is an error naming the URL, without the secret in its query', async () => {
    const error = await validateManifest(`${base}/gone.csv?token=hunter2&gid=3`, { source: LOCAL }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ManifestError);
    const [issue] = (error as ManifestError).issues;
    expect(formatIssue(issue as never)).toBe(
      `${base}/gone.csv?token=REDACTED&gid=3: download failed: HTTP 404 Not Found (check the link; a Google Sheet must be published: File > Share > Publish to web)`,
    );
    expect((error as Error).message).not.toContain('hunter2');
  });

  it('an HTML page, too many bytes and too slow a server are clear errors', async () => {
    await expect(validateManifest(`${base}/login`, { source: LOCAL })).rejects.toMatchObject({ issues: [expect.objectContaining({ message: expect.stringMatching(/^the link returned a web page \(text\/html\)/) })] });
    await expect(validateManifest(`${base}/huge`, { source: { ...LOCAL, maxBytes: 1_000 } })).rejects.toMatchObject({ issues: [expect.objectContaining({ message: 'download is larger than 1000 bytes' })] });
    await expect(validateManifest(`${base}/slow`, { source: { ...LOCAL, timeoutMs: 300 } })).rejects.toMatchObject({ issues: [expect.objectContaining({ message: 'download did not finish within 300 ms' })] });
  });

  it('enqueueManifest downloads once: the batch records the URL and holds every row', async () => {
    harness = await startHarness();
    hits.length = 0;
    const result = await enqueueManifest(harness.handle, `${base}/sheet.csv`, { template: 'Hi {{first_name}}, welcome!', batchId: 'from-url', source: LOCAL });
    expect(result).toMatchObject({ added: 2, invalid: 0 });
    expect(hits).toEqual(['/sheet.csv']);
    expect(await harness.handle.batches.get('from-url')).toMatchObject({ source: `${base}/sheet.csv`, total: 2 });
  });
});

describe('talkbatch validate with other sources', () => {
  it('reads "-" from standard input', async () => {
    const result = await runCli(['validate', '-', '--template', 'Hi {{first_name}}, welcome aboard!'], {}, 60_000, CSV);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/^stdin: 2 rows \(csv\), 2 valid/m);
  });

  it('--job with flags over it (--map) on a workbook sheet; a bad job file exits 2 naming the key', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tb-cli-job-'));
    const ExcelJS = (await import('exceljs')).default;
    const workbook = new ExcelJS.Workbook();
    workbook.addWorksheet('Notes').addRow(['nothing here']);
    const sheet = workbook.addWorksheet('Team');
    sheet.addRow(['Key', 'Name', 'Picture']);
    sheet.addRow(['t1', 'Ana', IMAGE]);
    sheet.addRow(['t2', 'Bo', IMAGE]);
    await workbook.xlsx.writeFile(join(dir, 'team.xlsx'));
    await writeFile(join(dir, 'script.txt'), 'Hello {{name}}, welcome to the team!\n');
    await writeFile(join(dir, 'team.job.yaml'), 'manifest: team.xlsx\nsheet: Team\ntemplateFile: script.txt\nmap:\n  id: Key\n');
    const good = await runCli(['validate', '--job', join(dir, 'team.job.yaml'), '--map', 'image_url=Picture', '--json']);
    expect(good.code, good.stderr + good.stdout).toBe(0);
    expect(JSON.parse(good.stdout)).toMatchObject({ format: 'xlsx', valid: 2, columns: ['id', 'name', 'image_url'] });

    await writeFile(join(dir, 'bad.job.yaml'), 'manifest: team.xlsx\ndefaults:\n  voise: en-US-JennyNeural\n');
    const bad = await runCli(['validate', '--job', join(dir, 'bad.job.yaml')]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('line 3, defaults.voise: unknown key (did you mean voice?)');
  });
});
