import { mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'csv-parse/sync';
import { runCli } from '../helpers/cli.js';

describe('talkbatch CLI', () => {
  it('demo: a private Redis, the simulator, 10 verified MP4s and both reports', async () => {
    const out = await mkdtemp(join(tmpdir(), 'tb-demo-'));
    // The demo also makes a poster and a GIF per row (ffmpeg), which takes a while on a busy machine.
    const result = await runCli(['demo', '--out', out, '--render-ms', '300'], { REDIS_URL: undefined }, 240_000);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/finished: 10 done, 0 failed/);
    const [batch] = await readdir(out);
    expect(batch).toBeDefined();
    const files = await readdir(join(out, batch as string));
    expect(files.filter((f) => f.endsWith('.mp4')).sort()).toEqual(
      ['ana', 'bo', 'chen', 'dara', 'emil', 'fatima', 'gus', 'hana', 'ivan', 'jo'].map((n) => `${n}.mp4`),
    );
    expect(files).toContain('results.csv');
    expect(files).toContain('results.jsonl');
    expect(result.stdout).toContain(join(out, batch as string, 'results.csv'));
    const csv = await readFile(join(out, batch as string, 'results.csv'), 'utf8');
    expect(csv).toContain('Hi Dara! Thanks for being with Tailspin Toys. I made this short video to show you what is new this month.');
    // Posters and GIFs next to the videos, and results ready for mail merge (links to a local serve).
    expect(files.filter((f) => /\.(jpg|gif)$/.test(f))).toHaveLength(20);
    const rows = parse<Record<string, string>>(csv, { columns: true });
    expect(rows[0]).toMatchObject({ poster: 'ana.jpg', gif: 'ana.gif', preview_note: '' });
    expect(rows[0]?.share_url).toMatch(/^http:\/\/127\.0\.0\.1:8080\/s\/[A-Za-z0-9_-]{43}$/);
    expect(rows[0]?.email_html).toContain(`${rows[0]?.share_url}/preview.gif`);
    expect(await readFile(join(out, batch as string, 'index.html'), 'utf8')).toContain('data-poster="ana.jpg"');
  }, 300_000);

  it('validate: lists a rejected row with line and column, spends nothing, exits 1', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tb-validate-'));
    const manifest = join(dir, 'sheet.csv');
    await writeFile(manifest, 'id,first_name,image_url\na,Ann,https://example.com/a.png\nb,Bob,ftp://example.com/b.png\n');
    const result = await runCli(['validate', manifest, '--template', 'Hello {{first_name}}, nice to meet you']);
    expect(result.code).toBe(1);
    expect(result.stdout).toMatch(/sheet\.csv:3:3 \(image_url\): /);
    expect(result.stdout).toMatch(/2 rows \(csv\), 1 valid, 1 invalid/);
  });

  it('validate: a clean manifest exits 0 with its row count and video estimate', async () => {
    const result = await runCli(['validate', 'jobs/demo.csv', '--template-file', 'jobs/demo-script.txt']);
    expect(result.code, result.stdout + result.stderr).toBe(0);
    expect(result.stdout).toMatch(/10 rows \(csv\), 10 valid, 0 invalid.*0 problems; about \d+ s of video/);
  });

  it('run without a D-ID key is a usage error that points at the demo', async () => {
    const result = await runCli(['run', 'jobs/demo.csv'], { DID_API_KEY: undefined });
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/DID_API_KEY is not set.*npm run demo/);
  });

  it('a bad setting names the variable and exits 2 without echoing the value', async () => {
    const result = await runCli(['run', 'jobs/demo.csv'], { DID_API_KEY: 'user:supersecretvalue', TALKBATCH_CONCURRENCY: 'many' });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('TALKBATCH_CONCURRENCY');
    expect(result.stderr).not.toContain('supersecretvalue');
  });

  it('unknown commands and options exit 2', async () => {
    expect((await runCli(['frobnicate'])).code).toBe(2);
    expect((await runCli(['validate', '--nope', 'x.csv'])).code).toBe(2);
  });

  it('every command has --help', async () => {
    for (const command of ['run', 'demo', 'validate', 'enqueue', 'worker', 'status', 'report', 'retry', 'approve', 'cancel', 'pause', 'simulate']) {
      const result = await runCli([command, '--help']);
      expect(result.code, command).toBe(0);
      expect(result.stdout, command).toMatch(/Usage: talkbatch/);
    }
  });
});

describe('talkbatch CLI and Redis', () => {
  it('exits 2 with a clear message when REDIS_URL points at nothing', async () => {
    const result = await runCli(['status'], { REDIS_URL: 'redis://127.0.0.1:1' });
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/cannot reach Redis at redis:\/\/127\.0\.0\.1:1/);
  });

  it('never prints a Redis password', async () => {
    const result = await runCli(['status'], { REDIS_URL: 'redis://user:hunter2secret@127.0.0.1:1' });
    expect(result.code).toBe(2);
    expect(result.stderr).not.toContain('hunter2secret');
  });
});
