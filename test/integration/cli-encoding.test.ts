import { randomUUID } from 'node:crypto';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openQueue } from '../../src/queue/talk-queue.js';
import { runCli } from '../helpers/cli.js';
import { redisUrl, testConfig } from '../helpers/context.js';

/* Excel's "CSV" on Windows is windows-1252: the commands that read a manifest take --encoding (and job files `encoding`). */

const WINDOWS_CSV = 'fixtures/manifests/good/excel-windows-1252.csv';
const UNICODE_TEXT = 'fixtures/manifests/good/excel-unicode-text.txt';

describe('--encoding on the command line', () => {
  it('validate: invalid UTF-8 names the line and byte and offers --encoding windows-1252, which then reads it', async () => {
    const plain = await runCli(['validate', WINDOWS_CSV]);
    expect(plain.code).toBe(1);
    expect(plain.stdout).toMatch(/excel-windows-1252\.csv:2: not valid UTF-8 \(byte 0xE9\); if Excel saved it as "CSV" on Windows, pass --encoding windows-1252/);
    const decoded = await runCli(['validate', WINDOWS_CSV, '--encoding', 'windows-1252']);
    expect(decoded.code, decoded.stdout + decoded.stderr).toBe(0);
    expect(decoded.stdout).toMatch(/2 rows \(csv\), 2 valid, 0 invalid/);
  });

  it('validate: Excel\'s "Unicode Text" (UTF-16 LE with a BOM, tabs) needs no flag', async () => {
    const result = await runCli(['validate', UNICODE_TEXT]);
    expect(result.code, result.stdout + result.stderr).toBe(0);
    expect(result.stdout).toMatch(/2 rows \(csv\), 2 valid, 0 invalid/);
  });

  it('validate: UTF-16 without a BOM says which --encoding to pass, not "no image_url column"', async () => {
    const result = await runCli(['validate', 'fixtures/manifests/bad/utf16-no-bom.csv']);
    expect(result.code).toBe(1);
    expect(result.stdout).toContain('pass --encoding utf-16le');
    expect(result.stdout).not.toContain('image_url');
  });

  it('run and enqueue refuse an unknown encoding as a usage error', async () => {
    for (const command of ['run', 'enqueue']) {
      const result = await runCli([command, WINDOWS_CSV, '--encoding', 'klingon'], { DID_API_KEY: 'user:secret', REDIS_URL: redisUrl() });
      expect(result.code, command).toBe(2);
      expect(result.stderr, command).toContain('--encoding: unknown encoding "klingon"');
    }
  });

  it('enqueue (flag) and a job file (field) put José, Müller and € into the talks', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tb-encoding-'));
    const job = join(dir, 'welcome.job.yaml');
    await writeFile(job, `manifest: ${join(process.cwd(), WINDOWS_CSV)}\nencoding: windows-1252\n`);
    for (const args of [['enqueue', WINDOWS_CSV, '--encoding', 'windows-1252'], ['enqueue', '--job', job]]) {
      const queueName = `test-${randomUUID().slice(0, 8)}`;
      const result = await runCli([...args, '--batch', 'enc'], { REDIS_URL: redisUrl(), TALKBATCH_QUEUE: queueName });
      expect(result.code, result.stdout + result.stderr).toBe(0);
      const handle = await openQueue(await testConfig({ TALKBATCH_QUEUE: queueName }), redisUrl());
      try {
        const jobs = await handle.queue.getJobs(['waiting', 'prioritized', 'delayed']);
        const scripts = jobs.map((job) => (job.data.talk.script.type === 'text' ? job.data.talk.script.input : '')).sort();
        expect(scripts).toEqual(['Grüß dich, Lena Müller! Dein Gutschein: 5 €.', 'Hola José, tu plan cuesta 9 € al mes.']);
      } finally {
        await handle.close();
      }
    }
  });
});
